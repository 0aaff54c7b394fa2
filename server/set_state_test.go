package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/storetest"
)

type ssAnswer struct {
	Status  string       `json:"status"`
	State   *frStateJSON `json:"state"`
	Details struct {
		Type         string  `json:"type"`
		Reason       *string `json:"reason"`
		DelaySeconds int     `json:"delay_seconds"`
	} `json:"details"`
}

func ssSet(t *testing.T, c *client, kind, id string, body map[string]any, want int) ssAnswer {
	t.Helper()
	r := c.do("POST", "/api/"+kind+"/"+id+"/set_state", body)
	wantStatus(t, r, want)
	var a ssAnswer
	r.json(t, &a)
	return a
}

func ssState(typ string) map[string]any {
	return map[string]any{"state": map[string]any{"type": typ}}
}

// ssClientState is what the 3.9.1 client sends: every state detail, nulls
// included.
func ssClientState(typ, name string) map[string]any {
	return map[string]any{"force": false, "state": map[string]any{
		"type": typ, "name": name, "message": nil, "data": nil,
		"state_details": map[string]any{
			"flow_run_id": nil, "task_run_id": nil, "child_flow_run_id": nil, "scheduled_time": nil, "cache_key": nil,
			"cache_expiration": nil, "deferred": nil, "untrackable_result": false, "pause_timeout": nil, "pause_reschedule": false,
			"pause_key": nil, "run_input_keyset": nil, "refresh_cache": nil, "retriable": nil, "transition_id": uuid.NewString(),
			"task_parameters_id": nil, "traceparent": nil, "deployment_concurrency_lease_id": nil,
		},
	}}
}

func TestSetFlowRunState(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		broker := events.NewMemoryBroker(1000)
		sub, err := broker.Subscribe(events.TopicEvents, "test")
		if err != nil {
			t.Fatal(err)
		}
		c := newClient(t, s, func(o *Options) { o.Broker = broker })
		run := frCreate(t, c, map[string]any{"flow_id": frFlow(t, c, "f"), "empirical_policy": map[string]any{"retries": 1, "retry_delay": 0}}, http.StatusCreated)

		a := ssSet(t, c, "flow_runs", run.ID, ssClientState("RUNNING", "Running"), http.StatusCreated)
		if a.Status != "ACCEPT" || a.Details.Type != "accept_details" || a.State == nil || a.State.Type != "RUNNING" {
			t.Fatalf("PENDING->RUNNING: %+v", a)
		}
		// The Pending event of the create and the Running event follow.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var got []events.ReceivedEvent
		for len(got) < 2 {
			msgs, err := sub.Receive(ctx, 10)
			if err != nil {
				t.Fatalf("waiting for events: %v (have %d)", err, len(got))
			}
			for _, m := range msgs {
				e, err := events.FromMessage(m)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, *e)
			}
		}
		if got[0].Event.Event != "prefect.flow-run.Pending" || got[1].Event.Event != "prefect.flow-run.Running" {
			t.Fatalf("events %s, %s", got[0].Event.Event, got[1].Event.Event)
		}
		ev := got[1]
		if ev.ID.String() != a.State.ID || ev.Follows == nil || ev.Follows.String() != run.State.ID {
			t.Errorf("event id %s follows %v; state %s initial %s", ev.ID, ev.Follows, a.State.ID, run.State.ID)
		}
		var payload struct {
			Intended       map[string]any    `json:"intended"`
			InitialState   map[string]string `json:"initial_state"`
			ValidatedState map[string]string `json:"validated_state"`
		}
		if err := json.Unmarshal(ev.Payload, &payload); err != nil {
			t.Fatal(err)
		}
		if payload.Intended["from"] != "PENDING" || payload.Intended["to"] != "RUNNING" || payload.InitialState["type"] != "PENDING" || payload.ValidatedState["name"] != "Running" {
			t.Errorf("payload %s", ev.Payload)
		}
		if ev.Resource["prefect.resource.id"] != "prefect.flow-run."+run.ID || ev.Resource["prefect.run-count"] != "1" {
			t.Errorf("resource %v", ev.Resource)
		}

		// PENDING is aborted from RUNNING and nothing is written.
		a = ssSet(t, c, "flow_runs", run.ID, ssState("PENDING"), http.StatusOK)
		if a.Status != "ABORT" || a.Details.Type != "abort_details" || a.Details.Reason == nil {
			t.Errorf("RUNNING->PENDING: %+v", a)
		}
		// Retries through the real engine.
		a = ssSet(t, c, "flow_runs", run.ID, ssState("FAILED"), http.StatusCreated)
		if a.Status != "REJECT" || a.State.Type != "SCHEDULED" || a.State.Name != "AwaitingRetry" || a.Details.Type != "reject_details" {
			t.Fatalf("RUNNING->FAILED with retries: %+v", a)
		}
		ssSet(t, c, "flow_runs", run.ID, ssState("RUNNING"), http.StatusCreated)
		a = ssSet(t, c, "flow_runs", run.ID, map[string]any{"state": map[string]any{"type": "COMPLETED", "message": "ok", "data": map[string]any{"storage_key": "k"}}}, http.StatusCreated)
		if a.Status != "ACCEPT" || a.State.Message == nil || *a.State.Message != "ok" {
			t.Errorf("COMPLETED: %+v", a)
		}
		// Terminal -> PAUSED is aborted; force pushes anything through.
		a = ssSet(t, c, "flow_runs", run.ID, ssState("PAUSED"), http.StatusOK)
		if a.Status != "ABORT" {
			t.Errorf("COMPLETED->PAUSED: %+v", a)
		}
		a = ssSet(t, c, "flow_runs", run.ID, map[string]any{"state": map[string]any{"type": "PENDING"}, "force": true}, http.StatusCreated)
		if a.Status != "ACCEPT" || a.State.Type != "PENDING" {
			t.Errorf("forced PENDING: %+v", a)
		}
		var read frRunJSON
		c.do("GET", "/api/flow_runs/"+run.ID, nil).json(t, &read)
		if read.RunCount != 2 || read.StartTime == nil || *read.StateType != "PENDING" {
			t.Errorf("run after transitions: %+v", read)
		}

		// Not found and bad input.
		r := c.do("POST", "/api/flow_runs/"+uuid.NewString()+"/set_state", ssState("RUNNING"))
		wantStatus(t, r, http.StatusNotFound)
		var nf map[string]string
		r.json(t, &nf)
		if nf["exception_message"] == "" {
			t.Errorf("404 body %s", r.body)
		}
		wantStatus(t, c.do("POST", "/api/flow_runs/"+run.ID+"/set_state", map[string]any{"state": map[string]any{"type": "NOPE"}}), http.StatusUnprocessableEntity)
		wantStatus(t, c.do("POST", "/api/flow_runs/"+run.ID+"/set_state", map[string]any{"force": true}), http.StatusUnprocessableEntity)
		wantStatus(t, c.do("POST", "/api/flow_runs/"+run.ID+"/set_state", map[string]any{"state": "RUNNING"}), http.StatusUnprocessableEntity)
	})
}

