package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/services/orchestration"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
)

// taskRunCases are the conformance cases of store.TaskRunStore.
var taskRunCases = []suiteCase{
	{"TaskRunCreateAndRead", testTaskRunCreateAndRead},
	{"TaskRunCreateIdempotent", testTaskRunCreateIdempotent},
	{"TaskRunCreateWithoutFlowRun", testTaskRunCreateWithoutFlowRun},
	{"TaskRunCreateMissingFlowRun", testTaskRunCreateMissingFlowRun},
	{"TaskRunFilterSortPage", testTaskRunFilterSortPage},
	{"TaskRunUpdateDelete", testTaskRunUpdateDelete},
	{"TaskRunStates", testTaskRunStates},
	{"TaskRunHistory", testTaskRunHistory},
	{"RecordTaskRunEvents", testRecordTaskRunEvents},
	{"RecordTaskRunEventsOutOfOrder", testRecordOutOfOrder},
	{"RecordTaskRunEventsDuplicates", testRecordDuplicates},
	{"RecordTaskRunEventsNaturalKey", testRecordNaturalKey},
	{"RecordTaskRunEventsOrphans", testRecordOrphans},
	{"RecordTaskRunEventsLargeBatch", testRecordLargeBatch},
	{"TaskRunConcurrentCreate", testTaskRunConcurrentCreate},
	{"RecordTaskRunEventsConcurrent", testRecordConcurrent},
}

// trSeedFlowRun inserts a flow and a flow run with labels; the flow run API
// is another resource's, so the rows are written directly.
func trSeedFlowRun(t *testing.T, s store.Store) uuid.UUID {
	t.Helper()
	flowID, runID := uuid.New(), uuid.New()
	Exec(t, s, `INSERT INTO flow (id, name) VALUES (?, ?)`, flowID, "flow-"+flowID.String())
	Exec(t, s, `INSERT INTO flow_run (id, flow_id, name, labels) VALUES (?, ?, 'parent', '{"from-flow-run": "yes", "shared": "parent"}')`, runID, flowID)
	return runID
}

func trPending(now time.Time) *orchestration.State {
	st := orchestration.NewState(orchestration.Pending, "", now)
	return st
}

func trMustCreate(t *testing.T, s store.Store, in store.TaskRunCreate) store.TaskRun {
	t.Helper()
	if in.Name == "" {
		in.Name = in.TaskKey + "-" + in.DynamicKey
	}
	if in.State == nil {
		in.State = trPending(store.Now())
	}
	tr, created, _, err := s.CreateTaskRun(ctxT(t), in, orchestration.Options{})
	if err != nil {
		t.Fatalf("CreateTaskRun(%s/%s): %v", in.TaskKey, in.DynamicKey, err)
	}
	if !created {
		t.Fatalf("CreateTaskRun(%s/%s): created=false for a new key", in.TaskKey, in.DynamicKey)
	}
	return tr
}

