package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/services/orchestration"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
)

// flowRunCases are the conformance cases of store.FlowRunStore.
var flowRunCases = []suiteCase{
	{"FlowRunCreateRead", testFlowRunCreateRead},
	{"FlowRunIdempotency", testFlowRunIdempotency},
	{"FlowRunNotFound", testFlowRunNotFound},
	{"FlowRunTransitions", testFlowRunTransitions},
	{"FlowRunRetries", testFlowRunRetries},
	{"FlowRunResultArtifact", testFlowRunResultArtifact},
	{"FlowRunFilterSortPage", testFlowRunFilterSortPage},
	{"FlowRunUpdateLabels", testFlowRunUpdateLabels},
	{"FlowRunDelete", testFlowRunDelete},
	{"FlowRunInputs", testFlowRunInputs},
	{"FlowRunHistoryLateness", testFlowRunHistoryLateness},
	{"FlowRunConcurrentSetState", testFlowRunConcurrentSetState},
	{"TaskRunSetStateAndCache", testTaskRunSetStateAndCache},
	{"SubflowParentTaskRun", testSubflowParentTaskRun},
	{"FlowRunGraphs", testFlowRunGraphs},
	{"ResumeStoresInputWithTheTransition", testResumeStoresInput},
}

// testResumeStoresInput: the run input of a resume is written only when the
// transition is accepted, in the same transaction.
func testResumeStoresInput(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	f := mustCreate(t, s, store.FlowCreate{Name: "f"})
	run := frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID, State: frPending()})
	frSet(t, s, run.ID, orchestration.Running, orchestration.Options{})
	frSet(t, s, run.ID, orchestration.Paused, orchestration.Options{})

	input := &store.FlowRunInput{FlowRunID: run.ID, Key: "paused-1-response", Value: `{"value":"hello"}`}
	res, err := s.ResumeFlowRun(ctx, run.ID, orchestration.State{Type: orchestration.Running}, orchestration.Options{}, input)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != orchestration.Accept {
		t.Fatalf("resume from Paused: %s", res.Status)
	}
	got, err := s.ReadFlowRunInput(ctx, run.ID, "paused-1-response")
	if err != nil || got.Value != input.Value {
		t.Fatalf("input after accepted resume: %+v, %v", got, err)
	}

	// A transition that is not accepted (here WAIT: the run is scheduled
	// in the future) writes no input.
	later := time.Now().Add(time.Hour)
	waiting := frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID, State: &orchestration.State{Type: orchestration.Scheduled, StateDetails: orchestration.StateDetails{ScheduledTime: &later}}})
	other := &store.FlowRunInput{FlowRunID: waiting.ID, Key: "paused-2-response", Value: `{"value":"early"}`}
	res, err = s.ResumeFlowRun(ctx, waiting.ID, orchestration.State{Type: orchestration.Running}, orchestration.Options{}, other)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != orchestration.Wait {
		t.Fatalf("running a run scheduled an hour ahead: %s, want WAIT", res.Status)
	}
	if _, err := s.ReadFlowRunInput(ctx, waiting.ID, "paused-2-response"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("input written for a transition that was not accepted: %v", err)
	}
}

func frPending() *orchestration.State {
	return &orchestration.State{Type: orchestration.Pending}
}

func frMustRun(t *testing.T, s store.Store, in store.FlowRunCreate) store.FlowRun {
	t.Helper()
	out, err := s.CreateFlowRun(ctxT(t), in, orchestration.Options{})
	if err != nil {
		t.Fatalf("CreateFlowRun: %v", err)
	}
	if !out.Created {
		t.Fatalf("CreateFlowRun: created=false for a new run")
	}
	return out.Run
}

func frSet(t *testing.T, s store.Store, id uuid.UUID, typ orchestration.StateType, opts orchestration.Options) store.SetStateResult {
	t.Helper()
	res, err := s.SetFlowRunState(ctxT(t), id, orchestration.State{Type: typ}, opts)
	if err != nil {
		t.Fatalf("SetFlowRunState(%s): %v", typ, err)
	}
	return res
}