func TestSetFlowRunStateWait(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		run := frCreate(t, c, map[string]any{"flow_id": frFlow(t, c, "f"),
			"state": map[string]any{"type": "SCHEDULED", "state_details": map[string]any{"scheduled_time": later}}}, http.StatusCreated)
		a := ssSet(t, c, "flow_runs", run.ID, ssState("RUNNING"), http.StatusOK)
		if a.Status != "WAIT" || a.Details.Type != "wait_details" || a.Details.DelaySeconds < 3500 || a.State == nil || a.State.Type != "SCHEDULED" {
			t.Errorf("RUNNING before the scheduled time: %+v", a)
		}
		var states []frStateJSON
		c.do("GET", "/api/flow_run_states/?flow_run_id="+run.ID, nil).json(t, &states)
		if len(states) != 1 {
			t.Errorf("WAIT wrote a state: %d states", len(states))
		}
	})
}

func TestSetTaskRunState(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		run := frCreate(t, c, map[string]any{"flow_id": frFlow(t, c, "f")}, http.StatusCreated)
		ssSet(t, c, "flow_runs", run.ID, ssState("RUNNING"), http.StatusCreated)
		task := uuid.New()
		storetest.Exec(t, s, `INSERT INTO task_run (id, flow_run_id, name, task_key, dynamic_key, empirical_policy) VALUES (?, ?, 't', 'k', '0', ?)`,
			task, uuid.MustParse(run.ID), `{"max_retries":0,"retry_delay_seconds":0,"retries":1,"retry_delay":0}`)
		ssSet(t, c, "task_runs", task.String(), ssState("PENDING"), http.StatusCreated)
		ssSet(t, c, "task_runs", task.String(), ssState("RUNNING"), http.StatusCreated)
		a := ssSet(t, c, "task_runs", task.String(), ssState("FAILED"), http.StatusCreated)
		if a.Status != "REJECT" || a.State.Name != "AwaitingRetry" {
			t.Errorf("task retry: %+v", a)
		}
		ssSet(t, c, "task_runs", task.String(), ssState("RUNNING"), http.StatusCreated)
		a = ssSet(t, c, "task_runs", task.String(), ssState("COMPLETED"), http.StatusCreated)
		if a.Status != "ACCEPT" {
			t.Errorf("task COMPLETED: %+v", a)
		}
		r := c.do("POST", "/api/task_runs/"+uuid.NewString()+"/set_state", ssState("RUNNING"))
		wantStatus(t, r, http.StatusNotFound)
		wantStatus(t, c.do("POST", "/api/task_runs/"+task.String()+"/set_state", map[string]any{}), http.StatusUnprocessableEntity)
	})
}

