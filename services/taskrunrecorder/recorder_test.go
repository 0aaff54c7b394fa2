package taskrunrecorder_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/openapi"
	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/orchestration"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/storetest"
	"github.com/prefect-go/prefect-server/services/taskrunrecorder"
)

// clientEvent builds a prefect.task-run.<State> event the way Prefect
// 3.9.1's emit_task_run_state_change_event does (utilities/engine): the
// task run as payload.task_run without id, flow_run_id and state fields,
// the state without id and timestamp (the event carries them), and the
// flow run among the related resources added from the run context.
func clientEvent(taskRunID, flowRunID uuid.UUID, prev *string, typ, name string, at time.Time, taskRun map[string]any) events.ReceivedEvent {
	payload := map[string]any{
		"intended":      map[string]any{"from": prev, "to": typ},
		"initial_state": nil,
		"validated_state": map[string]any{
			"type": typ, "name": name, "message": "", "state_details": map[string]any{}, "data": nil,
		},
		"task_run": taskRun,
	}
	if prev != nil {
		payload["initial_state"] = map[string]any{"type": *prev, "name": "x", "message": "", "state_details": map[string]any{}}
	}
	raw, _ := json.Marshal(payload)
	e := events.Event{
		ID:    must7(),
		Event: "prefect.task-run." + name,
		Resource: events.Resource{
			"prefect.resource.id":     "prefect.task-run." + taskRunID.String(),
			"prefect.resource.name":   "say_hello-0",
			"prefect.run-count":       "1",
			"prefect.state-message":   "",
			"prefect.state-name":      name,
			"prefect.state-timestamp": at.Format(time.RFC3339Nano),
			"prefect.state-type":      typ,
			"prefect.orchestration":   "client",
		},
		Related: []events.Resource{
			{"prefect.resource.id": "prefect.flow-run." + flowRunID.String(), "prefect.resource.role": "flow-run", "prefect.resource.name": "parent"},
			{"prefect.resource.id": "prefect.flow." + uuid.NewString(), "prefect.resource.role": "flow", "prefect.resource.name": "f"},
			{"prefect.resource.id": "prefect.tag.demo", "prefect.resource.role": "tag"},
		},
		Payload: raw,
	}
	e.Occurred = openapi.Time{Time: at}
	return e.Receive(time.Now())
}

func must7() uuid.UUID {
	id, err := uuid.NewV7()
	if err != nil {
		panic(err)
	}
	return id
}

func taskRunPayload(extra map[string]any) map[string]any {
	tr := map[string]any{
		"name": "say_hello-0", "task_key": "say_hello-abc123", "dynamic_key": "0",
		"empirical_policy": map[string]any{"max_retries": 0, "retry_delay_seconds": 0.0, "retries": 0, "retry_delay": 0},
		"tags":             []string{"demo"}, "labels": map[string]any{}, "task_inputs": map[string]any{"name": []any{}},
		"run_count": 0, "flow_run_run_count": 0, "total_run_time": 0.0,
	}
	for k, v := range extra {
		tr[k] = v
	}
	return tr
}

func publish(t *testing.T, b events.Broker, evs ...events.ReceivedEvent) {
	t.Helper()
	var msgs []events.Message
	for _, e := range evs {
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, events.Message{Data: data, Attributes: map[string]string{"id": e.ID.String()}})
	}
	if err := b.Publish(context.Background(), events.TopicEvents, msgs...); err != nil {
		t.Fatal(err)
	}
}

func seedFlowRun(t *testing.T, s store.Store) uuid.UUID {
	t.Helper()
	flowID, runID := uuid.New(), uuid.New()
	storetest.Exec(t, s, `INSERT INTO flow (id, name) VALUES (?, ?)`, flowID, "f-"+flowID.String())
	storetest.Exec(t, s, `INSERT INTO flow_run (id, flow_id, name) VALUES (?, ?, 'parent')`, runID, flowID)
	return runID
}