func testTaskRunCreateAndRead(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	fr := trSeedFlowRun(t, s)
	retries := 2
	key := "cache-me"
	exp := store.Now().Add(time.Hour)
	in := store.TaskRunCreate{
		Name: "my-task", FlowRunID: &fr, TaskKey: "tasks.add", DynamicKey: "0",
		CacheKey: &key, CacheExpiration: &exp,
		EmpiricalPolicy: orchestration.TaskRunPolicy{Retries: &retries, RetryDelay: orchestration.RetryDelay{Seconds: []float64{1, 2}, IsList: true}},
		Tags:            []string{"b", "a"},
		Labels:          map[string]any{"shared": "client", "mine": "x"},
		TaskInputs:      json.RawMessage(`{"x": [{"input_type": "parameter", "name": "x"}]}`),
		State:           trPending(store.Now()),
	}
	before := store.Now()
	tr, created, res, err := s.CreateTaskRun(ctx, in, orchestration.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Fatal("created=false")
	}
	if res.State == nil || res.State.Type != orchestration.Pending {
		t.Errorf("orchestration result state = %+v, want PENDING", res.State)
	}
	if tr.ID.Version() != 4 || tr.Created.Before(before) {
		t.Errorf("id %s created %v", tr.ID, tr.Created)
	}
	eq(t, "name", tr.Name, "my-task")
	eq(t, "flow run", *tr.FlowRunID, fr)
	eq(t, "task key", tr.TaskKey, "tasks.add")
	eq(t, "cache key", *tr.CacheKey, key)
	eq(t, "cache expiration", *tr.CacheExpiration, store.Truncate(exp))
	eq(t, "tags", tr.Tags, []string{"b", "a"})
	eq(t, "retries", *tr.EmpiricalPolicy.Retries, 2)
	eq(t, "retry delay", tr.EmpiricalPolicy.RetryDelay, orchestration.RetryDelay{Seconds: []float64{1, 2}, IsList: true})
	// Prefect's with_system_labels_for_task_run: flow run labels, then the
	// flow run id, then the client's.
	eq(t, "labels", tr.Labels, map[string]any{"from-flow-run": "yes", "shared": "client", "mine": "x", "prefect.flow-run.id": fr.String()})
	var inputs map[string]any
	if err := json.Unmarshal(tr.TaskInputs, &inputs); err != nil || len(inputs["x"].([]any)) != 1 {
		t.Errorf("task inputs %s (%v)", tr.TaskInputs, err)
	}
	if tr.State == nil || tr.StateID == nil || *tr.StateID != tr.State.ID {
		t.Fatalf("state %+v state_id %v", tr.State, tr.StateID)
	}
	eq(t, "state type", tr.StateType, orchestration.Pending)
	eq(t, "state name", tr.StateName, "Pending")
	eq(t, "state id", tr.State.ID, in.State.ID)
	if d := tr.State.StateDetails; d.TaskRunID == nil || *d.TaskRunID != tr.ID {
		t.Errorf("state details task_run_id = %v, want %s", d.TaskRunID, tr.ID)
	}
	if tr.ExpectedStartTime == nil {
		t.Error("expected_start_time not set by the initial transition")
	}

	got, err := s.ReadTaskRun(ctx, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "ReadTaskRun", got, tr)
	if _, err := s.ReadTaskRun(ctx, uuid.New()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReadTaskRun(missing) err = %v", err)
	}

	// A client-chosen id is kept.
	want := uuid.New()
	own := trMustCreate(t, s, store.TaskRunCreate{ID: &want, FlowRunID: &fr, TaskKey: "tasks.add", DynamicKey: "1"})
	eq(t, "client id", own.ID, want)
	// No state asked: none written.
	bare, created, _, err := s.CreateTaskRun(ctx, store.TaskRunCreate{Name: "bare", FlowRunID: &fr, TaskKey: "tasks.add", DynamicKey: "2"}, orchestration.Options{})
	if err != nil || !created {
		t.Fatalf("create without state: %v created=%v", err, created)
	}
	if bare.State != nil || bare.StateID != nil || bare.StateType != orchestration.NoState {
		t.Errorf("run created without state has state %+v", bare.State)
	}
	eq(t, "bare tags", bare.Tags, []string{})
	eq(t, "bare inputs", string(bare.TaskInputs), "{}")
}

func testTaskRunCreateIdempotent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	fr := trSeedFlowRun(t, s)
	first := trMustCreate(t, s, store.TaskRunCreate{FlowRunID: &fr, TaskKey: "k", DynamicKey: "0", Tags: []string{"first"}})
	again, created, res, err := s.CreateTaskRun(ctx, store.TaskRunCreate{
		Name: "other", FlowRunID: &fr, TaskKey: "k", DynamicKey: "0", Tags: []string{"second"},
		State: orchestration.NewState(orchestration.Running, "", store.Now()),
	}, orchestration.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Error("second create reported created=true")
	}
	if res.State != nil || len(res.Events) != 0 {
		t.Errorf("second create applied a state: %+v", res)
	}
	eq(t, "existing run", again, first)
	states, err := s.ReadTaskRunStates(ctx, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "states after second create", len(states), 1)
}

func testTaskRunCreateWithoutFlowRun(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	first := trMustCreate(t, s, store.TaskRunCreate{TaskKey: "bg", DynamicKey: "d"})
	if first.FlowRunID != nil {
		t.Fatalf("flow run %v", first.FlowRunID)
	}
	eq(t, "labels without flow run", first.Labels, map[string]any{})
	again, created, _, err := s.CreateTaskRun(ctx, store.TaskRunCreate{Name: "x", TaskKey: "bg", DynamicKey: "d", State: trPending(store.Now())}, orchestration.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if created || again.ID != first.ID {
		t.Errorf("created=%v id=%s, want the existing %s", created, again.ID, first.ID)
	}
	other := trMustCreate(t, s, store.TaskRunCreate{TaskKey: "bg", DynamicKey: "e"})
	if other.ID == first.ID {
		t.Error("another dynamic key returned the same run")
	}
}

func testTaskRunCreateMissingFlowRun(t *testing.T, s store.Store) {
	missing := uuid.New()
	_, _, _, err := s.CreateTaskRun(ctxT(t), store.TaskRunCreate{Name: "n", FlowRunID: &missing, TaskKey: "k", DynamicKey: "0", State: trPending(store.Now())}, orchestration.Options{})
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("err = %v, want ErrConflict", err)
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM task_run"); n != 0 {
		t.Errorf("%d task runs written", n)
	}
}