func TestBulkSetFlowRunState(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		flowID := frFlow(t, c, "f")
		for _, n := range []string{"x1", "x2", "y1"} {
			frCreate(t, c, map[string]any{"flow_id": flowID, "name": n}, http.StatusCreated)
		}
		r := c.do("POST", "/api/flow_runs/bulk_set_state", map[string]any{"state": map[string]any{"type": "CANCELLED"},
			"flow_runs": map[string]any{"name": map[string]any{"like_": "x"}}})
		wantStatus(t, r, http.StatusOK)
		var bulk struct {
			Results []struct {
				FlowRunID string       `json:"flow_run_id"`
				Status    string       `json:"status"`
				State     *frStateJSON `json:"state"`
			} `json:"results"`
		}
		r.json(t, &bulk)
		if len(bulk.Results) != 2 || bulk.Results[0].Status != "ACCEPT" || bulk.Results[0].State.Type != "CANCELLED" {
			t.Errorf("bulk set state %s", r.body)
		}
		wantStatus(t, c.do("POST", "/api/flow_runs/bulk_set_state", map[string]any{"flow_runs": nil}), http.StatusUnprocessableEntity)
	})
}

func TestResumeFlowRun(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		run := frCreate(t, c, map[string]any{"flow_id": frFlow(t, c, "f")}, http.StatusCreated)
		r := c.do("POST", "/api/flow_runs/"+run.ID+"/resume", nil)
		wantStatus(t, r, http.StatusOK)
		var a ssAnswer
		r.json(t, &a)
		if a.Status != "ABORT" || a.Details.Reason == nil || *a.Details.Reason != "Cannot resume a flow run that is not paused." {
			t.Errorf("resume of a pending run: %s", r.body)
		}
		wantDetail(t, c.do("POST", "/api/flow_runs/"+uuid.NewString()+"/resume", nil), http.StatusNotFound, "Flow run not found")

		ssSet(t, c, "flow_runs", run.ID, ssState("RUNNING"), http.StatusCreated)
		timeout := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		pause := map[string]any{"state": map[string]any{"type": "PAUSED", "name": "Suspended", "state_details": map[string]any{
			"pause_key": "p1", "pause_timeout": timeout, "run_input_keyset": map[string]string{"schema": "in-schema", "response": "in-response"},
		}}}
		if a := ssSet(t, c, "flow_runs", run.ID, pause, http.StatusCreated); a.Status != "ACCEPT" {
			t.Fatalf("pause: %+v", a)
		}
		schema := `{"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}`
		wantStatus(t, c.do("POST", "/api/flow_runs/"+run.ID+"/input", map[string]any{"key": "in-schema", "value": schema}), http.StatusCreated)
		r = c.do("POST", "/api/flow_runs/"+run.ID+"/resume", map[string]any{"run_input": map[string]any{"x": "not a number"}})
		wantStatus(t, r, http.StatusOK)
		r.json(t, &a)
		if a.Status != "REJECT" || a.State == nil || a.State.Type != "PAUSED" {
			t.Errorf("resume with bad input: %s", r.body)
		}
		r = c.do("POST", "/api/flow_runs/"+run.ID+"/resume", map[string]any{"run_input": map[string]any{"x": 3}})
		wantStatus(t, r, http.StatusCreated)
		r.json(t, &a)
		if a.Status != "ACCEPT" || a.State.Type != "RUNNING" {
			t.Errorf("resume: %s", r.body)
		}
		resp, err := http.Get(c.base + "/api/flow_runs/" + run.ID + "/input/in-response")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("resume input not stored: %d", resp.StatusCode)
		}
	})
}

// TestSetStateConcurrent sends 20 set_state requests for one run at once:
// every answer is a decision (never an error), every ACCEPT wrote exactly
// one state, and the run points at the newest.
func TestSetStateConcurrent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		run := frCreate(t, c, map[string]any{"flow_id": frFlow(t, c, "f")}, http.StatusCreated)
		proposals := []string{"RUNNING", "PENDING", "RUNNING", "CANCELLING", "RUNNING"}
		const n = 20
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			accepted int
			bad      []string
		)
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				body, _ := json.Marshal(ssState(proposals[i%len(proposals)]))
				resp, err := http.Post(c.base+"/api/flow_runs/"+run.ID+"/set_state", "application/json", bytes.NewReader(body))
				if err != nil {
					mu.Lock()
					bad = append(bad, err.Error())
					mu.Unlock()
					return
				}
				defer resp.Body.Close()
				var a ssAnswer
				decodeErr := json.NewDecoder(resp.Body).Decode(&a)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated, decodeErr != nil:
					bad = append(bad, resp.Status)
				case a.Status == "ACCEPT":
					accepted++
				case a.Status != "REJECT" && a.Status != "WAIT" && a.Status != "ABORT":
					bad = append(bad, a.Status)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(bad) > 0 {
			t.Fatalf("unexpected answers: %v", bad)
		}
		var states []frStateJSON
		c.do("GET", "/api/flow_run_states/?flow_run_id="+run.ID, nil).json(t, &states)
		if len(states) != accepted+1 {
			t.Errorf("%d states for %d accepted transitions (+1 initial)", len(states), accepted)
		}
		var read frRunJSON
		c.do("GET", "/api/flow_runs/"+run.ID, nil).json(t, &read)
		if read.StateID == nil || *read.StateID != states[len(states)-1].ID {
			t.Errorf("run state %v, newest state %s", read.StateID, states[len(states)-1].ID)
		}
	})
}
