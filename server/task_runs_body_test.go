package server

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/services/orchestration"
	"github.com/prefect-go/prefect-server/services/store"
)

// The list encoding must say exactly what the generated model says.
func TestTaskRunBodyMatchesModel(t *testing.T) {
	now := time.Date(2026, 11, 26, 3, 0, 0, 123456000, time.UTC)
	ptr := func(s string) *string { return &s }
	tm := func(d time.Duration) *time.Time { x := now.Add(d); return &x }
	id, fr, st := uuid.New(), uuid.New(), uuid.New()
	retries, jitter, yes := 3, 0.5, true
	bare := store.TaskRun{Created: now, Updated: now, Name: "bare", TaskKey: "k", DynamicKey: "0"}
	bare.ID = id
	full := store.TaskRun{
		Created: now, Updated: now.Add(time.Second), Name: "full", FlowRunID: &fr, TaskKey: "task-abc", DynamicKey: "7",
		CacheKey: ptr("ck"), CacheExpiration: tm(time.Hour), TaskVersion: ptr("1.0"), FlowRunRunCount: 2,
		EmpiricalPolicy: orchestration.TaskRunPolicy{MaxRetries: 1, Retries: &retries, RetryDelay: orchestration.RetryDelay{Seconds: []float64{1, 2.5}, IsList: true}, RetryJitterFactor: &jitter},
		Tags:            []string{"a", "b"}, Labels: map[string]any{"team": "data", "n": 1.0},
		TaskInputs: json.RawMessage(`{"x": [{"input_type": "parameter", "name": "a"}], "y": [{"input_type": "task_run", "id": "` + uuid.NewString() + `"}], "z": []}`),
		State: &orchestration.State{ID: st, Type: orchestration.Completed, Name: "Cached", Timestamp: now.Add(2 * time.Second), Message: ptr("done"),
			Data: json.RawMessage(`{"storage_key": "s", "type": "ref"}`),
			StateDetails: orchestration.StateDetails{FlowRunID: &fr, TaskRunID: &id, CacheKey: ptr("ck"), CacheExpiration: tm(time.Hour), Deferred: &yes,
				RunInputKeyset: map[string]string{"a": "b"}, Retriable: &yes, TransitionID: &st, Traceparent: ptr("tp")}},
	}
	full.ID, full.StateID, full.StateType, full.StateName = id, &st, orchestration.Completed, "Cached"
	full.RunCount, full.TotalRunTime = 4, 1500*time.Millisecond
	full.ExpectedStartTime, full.StartTime, full.EndTime, full.NextScheduledStartTime = tm(-time.Minute), tm(-30*time.Second), tm(0), tm(time.Minute)
	running := full
	running.Labels, running.Tags, running.TaskInputs = nil, nil, nil
	running.EndTime, running.StateType, running.StateName = nil, orchestration.Running, "Running"
	running.State = &orchestration.State{ID: st, Type: orchestration.Running, Name: "Running", Timestamp: now}
	running.EmpiricalPolicy = orchestration.TaskRunPolicy{RetryDelay: orchestration.RetryDelay{Seconds: []float64{4}}}

	for _, tr := range []store.TaskRun{bare, full, running} {
		model, err := taskRunOut(tr, now)
		if err != nil {
			t.Fatal(err)
		}
		lean, err := taskRunsBodyOut([]store.TaskRun{tr}, now)
		if err != nil {
			t.Fatal(err)
		}
		var want, got any
		decode(t, model, &want)
		decode(t, lean[0], &got)
		if !reflect.DeepEqual(got, want) {
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(want)
			t.Errorf("%s:\n got %s\nwant %s", tr.Name, gb, wb)
		}
	}
}

func decode(t *testing.T, v any, into *any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatal(err)
	}
}

// A 200-row /task_runs/filter page, mapped and encoded through the
// generated model and through taskRunBody:
//
//	go test -run '^$' -bench 'TaskRunPage' -benchmem ./server/
func BenchmarkTaskRunPageModel(b *testing.B) {
	trs, now := taskRunPage(), time.Now()
	for b.Loop() {
		out := make([]any, len(trs))
		for i, tr := range trs {
			var err error
			if out[i], err = taskRunOut(tr, now); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := json.Marshal(out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTaskRunPageBody(b *testing.B) {
	trs, now := taskRunPage(), time.Now()
	for b.Loop() {
		out, err := taskRunsBodyOut(trs, now)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(out); err != nil {
			b.Fatal(err)
		}
	}
}

func taskRunPage() []store.TaskRun {
	now := time.Now()
	trs := make([]store.TaskRun, 200)
	for i := range trs {
		fr, st := uuid.New(), uuid.New()
		tr := store.TaskRun{Created: now, Updated: now, Name: "t", FlowRunID: &fr, TaskKey: "k", DynamicKey: "0",
			Tags: []string{"a", "b"}, TaskInputs: json.RawMessage(`{}`),
			State: &orchestration.State{ID: st, Type: orchestration.Completed, Name: "Completed", Timestamp: now}}
		tr.ID, tr.StateID, tr.StateType, tr.StateName = uuid.New(), &st, orchestration.Completed, "Completed"
		trs[i] = tr
	}
	return trs
}