func trNames(trs []store.TaskRun) []string {
	out := make([]string, len(trs))
	for i, tr := range trs {
		out[i] = tr.Name
	}
	return out
}

func testTaskRunFilterSortPage(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	fr1, fr2 := trSeedFlowRun(t, s), trSeedFlowRun(t, s)
	for i, name := range []string{"c", "a", "d", "b"} {
		fr := fr1
		if i%2 == 1 {
			fr = fr2
		}
		trMustCreate(t, s, store.TaskRunCreate{Name: name, FlowRunID: &fr, TaskKey: "k", DynamicKey: name, Tags: []string{"t-" + name}})
	}
	read := func(q store.TaskRunQuery) []string {
		t.Helper()
		trs, err := s.ReadTaskRuns(ctx, q)
		if err != nil {
			t.Fatalf("ReadTaskRuns(%+v): %v", q, err)
		}
		return trNames(trs)
	}
	eq(t, "NAME_ASC", read(store.TaskRunQuery{Sort: "NAME_ASC"}), []string{"a", "b", "c", "d"})
	eq(t, "NAME_DESC page", read(store.TaskRunQuery{Sort: "NAME_DESC", Limit: 2, Offset: 1}), []string{"c", "b"})
	eq(t, "flow run ids", read(store.TaskRunQuery{Sort: "NAME_ASC", Filter: filter.TaskRunFilterSet{FlowRuns: &filter.FlowRunFilter{Id: &filter.FlowRunFilterId{Any: []uuid.UUID{fr2}}}}}), []string{"a", "b"})
	eq(t, "task run name like", read(store.TaskRunQuery{Filter: filter.TaskRunFilterSet{TaskRuns: &filter.TaskRunFilter{Name: &filter.TaskRunFilterName{Any: []string{"d"}}}}}), []string{"d"})
	eq(t, "tags", read(store.TaskRunQuery{Filter: filter.TaskRunFilterSet{TaskRuns: &filter.TaskRunFilter{Tags: &filter.TaskRunFilterTags{All: []string{"t-c"}}}}}), []string{"c"})
	eq(t, "flow run name", len(read(store.TaskRunQuery{Filter: filter.TaskRunFilterSet{FlowRuns: &filter.FlowRunFilter{Name: &filter.FlowRunFilterName{Any: []string{"parent"}}}}})), 4)
	all := read(store.TaskRunQuery{})
	eq(t, "default sort count", len(all), 4)
	for _, sort := range []string{"ID_DESC", "EXPECTED_START_TIME_ASC", "EXPECTED_START_TIME_DESC", "NEXT_SCHEDULED_START_TIME_ASC", "END_TIME_DESC", "DURATION_ASC", "DURATION_DESC"} {
		if got := read(store.TaskRunQuery{Sort: sort}); len(got) != 4 {
			t.Errorf("sort %s returned %d runs", sort, len(got))
		}
	}
	if _, err := s.ReadTaskRuns(ctx, store.TaskRunQuery{Sort: "SIDEWAYS"}); !errors.Is(err, filter.ErrInvalid) {
		t.Errorf("bad sort err = %v", err)
	}
	n, err := s.CountTaskRuns(ctx, filter.TaskRunFilterSet{FlowRuns: &filter.FlowRunFilter{Id: &filter.FlowRunFilterId{Any: []uuid.UUID{fr1}}}})
	if err != nil || n != 2 {
		t.Errorf("CountTaskRuns(fr1) = %d, %v", n, err)
	}
	n, err = s.CountTaskRuns(ctx, filter.TaskRunFilterSet{})
	if err != nil || n != 4 {
		t.Errorf("CountTaskRuns() = %d, %v", n, err)
	}
}