// insertTaskRun writes a task run row directly: the task run store is
// another adapter file's business, these cases only need a row to drive.
func frInsertTaskRun(t *testing.T, s store.Store, flowRunID *uuid.UUID, name, inputs, policy string) uuid.UUID {
	t.Helper()
	id := uuid.New()
	var fr any
	if flowRunID != nil {
		fr = *flowRunID
	}
	Exec(t, s, `INSERT INTO task_run (id, flow_run_id, name, task_key, dynamic_key, task_inputs, empirical_policy) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		id, fr, name, "key-"+name, "0", inputs, policy)
	return id
}

func testFlowRunCreateRead(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	f := mustCreate(t, s, store.FlowCreate{Name: "etl", Labels: map[string]any{"team": "data", "env": "dev"}})
	out, err := s.CreateFlowRun(ctx, store.FlowRunCreate{
		FlowID: f.ID, Name: "run-1", Tags: []string{"a"}, Parameters: map[string]any{"x": 1},
		Labels: map[string]any{"env": "prod"}, State: frPending(),
	}, orchestration.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := out.Run
	if !out.Created || r.Name != "run-1" || r.FlowID != f.ID {
		t.Fatalf("created run %+v", r)
	}
	eq(t, "labels", fmt.Sprint(r.Labels), fmt.Sprint(map[string]any{"team": "data", "env": "prod", "prefect.flow.id": f.ID.String()}))
	if r.State == nil || r.State.Type != orchestration.Pending || r.StateType != orchestration.Pending || r.StateName != "Pending" {
		t.Fatalf("initial state %+v / %s %s", r.State, r.StateType, r.StateName)
	}
	if r.StateID == nil || *r.StateID != r.State.ID {
		t.Errorf("state_id %v != state %v", r.StateID, r.State.ID)
	}
	if r.ExpectedStartTime == nil {
		t.Errorf("expected_start_time not set by the Pending state")
	}
	if len(out.Events) != 1 || out.Events[0].Event != "prefect.flow-run.Pending" || out.Events[0].ID != r.State.ID {
		t.Errorf("events %+v", out.Events)
	} else {
		ev := out.Events[0]
		if ev.Resource["prefect.resource.id"] != "prefect.flow-run."+r.ID.String() || ev.Resource["prefect.state-type"] != "PENDING" {
			t.Errorf("event resource %v", ev.Resource)
		}
		var payload map[string]any
		if err := json.Unmarshal(ev.Payload, &payload); err != nil {
			t.Fatal(err)
		}
		if payload["initial_state"] != nil || payload["intended"].(map[string]any)["to"] != "PENDING" {
			t.Errorf("payload %s", ev.Payload)
		}
		foundFlow := false
		for _, rel := range ev.Related {
			if rel["prefect.resource.id"] == "prefect.flow."+f.ID.String() && rel["prefect.resource.role"] == "flow" {
				foundFlow = true
			}
		}
		if !foundFlow {
			t.Errorf("related %v lacks the flow", ev.Related)
		}
	}
	got, err := s.ReadFlowRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "ReadFlowRun", got, r)
	if fmt.Sprint(got.Parameters) != "map[x:1]" || got.EmpiricalPolicy.PauseKeys == nil {
		t.Errorf("parameters %v policy %+v", got.Parameters, got.EmpiricalPolicy)
	}

	// No state: Prefect's models layer writes none.
	bare := frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID})
	if bare.State != nil || bare.StateID != nil || bare.Name == "" {
		t.Errorf("bare run %+v", bare)
	}
	// A missing flow is a foreign key conflict.
	if _, err := s.CreateFlowRun(ctx, store.FlowRunCreate{FlowID: uuid.New(), State: frPending()}, orchestration.Options{}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("run of a missing flow err = %v", err)
	}
}

func testFlowRunIdempotency(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	f := mustCreate(t, s, store.FlowCreate{Name: "f"})
	key := "k-1"
	first := frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID, IdempotencyKey: &key, State: frPending()})
	again, err := s.CreateFlowRun(ctx, store.FlowRunCreate{FlowID: f.ID, IdempotencyKey: &key, Name: "other", State: &orchestration.State{Type: orchestration.Running}}, orchestration.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if again.Created || again.Run.ID != first.ID || again.Run.Name != first.Name || len(again.Events) != 0 {
		t.Errorf("second create: created=%v id=%s name=%s events=%d", again.Created, again.Run.ID, again.Run.Name, len(again.Events))
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM flow_run_state"); n != 1 {
		t.Errorf("states = %d, want 1", n)
	}
	// Concurrent creates with one key make one run.
	key2 := "k-2"
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[uuid.UUID]int{}
	created := 0
	for range 10 {
		wg.Go(func() {
			out, err := s.CreateFlowRun(ctx, store.FlowRunCreate{FlowID: f.ID, IdempotencyKey: &key2, State: frPending()}, orchestration.Options{})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("concurrent create: %v", err)
				return
			}
			ids[out.Run.ID]++
			if out.Created {
				created++
			}
		})
	}
	wg.Wait()
	if len(ids) != 1 || created != 1 {
		t.Errorf("concurrent idempotent creates: ids=%d created=%d", len(ids), created)
	}
}

func testFlowRunNotFound(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	missing := uuid.New()
	checks := map[string]error{}
	_, checks["ReadFlowRun"] = s.ReadFlowRun(ctx, missing)
	_, checks["SetFlowRunState"] = s.SetFlowRunState(ctx, missing, orchestration.State{Type: orchestration.Running}, orchestration.Options{})
	_, checks["SetTaskRunState"] = s.SetTaskRunState(ctx, missing, orchestration.State{Type: orchestration.Running}, orchestration.Options{})
	checks["UpdateFlowRun"] = s.UpdateFlowRun(ctx, missing, store.FlowRunUpdate{})
	checks["UpdateFlowRunLabels"] = s.UpdateFlowRunLabels(ctx, missing, map[string]any{"a": "b"})
	checks["DeleteFlowRun"] = s.DeleteFlowRun(ctx, missing)
	_, checks["ReadFlowRunState"] = s.ReadFlowRunState(ctx, missing)
	_, checks["ReadFlowRunInput"] = s.ReadFlowRunInput(ctx, missing, "k")
	checks["DeleteFlowRunInput"] = s.DeleteFlowRunInput(ctx, missing, "k")
	_, checks["CreateFlowRunInput"] = s.CreateFlowRunInput(ctx, store.FlowRunInput{FlowRunID: missing, Key: "k", Value: "v"})
	_, checks["ReadFlowRunGraphV1"] = s.ReadFlowRunGraphV1(ctx, missing)
	_, checks["ReadFlowRunGraphV2"] = s.ReadFlowRunGraphV2(ctx, missing, time.Time{}, 100, 100)
	for name, err := range checks {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s(missing) err = %v, want ErrNotFound", name, err)
		}
	}
	states, err := s.ReadFlowRunStates(ctx, missing)
	if err != nil || len(states) != 0 {
		t.Errorf("ReadFlowRunStates(missing) = %v, %v", states, err)
	}
}

func testFlowRunTransitions(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	f := mustCreate(t, s, store.FlowCreate{Name: "f"})
	r := frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID, State: frPending()})

	res := frSet(t, s, r.ID, orchestration.Running, orchestration.Options{})
	if res.Status != orchestration.Accept || res.State == nil || res.State.Type != orchestration.Running || res.NewState == nil {
		t.Fatalf("PENDING->RUNNING: %+v", res.Result)
	}
	if len(res.Events) != 1 || res.Events[0].Event != "prefect.flow-run.Running" || res.Events[0].Follows == nil || *res.Events[0].Follows != *r.StateID {
		t.Errorf("running events %+v", res.Events)
	}
	got, err := s.ReadFlowRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.RunCount != 1 || got.StartTime == nil || got.StateType != orchestration.Running || got.State.ID != res.State.ID {
		t.Errorf("after RUNNING: run_count=%d start=%v state=%s", got.RunCount, got.StartTime, got.StateType)
	}

	// PENDING from RUNNING is aborted (PreventPendingTransitions).
	res = frSet(t, s, r.ID, orchestration.Pending, orchestration.Options{})
	if res.Status != orchestration.Abort || res.NewState != nil || res.State.Type != orchestration.Running || len(res.Events) != 0 {
		t.Errorf("RUNNING->PENDING: %+v", res.Result)
	}
	// Forced, it goes through.
	res = frSet(t, s, r.ID, orchestration.Pending, orchestration.Options{Force: true})
	if res.Status != orchestration.Accept || res.State.Type != orchestration.Pending {
		t.Errorf("forced RUNNING->PENDING: %+v", res.Result)
	}
	frSet(t, s, r.ID, orchestration.Running, orchestration.Options{})
	msg := "done"
	res, err = s.SetFlowRunState(ctx, r.ID, orchestration.State{Type: orchestration.Completed, Message: &msg}, orchestration.Options{})
	if err != nil || res.Status != orchestration.Accept {
		t.Fatalf("RUNNING->COMPLETED: %+v %v", res.Result, err)
	}
	got, err = s.ReadFlowRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.EndTime == nil || got.StateType != orchestration.Completed || got.RunCount != 2 || got.TotalRunTime <= 0 && got.EndTime.Equal(*got.StartTime) == false {
		t.Errorf("after COMPLETED: %+v", got.RunCore)
	}
	states, err := s.ReadFlowRunStates(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	var types []orchestration.StateType
	for _, st := range states {
		types = append(types, st.Type)
	}
	eq(t, "state history", types, []orchestration.StateType{orchestration.Pending, orchestration.Running, orchestration.Pending, orchestration.Running, orchestration.Completed})
	last, err := s.ReadFlowRunState(ctx, states[4].ID)
	if err != nil {
		t.Fatal(err)
	}
	if last.Message == nil || *last.Message != "done" {
		t.Errorf("completed state message %v", last.Message)
	}
}

func testFlowRunRetries(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	f := mustCreate(t, s, store.FlowCreate{Name: "f"})
	retries, delay := 1, 0
	r := frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID, State: frPending(),
		EmpiricalPolicy: &orchestration.FlowRunPolicy{Retries: &retries, RetryDelay: &delay, PauseKeys: []string{}}})
	frSet(t, s, r.ID, orchestration.Running, orchestration.Options{})
	res := frSet(t, s, r.ID, orchestration.Failed, orchestration.Options{})
	if res.Status != orchestration.Reject || res.State == nil || res.State.Type != orchestration.Scheduled || res.State.Name != "AwaitingRetry" {
		t.Fatalf("RUNNING->FAILED with retries: %+v", res.Result)
	}
	got, err := s.ReadFlowRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.StateName != "AwaitingRetry" || got.EmpiricalPolicy.RetryType == nil || *got.EmpiricalPolicy.RetryType != orchestration.RetryInProcess {
		t.Errorf("after retry: state %s policy %+v", got.StateName, got.EmpiricalPolicy)
	}
	frSet(t, s, r.ID, orchestration.Running, orchestration.Options{})
	res = frSet(t, s, r.ID, orchestration.Failed, orchestration.Options{})
	if res.Status != orchestration.Accept || res.State.Type != orchestration.Failed {
		t.Errorf("second failure: %+v", res.Result)
	}
}

func testFlowRunResultArtifact(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	f := mustCreate(t, s, store.FlowCreate{Name: "f"})
	r := frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID, State: frPending()})
	frSet(t, s, r.ID, orchestration.Running, orchestration.Options{})
	data := json.RawMessage(`{"storage_key":"/tmp/x","serializer":{"type":"pickle"},"storage_block_id":null}`)
	res, err := s.SetFlowRunState(ctx, r.ID, orchestration.State{Type: orchestration.Completed, Data: data}, orchestration.Options{})
	if err != nil || res.Status != orchestration.Accept {
		t.Fatalf("complete with result: %+v %v", res.Result, err)
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM artifact WHERE flow_run_id = ?", r.ID); n != 1 {
		t.Errorf("result artifacts = %d", n)
	}
	got, err := s.ReadFlowRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	_ = json.Unmarshal(got.State.Data, &a)
	_ = json.Unmarshal(data, &b)
	eq(t, "state data read back", fmt.Sprint(a), fmt.Sprint(b))
	// Unpersisted data is not stored.
	r2 := frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID, State: frPending()})
	frSet(t, s, r2.ID, orchestration.Running, orchestration.Options{})
	res, err = s.SetFlowRunState(ctx, r2.ID, orchestration.State{Type: orchestration.Completed, Data: json.RawMessage(`{"type":"unpersisted"}`)}, orchestration.Options{})
	if err != nil || res.Status != orchestration.Accept {
		t.Fatalf("complete unpersisted: %+v %v", res.Result, err)
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM artifact WHERE flow_run_id = ?", r2.ID); n != 0 {
		t.Errorf("unpersisted result made %d artifacts", n)
	}
}

func testFlowRunFilterSortPage(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	f1 := mustCreate(t, s, store.FlowCreate{Name: "one"})
	f2 := mustCreate(t, s, store.FlowCreate{Name: "two"})
	var runs []store.FlowRun
	for i, name := range []string{"b", "a", "c", "d"} {
		fid := f1.ID
		if i%2 == 1 {
			fid = f2.ID
		}
		runs = append(runs, frMustRun(t, s, store.FlowRunCreate{FlowID: fid, Name: name, Tags: []string{"t" + fmt.Sprint(i%2)}, State: frPending()}))
	}
	frSet(t, s, runs[2].ID, orchestration.Running, orchestration.Options{})
	names := func(q store.FlowRunQuery) []string {
		t.Helper()
		rs, err := s.ReadFlowRuns(ctx, q)
		if err != nil {
			t.Fatalf("ReadFlowRuns: %v", err)
		}
		out := []string{}
		for _, r := range rs {
			if r.State == nil || r.State.ID != *r.StateID {
				t.Errorf("run %s read without its state", r.Name)
			}
			out = append(out, r.Name)
		}
		return out
	}
	eq(t, "NAME_ASC", names(store.FlowRunQuery{Sort: "NAME_ASC"}), []string{"a", "b", "c", "d"})
	eq(t, "NAME_DESC page", names(store.FlowRunQuery{Sort: "NAME_DESC", Limit: 2, Offset: 1}), []string{"c", "b"})
	running := filter.FlowRunFilterSet{FlowRuns: &filter.FlowRunFilter{State: &filter.FlowRunFilterState{Type: &filter.FlowRunFilterStateType{Any: []string{"RUNNING"}}}}}
	eq(t, "state RUNNING", names(store.FlowRunQuery{Filter: running}), []string{"c"})
	byFlow := filter.FlowRunFilterSet{Flows: &filter.FlowFilter{Name: &filter.FlowFilterName{Any: []string{"two"}}}}
	eq(t, "flow two", names(store.FlowRunQuery{Filter: byFlow, Sort: "NAME_ASC"}), []string{"a", "d"})
	if n, err := s.CountFlowRuns(ctx, byFlow); err != nil || n != 2 {
		t.Errorf("CountFlowRuns = %d, %v", n, err)
	}
	if n, err := s.CountFlowRuns(ctx, filter.FlowRunFilterSet{}); err != nil || n != 4 {
		t.Errorf("CountFlowRuns(all) = %d, %v", n, err)
	}
	if _, err := s.ReadFlowRuns(ctx, store.FlowRunQuery{Sort: "SIDEWAYS"}); !errors.Is(err, filter.ErrInvalid) {
		t.Errorf("bad sort err = %v", err)
	}
	// Default sort is ID_DESC.
	rs, err := s.ReadFlowRuns(ctx, store.FlowRunQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(rs); i++ {
		if rs[i-1].ID.String() < rs[i].ID.String() && s.Dialect() == filter.SQLite {
			t.Errorf("default order is not ID_DESC")
		}
	}
}

func testFlowRunUpdateLabels(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	f := mustCreate(t, s, store.FlowCreate{Name: "f"})
	r := frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID, Name: "old", State: frPending(), Labels: map[string]any{"a": "1"}})
	waitPast(t, r.Updated)
	name, pid := "new", "123"
	pidp := &pid
	tags := []string{"x", "y"}
	if err := s.UpdateFlowRun(ctx, r.ID, store.FlowRunUpdate{Name: &name, InfrastructurePID: &pidp, Tags: &tags, Parameters: &map[string]any{"p": "q"}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadFlowRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "new" || got.InfrastructurePID == nil || *got.InfrastructurePID != "123" || fmt.Sprint(got.Tags) != "[x y]" || fmt.Sprint(got.Parameters) != "map[p:q]" || !got.Updated.After(r.Updated) {
		t.Errorf("after update: %+v", got)
	}
	if got.StateID == nil || *got.StateID != *r.StateID {
		t.Errorf("update touched the state")
	}
	if err := s.UpdateFlowRunLabels(ctx, r.ID, map[string]any{"b": "2", "a": "3"}); err != nil {
		t.Fatal(err)
	}
	got, err = s.ReadFlowRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "merged labels", fmt.Sprint(got.Labels), fmt.Sprint(map[string]any{"a": "3", "b": "2", "prefect.flow.id": f.ID.String()}))
}

func testFlowRunDelete(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	f := mustCreate(t, s, store.FlowCreate{Name: "f"})
	var ids []uuid.UUID
	for i := range 4 {
		r := frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID, Name: fmt.Sprint("r", i), State: frPending()})
		ids = append(ids, r.ID)
	}
	frInsertTaskRun(t, s, &ids[0], "t", "{}", "{}")
	if err := s.DeleteFlowRun(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM task_run"); n != 0 {
		t.Errorf("task runs left: %d", n)
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM flow_run_state WHERE flow_run_id = ?", ids[0]); n != 0 {
		t.Errorf("states left: %d", n)
	}
	got, err := s.BulkDeleteFlowRuns(ctx, filter.FlowRunFilterSet{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Errorf("bulk delete limit 2 deleted %v", got)
	}
	if n, _ := s.CountFlowRuns(ctx, filter.FlowRunFilterSet{}); n != 1 {
		t.Errorf("runs left %d", n)
	}
	none, err := s.BulkDeleteFlowRuns(ctx, filter.FlowRunFilterSet{FlowRuns: &filter.FlowRunFilter{Name: &filter.FlowRunFilterName{Any: []string{"zzz"}}}}, 50)
	if err != nil || len(none) != 0 || none == nil {
		t.Errorf("bulk delete of nothing = %#v, %v", none, err)
	}
}

func testFlowRunInputs(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	f := mustCreate(t, s, store.FlowCreate{Name: "f"})
	r := frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID, State: frPending()})
	sender := "me"
	for _, k := range []string{"a-1", "a-2", "b-1"} {
		in, err := s.CreateFlowRunInput(ctx, store.FlowRunInput{FlowRunID: r.ID, Key: k, Value: `"v-` + k + `"`, Sender: &sender})
		if err != nil {
			t.Fatal(err)
		}
		if in.Key != k || in.Sender == nil || in.FlowRunID != r.ID {
			t.Errorf("created input %+v", in)
		}
	}
	if _, err := s.CreateFlowRunInput(ctx, store.FlowRunInput{FlowRunID: r.ID, Key: "a-1", Value: "x"}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate key err = %v", err)
	}
	got, err := s.ReadFlowRunInput(ctx, r.ID, "a-2")
	if err != nil || got.Value != `"v-a-2"` {
		t.Errorf("ReadFlowRunInput = %+v, %v", got, err)
	}
	list, err := s.FilterFlowRunInputs(ctx, r.ID, "a-", 10, []string{"a-1"})
	if err != nil || len(list) != 1 || list[0].Key != "a-2" {
		t.Errorf("FilterFlowRunInputs = %+v, %v", list, err)
	}
	list, err = s.FilterFlowRunInputs(ctx, r.ID, "", 2, nil)
	if err != nil || len(list) != 2 {
		t.Errorf("FilterFlowRunInputs limit = %+v, %v", list, err)
	}
	if err := s.DeleteFlowRunInput(ctx, r.ID, "a-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFlowRunInput(ctx, r.ID, "a-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete err = %v", err)
	}
}

func testFlowRunHistoryLateness(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	f := mustCreate(t, s, store.FlowCreate{Name: "f"})
	start := store.Now().Add(-time.Hour).Truncate(time.Minute)
	sched := func(offset time.Duration) *orchestration.State {
		ts := start.Add(offset)
		return &orchestration.State{Type: orchestration.Scheduled, StateDetails: orchestration.StateDetails{ScheduledTime: &ts}}
	}
	frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID, State: sched(time.Minute)})
	frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID, State: sched(2 * time.Minute)})
	frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID, State: sched(11 * time.Minute)})
	frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID, State: sched(5 * time.Hour)})
	h, err := s.FlowRunHistory(ctx, store.HistoryQuery{Start: start, End: start.Add(20 * time.Minute), Interval: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || len(h[0].States) != 1 || h[0].States[0].CountRuns != 2 || h[1].States[0].CountRuns != 1 {
		t.Fatalf("history %+v", h)
	}
	if h[0].States[0].StateType != orchestration.Scheduled || h[0].States[0].SumEstimatedLateness <= 0 {
		t.Errorf("history state %+v", h[0].States[0])
	}
	if !h[1].Start.Equal(start.Add(10*time.Minute)) || !h[1].End.Equal(start.Add(20*time.Minute)) {
		t.Errorf("interval bounds %v %v", h[1].Start, h[1].End)
	}
	empty, err := s.FlowRunHistory(ctx, store.HistoryQuery{Start: start, End: start, Interval: time.Minute})
	if err != nil || len(empty) != 0 {
		t.Errorf("empty history = %v, %v", empty, err)
	}
	late, err := s.FlowRunLateness(ctx, filter.FlowRunFilterSet{})
	if err != nil || late == nil || *late <= 0 {
		t.Errorf("lateness = %v, %v", late, err)
	}
	none, err := s.FlowRunLateness(ctx, filter.FlowRunFilterSet{FlowRuns: &filter.FlowRunFilter{Name: &filter.FlowRunFilterName{Any: []string{"nope"}}}})
	if err != nil || none != nil {
		t.Errorf("lateness of nothing = %v, %v", none, err)
	}
}

// testFlowRunConcurrentSetState proposes states on one run from many
// goroutines: each accepted transition must write exactly one state, the
// run must point at the newest, and nothing but REJECT/WAIT/ABORT answers
// may come back.
func testFlowRunConcurrentSetState(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	f := mustCreate(t, s, store.FlowCreate{Name: "f"})
	r := frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID, State: frPending()})
	const n = 20
	proposals := []orchestration.StateType{orchestration.Running, orchestration.Pending, orchestration.Running, orchestration.Cancelling}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted int
		written  = map[uuid.UUID]bool{}
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			res, err := s.SetFlowRunState(ctx, r.ID, orchestration.State{Type: proposals[i%len(proposals)]}, orchestration.Options{})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("concurrent SetFlowRunState: %v", err)
				return
			}
			if res.NewState != nil {
				accepted++
				if written[res.NewState.ID] {
					t.Errorf("state %s reported twice", res.NewState.ID)
				}
				written[res.NewState.ID] = true
			}
		})
	}
	close(start)
	wg.Wait()
	states, err := s.ReadFlowRunStates(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != accepted+1 {
		t.Errorf("%d states for %d written transitions (+1 initial)", len(states), accepted)
	}
	got, err := s.ReadFlowRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	newest := states[len(states)-1]
	if got.StateID == nil || *got.StateID != newest.ID || got.StateType != newest.Type {
		t.Errorf("run points at %v (%s), newest state is %s (%s)", got.StateID, got.StateType, newest.ID, newest.Type)
	}
	for i := 1; i < len(states); i++ {
		if !states[i].Timestamp.After(states[i-1].Timestamp) {
			t.Errorf("state timestamps not strictly increasing at %d", i)
		}
	}
}

func testTaskRunSetStateAndCache(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	f := mustCreate(t, s, store.FlowCreate{Name: "f"})
	r := frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID, State: frPending()})
	frSet(t, s, r.ID, orchestration.Running, orchestration.Options{})
	tr := frInsertTaskRun(t, s, &r.ID, "t1", "{}", `{"max_retries":0,"retry_delay_seconds":0,"retries":1,"retry_delay":0}`)
	key := "cache-key-1"
	exp := store.Now().Add(time.Hour)
	propose := func(id uuid.UUID, st orchestration.State) store.SetStateResult {
		t.Helper()
		res, err := s.SetTaskRunState(ctx, id, st, orchestration.Options{})
		if err != nil {
			t.Fatalf("SetTaskRunState(%s): %v", st.Type, err)
		}
		return res
	}
	if res := propose(tr, orchestration.State{Type: orchestration.Pending}); res.Status != orchestration.Accept {
		t.Fatalf("task PENDING: %+v", res.Result)
	}
	if res := propose(tr, orchestration.State{Type: orchestration.Running}); res.Status != orchestration.Accept {
		t.Fatalf("task RUNNING: %+v", res.Result)
	}
	// A retry through the real engine.
	res := propose(tr, orchestration.State{Type: orchestration.Failed})
	if res.Status != orchestration.Reject || res.State.Type != orchestration.Scheduled || res.State.Name != "AwaitingRetry" {
		t.Fatalf("task RUNNING->FAILED with a retry left: %+v", res.Result)
	}
	propose(tr, orchestration.State{Type: orchestration.Running})
	res = propose(tr, orchestration.State{Type: orchestration.Completed, Data: json.RawMessage(`{"storage_key":"k"}`),
		StateDetails: orchestration.StateDetails{CacheKey: &key, CacheExpiration: &exp}})
	if res.Status != orchestration.Accept {
		t.Fatalf("task COMPLETED: %+v", res.Result)
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM task_run_state_cache WHERE cache_key = ?", key); n != 1 {
		t.Errorf("cache rows = %d", n)
	}
	if n := QueryInt(t, s, "SELECT run_count FROM task_run WHERE id = ?", tr); n != 2 {
		t.Errorf("task run_count = %d, want 2", n)
	}
	if n := QueryInt(t, s, "SELECT flow_run_run_count FROM task_run WHERE id = ?", tr); n != 1 {
		t.Errorf("task flow_run_run_count = %d, want 1", n)
	}
	// A second task run with the same key is answered from the cache.
	tr2 := frInsertTaskRun(t, s, &r.ID, "t2", "{}", "{}")
	propose(tr2, orchestration.State{Type: orchestration.Pending})
	res = propose(tr2, orchestration.State{Type: orchestration.Running, StateDetails: orchestration.StateDetails{CacheKey: &key}})
	if res.Status != orchestration.Reject || res.State.Type != orchestration.Completed || res.State.Name != "Cached" {
		t.Fatalf("cached RUNNING: %+v state %+v", res.Result, res.State)
	}
	if string(res.State.Data) == "" {
		t.Errorf("cached state lost its result")
	}
	// Tasks of a flow run that is no longer running are aborted.
	frSet(t, s, r.ID, orchestration.Completed, orchestration.Options{})
	tr3 := frInsertTaskRun(t, s, &r.ID, "t3", "{}", "{}")
	propose(tr3, orchestration.State{Type: orchestration.Pending})
	res = propose(tr3, orchestration.State{Type: orchestration.Running})
	if res.Status != orchestration.Abort {
		t.Errorf("task RUNNING in a COMPLETED flow: %+v", res.Result)
	}
}

func testSubflowParentTaskRun(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	f := mustCreate(t, s, store.FlowCreate{Name: "parent"})
	parent := frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID, State: frPending()})
	frSet(t, s, parent.ID, orchestration.Running, orchestration.Options{})
	task := frInsertTaskRun(t, s, &parent.ID, "child-task", "{}", "{}")
	if _, err := s.SetTaskRunState(ctx, task, orchestration.State{Type: orchestration.Pending}, orchestration.Options{}); err != nil {
		t.Fatal(err)
	}
	child := frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID, ParentTaskRunID: &task, State: frPending()})
	frSet(t, s, child.ID, orchestration.Running, orchestration.Options{})
	if n := QueryInt(t, s, "SELECT count(*) FROM task_run WHERE id = ? AND state_type = 'RUNNING'", task); n != 1 {
		t.Errorf("parent task run did not follow the subflow to RUNNING")
	}
	frSet(t, s, child.ID, orchestration.Completed, orchestration.Options{})
	if n := QueryInt(t, s, "SELECT count(*) FROM task_run WHERE id = ? AND state_type = 'COMPLETED'", task); n != 1 {
		t.Errorf("parent task run did not follow the subflow to COMPLETED")
	}
}

func testFlowRunGraphs(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	f := mustCreate(t, s, store.FlowCreate{Name: "g"})
	r := frMustRun(t, s, store.FlowRunCreate{FlowID: f.ID, State: frPending()})
	frSet(t, s, r.ID, orchestration.Running, orchestration.Options{})
	up := frInsertTaskRun(t, s, &r.ID, "up", "{}", "{}")
	down := frInsertTaskRun(t, s, &r.ID, "down", fmt.Sprintf(`{"x":[{"input_type":"task_run","id":"%s"}],"y":[{"input_type":"parameter","name":"p"}]}`, up), "{}")
	for _, id := range []uuid.UUID{up, down} {
		for _, typ := range []orchestration.StateType{orchestration.Pending, orchestration.Running, orchestration.Completed} {
			if _, err := s.SetTaskRunState(ctx, id, orchestration.State{Type: typ}, orchestration.Options{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	v1, err := s.ReadFlowRunGraphV1(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(v1) != 2 {
		t.Fatalf("graph v1 has %d nodes", len(v1))
	}
	for _, d := range v1 {
		if d.State == nil || d.State.Type != orchestration.Completed {
			t.Errorf("graph v1 node %s state %+v", d.Name, d.State)
		}
		if d.ID == down && len(d.UpstreamDependencies) != 2 {
			t.Errorf("down depends on %s", d.UpstreamDependencies)
		}
	}
	g, err := s.ReadFlowRunGraphV2(ctx, r.ID, time.Time{}, 100, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Nodes) != 2 || len(g.RootNodeIDs) != 1 || g.RootNodeIDs[0] != up || len(g.States) != 2 || g.StartTime == nil {
		t.Fatalf("graph v2 %+v", g)
	}
	for _, n := range g.Nodes {
		if n.ID == down && (len(n.Parents) != 1 || n.Parents[0] != up) {
			t.Errorf("down parents %v", n.Parents)
		}
		if n.ID == up && (len(n.Children) != 1 || n.Children[0] != down) {
			t.Errorf("up children %v", n.Children)
		}
	}
	if _, err := s.ReadFlowRunGraphV2(ctx, r.ID, time.Time{}, 1, 100); !errors.Is(err, store.ErrGraphTooLarge) {
		t.Errorf("graph over the node limit err = %v", err)
	}
	later, err := s.ReadFlowRunGraphV2(ctx, r.ID, store.Now().Add(time.Hour), 100, 100)
	if err != nil || len(later.Nodes) != 0 {
		t.Errorf("graph since the future = %d nodes, %v", len(later.Nodes), err)
	}
}