// start runs a recorder on a fresh broker whose consumer group exists
// before anything is published, and returns a stop function that waits
// for Run to return.
func start(t *testing.T, s store.Store, opts taskrunrecorder.Options) (*events.MemoryBroker, func() error) {
	t.Helper()
	b := events.NewMemoryBroker(10000)
	// Creating the group first: the memory broker only queues for groups
	// that exist.
	if _, err := b.Subscribe(events.TopicEvents, taskrunrecorder.Group); err != nil {
		t.Fatal(err)
	}
	r := taskrunrecorder.New(s, b, slog.New(slog.NewTextHandler(io.Discard, nil)), opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("recorder did not stop")
		}
	}
	t.Cleanup(func() { _ = stop() })
	return b, stop
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRecorderRecordsClientEvents(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		b, stop := start(t, s, taskrunrecorder.Options{FlushInterval: 50 * time.Millisecond})
		fr := seedFlowRun(t, s)
		id := must7()
		t0 := time.Now().UTC().Truncate(time.Microsecond)
		started := t0.Add(time.Second)
		ended := t0.Add(2 * time.Second)
		pending, running := "PENDING", "RUNNING"
		publish(t, b,
			clientEvent(id, fr, nil, "PENDING", "Pending", t0, taskRunPayload(map[string]any{"expected_start_time": t0.Format(time.RFC3339Nano)})),
			clientEvent(id, fr, &pending, "RUNNING", "Running", started, taskRunPayload(map[string]any{
				"start_time": started.Format(time.RFC3339Nano), "run_count": 1, "expected_start_time": t0.Format(time.RFC3339Nano),
			})),
			clientEvent(id, fr, &running, "COMPLETED", "Completed", ended, taskRunPayload(map[string]any{
				"start_time": started.Format(time.RFC3339Nano), "end_time": ended.Format(time.RFC3339Nano), "run_count": 1,
				"total_run_time": 1.0, "expected_start_time": t0.Format(time.RFC3339Nano),
			})),
			// Not the client's: ignored.
			func() events.ReceivedEvent {
				e := clientEvent(must7(), fr, nil, "RUNNING", "Running", t0, taskRunPayload(nil))
				delete(e.Resource, "prefect.orchestration")
				return e
			}(),
		)
		var tr store.TaskRun
		waitFor(t, "the completed task run", func() bool {
			var err error
			tr, err = s.ReadTaskRun(ctx, id)
			return err == nil && tr.StateType == orchestration.Completed
		})
		if tr.FlowRunID == nil || *tr.FlowRunID != fr || tr.TaskKey != "say_hello-abc123" || tr.Name != "say_hello-0" {
			t.Errorf("task run %+v", tr)
		}
		if tr.StartTime == nil || !tr.StartTime.Equal(started) || tr.EndTime == nil || !tr.EndTime.Equal(ended) || tr.TotalRunTime != time.Second || tr.RunCount != 1 {
			t.Errorf("timing start=%v end=%v total=%v runs=%d", tr.StartTime, tr.EndTime, tr.TotalRunTime, tr.RunCount)
		}
		if tr.State == nil || !tr.State.Timestamp.Equal(ended) || tr.State.Name != "Completed" {
			t.Errorf("state %+v", tr.State)
		}
		var states []orchestration.State
		waitFor(t, "three states", func() bool {
			states, _ = s.ReadTaskRunStates(ctx, id)
			return len(states) == 3
		})
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if n := storetest.QueryInt(t, s, "SELECT count(*) FROM task_run"); n != 1 {
			t.Errorf("%d task runs, want 1 (the non-client event must be ignored)", n)
		}
	})
}

// TestRecorderFlushesOnShutdown holds events in a batch that would only be
// written after an hour, and checks that stopping writes them.
func TestRecorderFlushesOnShutdown(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		b, stop := start(t, s, taskrunrecorder.Options{BatchSize: 100000, FlushInterval: time.Hour})
		fr := seedFlowRun(t, s)
		const n = 50
		var evs []events.ReceivedEvent
		t0 := time.Now().UTC()
		for i := range n {
			p := taskRunPayload(map[string]any{"dynamic_key": string(rune('a'+i%26)) + string(rune('a'+i/26))})
			evs = append(evs, clientEvent(must7(), fr, nil, "RUNNING", "Running", t0, p))
		}
		publish(t, b, evs...)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if got := storetest.QueryInt(t, s, "SELECT count(*) FROM task_run"); got != n {
			t.Errorf("%d task runs after shutdown, want %d", got, n)
		}
		if got := storetest.QueryInt(t, s, "SELECT count(*) FROM task_run_state"); got != n {
			t.Errorf("%d states after shutdown, want %d", got, n)
		}
	})
}