func testTaskRunUpdateDelete(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	fr := trSeedFlowRun(t, s)
	tr := trMustCreate(t, s, store.TaskRunCreate{FlowRunID: &fr, TaskKey: "k", DynamicKey: "0"})
	waitPast(t, tr.Updated)
	name := "renamed"
	if err := s.UpdateTaskRun(ctx, tr.ID, store.TaskRunUpdate{Name: &name}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadTaskRun(ctx, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "name", got.Name, "renamed")
	if !got.Updated.After(tr.Updated) {
		t.Errorf("updated %v did not advance past %v", got.Updated, tr.Updated)
	}
	if err := s.UpdateTaskRun(ctx, tr.ID, store.TaskRunUpdate{}); err != nil {
		t.Errorf("empty update: %v", err)
	}
	if err := s.UpdateTaskRun(ctx, uuid.New(), store.TaskRunUpdate{Name: &name}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update missing err = %v", err)
	}
	if err := s.UpdateTaskRun(ctx, uuid.New(), store.TaskRunUpdate{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("empty update missing err = %v", err)
	}
	Exec(t, s, `INSERT INTO log (id, name, level, flow_run_id, task_run_id, message, timestamp) VALUES (?, 'l', 20, ?, ?, 'm', ?)`, uuid.New(), fr, tr.ID, store.Now())
	if err := s.DeleteTaskRun(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadTaskRun(ctx, tr.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("read after delete err = %v", err)
	}
	for table, want := range map[string]int64{"task_run_state": 0, "log": 0, "flow_run": 1} {
		if n := QueryInt(t, s, "SELECT count(*) FROM "+table); n != want {
			t.Errorf("%s rows after delete = %d, want %d", table, n, want)
		}
	}
	if err := s.DeleteTaskRun(ctx, tr.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete err = %v", err)
	}
}

func testTaskRunStates(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	fr := trSeedFlowRun(t, s)
	tr := trMustCreate(t, s, store.TaskRunCreate{FlowRunID: &fr, TaskKey: "k", DynamicKey: "0"})
	st, err := s.ReadTaskRunState(ctx, tr.State.ID)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "state by id", st, *tr.State)
	if _, err := s.ReadTaskRunState(ctx, uuid.New()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing state err = %v", err)
	}
	// Two more states through the recorder, given out of order.
	t0 := tr.State.Timestamp
	recs := []store.TaskRunRecord{
		trRecord(tr.ID, &fr, "k", "0", orchestration.Completed, t0.Add(2*time.Second)),
		trRecord(tr.ID, &fr, "k", "0", orchestration.Running, t0.Add(time.Second)),
	}
	msg := "done"
	recs[0].State.Message = &msg
	recs[0].State.Data = json.RawMessage(`{"type": "result", "storage_key": "x"}`)
	if _, err := s.RecordTaskRunEvents(ctx, recs); err != nil {
		t.Fatal(err)
	}
	states, err := s.ReadTaskRunStates(ctx, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	var types []orchestration.StateType
	for _, st := range states {
		types = append(types, st.Type)
	}
	eq(t, "states oldest first", types, []orchestration.StateType{orchestration.Pending, orchestration.Running, orchestration.Completed})
	eq(t, "message", *states[2].Message, "done")
	var data map[string]any
	if err := json.Unmarshal(states[2].Data, &data); err != nil || data["storage_key"] != "x" {
		t.Errorf("data = %s (%v)", states[2].Data, err)
	}
	none, err := s.ReadTaskRunStates(ctx, uuid.New())
	if err != nil || len(none) != 0 {
		t.Errorf("states of unknown run = %v, %v", none, err)
	}

	// An initial state with a result: set_state keeps the data in a result
	// artifact, and every read serves it from there.
	done := orchestration.NewState(orchestration.Completed, "", store.Now())
	done.Data = json.RawMessage(`{"type": "reference", "storage_key": "/tmp/r"}`)
	withResult := trMustCreate(t, s, store.TaskRunCreate{FlowRunID: &fr, TaskKey: "k", DynamicKey: "result", State: done})
	if st := withResult.State; st == nil || !strings.Contains(string(st.Data), "/tmp/r") {
		t.Errorf("created state data = %+v", st)
	}
	again, err := s.ReadTaskRun(ctx, withResult.ID)
	if err != nil || again.State == nil || !strings.Contains(string(again.State.Data), "/tmp/r") {
		t.Errorf("ReadTaskRun state data: %+v, %v", again.State, err)
	}
	byID, err := s.ReadTaskRunState(ctx, withResult.State.ID)
	if err != nil || !strings.Contains(string(byID.Data), "/tmp/r") {
		t.Errorf("ReadTaskRunState data = %s, %v", byID.Data, err)
	}
	list, err := s.ReadTaskRunStates(ctx, withResult.ID)
	if err != nil || len(list) != 1 || !strings.Contains(string(list[0].Data), "/tmp/r") {
		t.Errorf("ReadTaskRunStates = %+v, %v", list, err)
	}
}

func testTaskRunHistory(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	fr := trSeedFlowRun(t, s)
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	// Runs recorded at fixed expected start times, in two states.
	for i, tc := range []struct {
		at  time.Duration
		typ orchestration.StateType
	}{{10 * time.Minute, orchestration.Completed}, {20 * time.Minute, orchestration.Completed}, {70 * time.Minute, orchestration.Failed}, {3 * time.Hour, orchestration.Completed}} {
		r := trRecord(uuid.New(), &fr, "k", fmt.Sprint(i), tc.typ, start.Add(tc.at+time.Minute))
		exp := start.Add(tc.at)
		r.Run.ExpectedStartTime, r.Set.ExpectedStartTime = &exp, true
		r.Run.TotalRunTime, r.Set.TotalRunTime = 2*time.Second, true
		if _, err := s.RecordTaskRunEvents(ctx, []store.TaskRunRecord{r}); err != nil {
			t.Fatal(err)
		}
	}
	hist, err := s.TaskRunHistory(ctx, store.TaskRunHistoryQuery{Start: start, End: start.Add(90 * time.Minute), Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 {
		t.Fatalf("%d intervals, want 2", len(hist))
	}
	eq(t, "interval 0", hist[0].States, []store.HistoryState{{StateType: orchestration.Completed, StateName: "Completed", CountRuns: 2, SumEstimatedRunTime: 4}})
	eq(t, "interval 1", hist[1].States, []store.HistoryState{{StateType: orchestration.Failed, StateName: "Failed", CountRuns: 1, SumEstimatedRunTime: 2}})
	eq(t, "interval bounds", []time.Time{hist[1].Start, hist[1].End}, []time.Time{start.Add(time.Hour), start.Add(2 * time.Hour)})
	empty, err := s.TaskRunHistory(ctx, store.TaskRunHistoryQuery{Start: start, End: start, Interval: time.Hour})
	if err != nil || len(empty) != 0 {
		t.Errorf("empty span = %v, %v", empty, err)
	}
	filtered, err := s.TaskRunHistory(ctx, store.TaskRunHistoryQuery{Start: start, End: start.Add(time.Hour), Interval: time.Hour,
		Filter: filter.TaskRunFilterSet{FlowRuns: &filter.FlowRunFilter{Id: &filter.FlowRunFilterId{Any: []uuid.UUID{uuid.New()}}}}})
	if err != nil || len(filtered) != 1 || len(filtered[0].States) != 0 {
		t.Errorf("filtered history = %+v, %v", filtered, err)
	}
}

// trRecord builds a recorder record the way the task run recorder does for a
// client event: state id = event id, columns name/keys always set.
func trRecord(id uuid.UUID, fr *uuid.UUID, taskKey, dynKey string, typ orchestration.StateType, at time.Time) store.TaskRunRecord {
	st := orchestration.State{ID: uuid.New(), Type: typ, Timestamp: store.Truncate(at)}
	orchestration.NormalizeState(&st, at)
	ts := st.Timestamp
	return store.TaskRunRecord{
		EventID: st.ID,
		Run: store.TaskRun{
			RunCore:    orchestration.RunCore{ID: id, StateID: &st.ID, StateType: typ, StateName: st.Name, StateTimestamp: &ts},
			Name:       "rec-" + taskKey + "-" + dynKey,
			FlowRunID:  fr,
			TaskKey:    taskKey,
			DynamicKey: dynKey,
			Tags:       []string{},
		},
		State: st,
	}
}

func testRecordTaskRunEvents(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	fr := trSeedFlowRun(t, s)
	id := uuid.New()
	t0 := store.Now()
	pending := trRecord(id, &fr, "tasks.say", "0", orchestration.Pending, t0)
	pending.Run.Tags, pending.Set.Tags = []string{"x"}, true
	pending.Run.Labels, pending.Set.Labels = map[string]any{"l": "v"}, true
	pending.Run.TaskInputs, pending.Set.TaskInputs = json.RawMessage(`{"a": []}`), true
	pending.Run.ExpectedStartTime, pending.Set.ExpectedStartTime = &t0, true
	running := trRecord(id, &fr, "tasks.say", "0", orchestration.Running, t0.Add(time.Second))
	started := t0.Add(time.Second)
	running.Run.StartTime, running.Set.StartTime = &started, true
	running.Run.RunCount, running.Set.RunCount = 1, true
	if _, err := s.RecordTaskRunEvents(ctx, []store.TaskRunRecord{pending, running}); err != nil {
		t.Fatal(err)
	}
	tr, err := s.ReadTaskRun(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "state", tr.StateType, orchestration.Running)
	eq(t, "state id", *tr.StateID, running.State.ID)
	eq(t, "run count", tr.RunCount, 1)
	eq(t, "start time", *tr.StartTime, started)
	// The newer record carried no tags or labels: the older one's are not
	// in the row, because only the winner of a batch is written, exactly
	// as Prefect's recorder.
	eq(t, "tags of the winner", tr.Tags, []string{})

	// A later event without start_time must not clear it; one with new
	// tags updates them.
	completed := trRecord(id, &fr, "tasks.say", "0", orchestration.Completed, t0.Add(2*time.Second))
	ended := t0.Add(2 * time.Second)
	completed.Run.EndTime, completed.Set.EndTime = &ended, true
	completed.Run.TotalRunTime, completed.Set.TotalRunTime = 1500*time.Millisecond, true
	completed.Run.Tags, completed.Set.Tags = []string{"y"}, true
	completed.Run.Labels, completed.Set.Labels = map[string]any{"l": "w"}, true
	if _, err := s.RecordTaskRunEvents(ctx, []store.TaskRunRecord{completed}); err != nil {
		t.Fatal(err)
	}
	tr, err = s.ReadTaskRun(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "state", tr.StateType, orchestration.Completed)
	eq(t, "state name", tr.StateName, "Completed")
	eq(t, "kept start time", *tr.StartTime, started)
	eq(t, "end time", *tr.EndTime, ended)
	eq(t, "total run time", tr.TotalRunTime, 1500*time.Millisecond)
	eq(t, "tags", tr.Tags, []string{"y"})
	eq(t, "labels", tr.Labels, map[string]any{"l": "w"})
	eq(t, "run count kept", tr.RunCount, 1)
	if tr.State == nil || tr.State.ID != completed.State.ID {
		t.Fatalf("current state %+v", tr.State)
	}
	if d := tr.State.StateDetails; d.TaskRunID == nil || *d.TaskRunID != id || d.FlowRunID == nil || *d.FlowRunID != fr {
		t.Errorf("state details %+v", d)
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM task_run_state WHERE task_run_id = ?", id); n != 3 {
		t.Errorf("%d states, want 3", n)
	}

	// A run without a flow run is keyed by its id.
	solo := uuid.New()
	if _, err := s.RecordTaskRunEvents(ctx, []store.TaskRunRecord{
		trRecord(solo, nil, "bg", "0", orchestration.Scheduled, t0),
		trRecord(solo, nil, "bg", "0", orchestration.Pending, t0.Add(time.Second)),
	}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadTaskRun(ctx, solo)
	if err != nil || got.FlowRunID != nil || got.StateType != orchestration.Pending {
		t.Errorf("solo run %+v, %v", got, err)
	}
}

func testRecordOutOfOrder(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	fr := trSeedFlowRun(t, s)
	id := uuid.New()
	t0 := store.Now()
	completed := trRecord(id, &fr, "k", "0", orchestration.Completed, t0.Add(2*time.Second))
	completed.Run.Name = "newest"
	if _, err := s.RecordTaskRunEvents(ctx, []store.TaskRunRecord{completed}); err != nil {
		t.Fatal(err)
	}
	// An older event arriving later (another batch) must not win.
	running := trRecord(id, &fr, "k", "0", orchestration.Running, t0.Add(time.Second))
	running.Run.Name = "older"
	if _, err := s.RecordTaskRunEvents(ctx, []store.TaskRunRecord{running}); err != nil {
		t.Fatal(err)
	}
	tr, err := s.ReadTaskRun(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "state after older event", tr.StateType, orchestration.Completed)
	eq(t, "name after older event", tr.Name, "newest")
	// Its state is still part of the history.
	if n := QueryInt(t, s, "SELECT count(*) FROM task_run_state WHERE task_run_id = ?", id); n != 2 {
		t.Errorf("%d states, want 2", n)
	}
	// Within one batch, too, the newest wins whatever the order.
	other := uuid.New()
	a := trRecord(other, &fr, "k", "1", orchestration.Completed, t0.Add(5*time.Second))
	b := trRecord(other, &fr, "k", "1", orchestration.Pending, t0.Add(3*time.Second))
	if _, err := s.RecordTaskRunEvents(ctx, []store.TaskRunRecord{a, b}); err != nil {
		t.Fatal(err)
	}
	tr, err = s.ReadTaskRun(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "state in batch", tr.StateType, orchestration.Completed)
}

func testRecordDuplicates(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	fr := trSeedFlowRun(t, s)
	id := uuid.New()
	r := trRecord(id, &fr, "k", "0", orchestration.Running, store.Now())
	if _, err := s.RecordTaskRunEvents(ctx, []store.TaskRunRecord{r, r}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordTaskRunEvents(ctx, []store.TaskRunRecord{r}); err != nil {
		t.Fatalf("redelivered event: %v", err)
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM task_run_state WHERE task_run_id = ?", id); n != 1 {
		t.Errorf("%d states, want 1", n)
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM task_run"); n != 1 {
		t.Errorf("%d task runs, want 1", n)
	}
	// A different event with the same timestamp for the run collides on
	// (task_run_id, timestamp): skipped, not a failed batch.
	twin := trRecord(id, &fr, "k", "0", orchestration.Running, r.State.Timestamp)
	if _, err := s.RecordTaskRunEvents(ctx, []store.TaskRunRecord{twin}); err != nil {
		t.Fatalf("same-timestamp event: %v", err)
	}
}

func testRecordNaturalKey(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	fr := trSeedFlowRun(t, s)
	// A run created through the API owns the natural key...
	existing := trMustCreate(t, s, store.TaskRunCreate{FlowRunID: &fr, TaskKey: "k", DynamicKey: "0"})
	// ...and an event for the same key with another id updates that run.
	other := uuid.New()
	r := trRecord(other, &fr, "k", "0", orchestration.Running, store.Now().Add(time.Second))
	if _, err := s.RecordTaskRunEvents(ctx, []store.TaskRunRecord{r}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadTaskRun(ctx, other); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a second run was created under the event's id: %v", err)
	}
	tr, err := s.ReadTaskRun(ctx, existing.ID)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "state", tr.StateType, orchestration.Running)
	st, err := s.ReadTaskRunState(ctx, r.State.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.StateDetails.TaskRunID == nil || *st.StateDetails.TaskRunID != existing.ID {
		t.Errorf("state's task_run_id = %v, want the canonical %s", st.StateDetails.TaskRunID, existing.ID)
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM task_run_state WHERE task_run_id = ?", existing.ID); n != 2 {
		t.Errorf("%d states on the canonical run, want 2", n)
	}

	// In one batch: a record naming a new id and the existing key, and one
	// naming that new id alone, coalesce onto the existing run.
	fresh := uuid.New()
	a := trRecord(fresh, &fr, "k", "0", orchestration.Completed, store.Now().Add(3*time.Second))
	b := trRecord(fresh, &fr, "k", "0", orchestration.Running, store.Now().Add(2*time.Second))
	if _, err := s.RecordTaskRunEvents(ctx, []store.TaskRunRecord{b, a}); err != nil {
		t.Fatal(err)
	}
	tr, err = s.ReadTaskRun(ctx, existing.ID)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "state after coalesced batch", tr.StateType, orchestration.Completed)
	if n := QueryInt(t, s, "SELECT count(*) FROM task_run"); n != 1 {
		t.Errorf("%d task runs, want 1", n)
	}
}

func testRecordOrphans(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	fr := trSeedFlowRun(t, s)
	gone := uuid.New()
	good := trRecord(uuid.New(), &fr, "k", "0", orchestration.Running, store.Now())
	orphan := trRecord(uuid.New(), &gone, "k", "0", orchestration.Running, store.Now())
	skipped, err := s.RecordTaskRunEvents(ctx, []store.TaskRunRecord{orphan, good})
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) != 1 || skipped[0].EventID != orphan.EventID {
		t.Errorf("skipped = %+v, want the orphan", skipped)
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM task_run"); n != 1 {
		t.Errorf("%d task runs, want 1", n)
	}
}

func testRecordLargeBatch(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	fr := trSeedFlowRun(t, s)
	const runs = 1200 // more than one statement's worth of rows
	t0 := store.Now()
	var recs []store.TaskRunRecord
	for i := range runs {
		id := uuid.New()
		p := trRecord(id, &fr, "many", fmt.Sprint(i), orchestration.Pending, t0)
		p.Run.Tags, p.Set.Tags = []string{"bulk"}, true
		c := trRecord(id, &fr, "many", fmt.Sprint(i), orchestration.Completed, t0.Add(time.Second))
		c.Run.Tags, c.Set.Tags = []string{"bulk"}, true
		recs = append(recs, p, c)
	}
	if _, err := s.RecordTaskRunEvents(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM task_run"); n != runs {
		t.Errorf("%d task runs, want %d", n, runs)
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM task_run_state"); n != 2*runs {
		t.Errorf("%d states, want %d", n, 2*runs)
	}
	n, err := s.CountTaskRuns(ctx, filter.TaskRunFilterSet{TaskRuns: &filter.TaskRunFilter{State: &filter.TaskRunFilterState{Type: &filter.TaskRunFilterStateType{Any: []string{"COMPLETED"}}}}})
	if err != nil || n != runs {
		t.Errorf("completed runs = %d, %v", n, err)
	}
}

// testTaskRunConcurrentCreate races creators of one natural key (and of
// one flow-run-less key): exactly one creates, all see the same run, and
// the run has exactly one state.
func testTaskRunConcurrentCreate(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	fr := trSeedFlowRun(t, s)
	for _, flowRun := range []*uuid.UUID{&fr, nil} {
		const n = 16
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			ids     = map[uuid.UUID]bool{}
			created int
			errs    []error
		)
		start := make(chan struct{})
		for range n {
			wg.Go(func() {
				<-start
				tr, c, _, err := s.CreateTaskRun(ctx, store.TaskRunCreate{Name: "race", FlowRunID: flowRun, TaskKey: "race", DynamicKey: "0", State: trPending(store.Now())}, orchestration.Options{})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				ids[tr.ID] = true
				if c {
					created++
				}
			})
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("flow run %v: %d of %d creates failed, first: %v", flowRun, len(errs), n, errs[0])
		}
		if created != 1 || len(ids) != 1 {
			t.Errorf("flow run %v: created=%d distinct ids=%d, want one run", flowRun, created, len(ids))
		}
		for id := range ids {
			if n := QueryInt(t, s, "SELECT count(*) FROM task_run_state WHERE task_run_id = ?", id); n != 1 {
				t.Errorf("flow run %v: %d states, want 1", flowRun, n)
			}
		}
	}
}

// testRecordConcurrent writes overlapping batches from several goroutines,
// as several recorders (or one recorder's retries) would: every state is
// recorded once and each run ends in its newest state.
func testRecordConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	fr := trSeedFlowRun(t, s)
	const runs, writers = 20, 4
	t0 := store.Now()
	ids := make([]uuid.UUID, runs)
	var all []store.TaskRunRecord
	for i := range ids {
		ids[i] = uuid.New()
		for j, typ := range []orchestration.StateType{orchestration.Pending, orchestration.Running, orchestration.Completed} {
			all = append(all, trRecord(ids[i], &fr, "conc", fmt.Sprint(i), typ, t0.Add(time.Duration(j)*time.Second)))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			// Each writer sends every record, in its own order.
			batch := make([]store.TaskRunRecord, 0, len(all))
			for k := range all {
				batch = append(batch, all[(k+w*7)%len(all)])
			}
			for attempt := 0; ; attempt++ {
				_, err := s.RecordTaskRunEvents(ctx, batch)
				// A deadlock between writers is ErrUnavailable, which the
				// recorder retries; anything else is a failure.
				if err == nil || !errors.Is(err, store.ErrUnavailable) || attempt == 5 {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent RecordTaskRunEvents: %v", err)
		}
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM task_run"); n != runs {
		t.Errorf("%d task runs, want %d", n, runs)
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM task_run_state"); n != 3*runs {
		t.Errorf("%d states, want %d", n, 3*runs)
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM task_run WHERE state_type = 'COMPLETED'"); n != runs {
		t.Errorf("%d completed runs, want %d", n, runs)
	}
}