func TestRecordFromEvent(t *testing.T) {
	fr, id := uuid.New(), uuid.New()
	at := time.Date(2024, 5, 1, 12, 0, 0, 123456000, time.UTC)
	e := clientEvent(id, fr, nil, "SCHEDULED", "AwaitingRetry", at, taskRunPayload(map[string]any{
		"total_run_time": "PT1M1.5S", "cache_key": "ck", "cache_expiration": "2024-05-02 12:00:00",
	}))
	rec, err := taskrunrecorder.RecordFromEvent(&e)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Run.ID != id || *rec.Run.FlowRunID != fr || rec.State.ID != e.ID || !rec.State.Timestamp.Equal(at) {
		t.Errorf("record ids/time %+v", rec)
	}
	if rec.State.Name != "AwaitingRetry" || rec.State.StateDetails.ScheduledTime == nil {
		t.Errorf("state %+v", rec.State)
	}
	if rec.Run.TotalRunTime != 61500*time.Millisecond || !rec.Set.TotalRunTime || !rec.Set.CacheKey || rec.Set.StartTime {
		t.Errorf("fields %+v set %+v", rec.Run, rec.Set)
	}
	if rec.Run.CacheExpiration == nil || !rec.Run.CacheExpiration.Equal(time.Date(2024, 5, 2, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("cache expiration %v", rec.Run.CacheExpiration)
	}
	if *rec.Run.StateID != e.ID || rec.Run.StateType != orchestration.Scheduled {
		t.Errorf("denormalised state %+v", rec.Run.RunCore)
	}

	bad := func(mut func(e *events.ReceivedEvent)) {
		t.Helper()
		e := clientEvent(id, fr, nil, "RUNNING", "Running", at, taskRunPayload(nil))
		mut(&e)
		if _, err := taskrunrecorder.RecordFromEvent(&e); !errors.Is(err, taskrunrecorder.ErrInvalidEvent) {
			t.Errorf("err = %v, want ErrInvalidEvent", err)
		}
	}
	bad(func(e *events.ReceivedEvent) { e.Resource["prefect.resource.id"] = "prefect.task-run.nope" })
	bad(func(e *events.ReceivedEvent) {
		e.Resource["prefect.resource.id"] = "prefect.flow-run." + uuid.NewString()
	})
	bad(func(e *events.ReceivedEvent) { e.Payload = json.RawMessage(`{"task_run": {}}`) })
	bad(func(e *events.ReceivedEvent) {
		e.Payload = json.RawMessage(`{"validated_state": {"type": "RUNNING"}, "task_run": {"name": "n", "task_key": "k"}}`)
	})
	bad(func(e *events.ReceivedEvent) {
		e.Payload = json.RawMessage(`{"validated_state": {"type": "BOGUS"}, "task_run": {"name": "n", "task_key": "k", "dynamic_key": "0"}}`)
	})
	bad(func(e *events.ReceivedEvent) {
		e.Payload = json.RawMessage(`{"validated_state": {"type": "RUNNING"}, "task_run": {"name": "n", "task_key": "k", "dynamic_key": "0", "tags": null}}`)
	})

	if !taskrunrecorder.Wants(&e.Event) {
		t.Error("Wants(client task run event) = false")
	}
	flowEvent := e.Event
	flowEvent.Event = "prefect.flow-run.Running"
	if taskrunrecorder.Wants(&flowEvent) {
		t.Error("Wants(flow run event) = true")
	}
}

// BenchmarkRecordBatch measures the recorder's write path on SQLite: one
// transaction per batch of 600 client events (200 runs, three states each).
func BenchmarkRecordBatch(b *testing.B) {
	s := storetest.OpenSQLite(b)
	flowID, fr := uuid.New(), uuid.New()
	storetest.Exec(b, s, `INSERT INTO flow (id, name) VALUES (?, 'bench')`, flowID)
	storetest.Exec(b, s, `INSERT INTO flow_run (id, flow_id, name) VALUES (?, ?, 'bench')`, fr, flowID)
	ctx := context.Background()
	for b.Loop() {
		var recs []store.TaskRunRecord
		t0 := time.Now().UTC()
		for range 200 {
			id := must7()
			for j, st := range [][2]string{{"PENDING", "Pending"}, {"RUNNING", "Running"}, {"COMPLETED", "Completed"}} {
				e := clientEvent(id, fr, nil, st[0], st[1], t0.Add(time.Duration(j)*time.Millisecond), taskRunPayload(map[string]any{"dynamic_key": id.String(), "run_count": j}))
				rec, err := taskrunrecorder.RecordFromEvent(&e)
				if err != nil {
					b.Fatal(err)
				}
				recs = append(recs, rec)
			}
		}
		if _, err := s.RecordTaskRunEvents(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(600*b.N)/b.Elapsed().Seconds(), "events/s")
}
