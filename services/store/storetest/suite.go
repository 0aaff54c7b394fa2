package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
)

// suiteCase is one conformance case; each runs on a fresh store.
type suiteCase struct {
	name string
	fn   func(t *testing.T, s store.Store)
}

// RunSuite checks an adapter against the store.Store contract. open must
// return a fresh, empty store for each call: the suite calls it once per
// subtest, and runs the subtests in parallel.
func RunSuite(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []suiteCase{
		{"Ping", testPing},
		{"CreateFlowTwice", testCreateFlowTwice},
		{"FlowRoundTrip", testFlowRoundTrip},
		{"NotFound", testNotFound},
		{"FilterByName", testFilterByName},
		{"FilterByTags", testFilterByTags},
		{"FilterByID", testFilterByID},
		{"FilterByFlowRuns", testFilterByFlowRuns},
		{"InvalidFilter", testInvalidFilter},
		{"Sort", testSort},
		{"LimitOffset", testLimitOffset},
		{"Count", testCount},
		{"UpdateFlow", testUpdateFlow},
		{"DeleteCascades", testDeleteCascades},
		{"BulkDelete", testBulkDelete},
		{"HostileText", testHostileText},
		{"ConcurrentCreate", testConcurrentCreate},
	}
	// Each resource's cases live in their own file (flowrun.go, taskrun.go,
	// log.go, event.go) and are appended here.
	tests = append(tests, flowRunCases...)
	tests = append(tests, taskRunCases...)
	tests = append(tests, logCases...)
	tests = append(tests, eventCases...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustCreate(t *testing.T, s store.Store, in store.FlowCreate) store.Flow {
	t.Helper()
	f, created, err := s.CreateFlow(ctxT(t), in)
	if err != nil {
		t.Fatalf("CreateFlow(%q): %v", in.Name, err)
	}
	if !created {
		t.Fatalf("CreateFlow(%q): created=false for a new name", in.Name)
	}
	return f
}

func names(fs []store.Flow) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Name
	}
	return out
}

func readNames(t *testing.T, s store.Store, q store.FlowQuery) []string {
	t.Helper()
	fs, err := s.ReadFlows(ctxT(t), q)
	if err != nil {
		t.Fatalf("ReadFlows(%+v): %v", q, err)
	}
	return names(fs)
}

func eq(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func ptr[T any](v T) *T { return &v }

// waitPast spins until store.Now() is after ts, so that a following write is
// guaranteed a later timestamp at microsecond precision without sleeping.
func waitPast(t *testing.T, ts time.Time) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !store.Now().After(ts) {
		if time.Now().After(deadline) {
			t.Fatalf("clock did not pass %v", ts)
		}
	}
}

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(ctxT(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if d := s.Dialect(); d != filter.Postgres && d != filter.SQLite {
		t.Fatalf("Dialect = %v", d)
	}
}

func testCreateFlowTwice(t *testing.T, s store.Store) {
	first := mustCreate(t, s, store.FlowCreate{Name: "etl", Tags: []string{"a"}})
	again, created, err := s.CreateFlow(ctxT(t), store.FlowCreate{Name: "etl", Tags: []string{"other"}, Labels: map[string]any{"x": "y"}})
	if err != nil {
		t.Fatalf("second CreateFlow: %v", err)
	}
	if created {
		t.Error("second CreateFlow reported created=true")
	}
	// The existing row comes back untouched.
	eq(t, "second CreateFlow", again, first)
}

func testFlowRoundTrip(t *testing.T, s store.Store) {
	before := store.Now()
	bare := mustCreate(t, s, store.FlowCreate{Name: "bare"})
	if bare.ID.Version() != 4 {
		t.Errorf("id %s is not a uuid4", bare.ID)
	}
	eq(t, "nil tags", bare.Tags, []string{})
	if bare.Labels != nil {
		t.Errorf("nil labels read back as %#v", bare.Labels)
	}
	if bare.Created.Location() != time.UTC || bare.Created.Nanosecond()%1000 != 0 {
		t.Errorf("created %v is not UTC at microsecond precision", bare.Created)
	}
	if bare.Created.Before(before) || !bare.Updated.Equal(bare.Created) {
		t.Errorf("created %v updated %v, want both = create time >= %v", bare.Created, bare.Updated, before)
	}

	labels := map[string]any{"env": "prod", "n": 12345678901234, "ok": true, "f": 1.5}
	full := mustCreate(t, s, store.FlowCreate{Name: "full", Tags: []string{"b", "a", "ünï", `q"uote`}, Labels: labels})
	eq(t, "tags", full.Tags, []string{"b", "a", "ünï", `q"uote`})
	want, _ := json.Marshal(labels)
	got, _ := json.Marshal(full.Labels)
	if string(got) != string(want) {
		t.Errorf("labels = %s, want %s", got, want)
	}
	empty := mustCreate(t, s, store.FlowCreate{Name: "empty-labels", Labels: map[string]any{}})
	if empty.Labels == nil || len(empty.Labels) != 0 {
		t.Errorf("empty labels read back as %#v, want {}", empty.Labels)
	}

	for _, f := range []store.Flow{bare, full, empty} {
		byID, err := s.ReadFlow(ctxT(t), f.ID)
		if err != nil {
			t.Fatalf("ReadFlow: %v", err)
		}
		eq(t, "ReadFlow", byID, f)
		byName, err := s.ReadFlowByName(ctxT(t), f.Name)
		if err != nil {
			t.Fatalf("ReadFlowByName: %v", err)
		}
		eq(t, "ReadFlowByName", byName, f)
	}
	all, err := s.ReadFlows(ctxT(t), store.FlowQuery{})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "ReadFlows", all, []store.Flow{bare, empty, full})
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustCreate(t, s, store.FlowCreate{Name: "present"})
	missing := uuid.New()
	if _, err := s.ReadFlow(ctx, missing); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReadFlow(missing) err = %v", err)
	}
	if _, err := s.ReadFlowByName(ctx, "absent"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReadFlowByName(absent) err = %v", err)
	}
	if err := s.UpdateFlow(ctx, missing, store.FlowUpdate{Tags: &[]string{"x"}}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateFlow(missing) err = %v", err)
	}
	if err := s.UpdateFlow(ctx, missing, store.FlowUpdate{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateFlow(missing, no fields) err = %v", err)
	}
	if err := s.DeleteFlow(ctx, missing); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteFlow(missing) err = %v", err)
	}
}

func seedFlows(t *testing.T, s store.Store) map[string]store.Flow {
	t.Helper()
	out := map[string]store.Flow{}
	for _, in := range []store.FlowCreate{
		{Name: "alpha-etl", Tags: []string{"prod", "etl"}},
		{Name: "beta-ETL", Tags: []string{"prod"}},
		{Name: "gamma", Tags: []string{"dev", "etl"}},
		{Name: "delta_50%"},
	} {
		out[in.Name] = mustCreate(t, s, in)
	}
	return out
}

func flowsFilter(f filter.FlowFilter) store.FlowQuery {
	return store.FlowQuery{Filter: filter.FlowFilterSet{Flows: &f}}
}

func testFilterByName(t *testing.T, s store.Store) {
	seedFlows(t, s)
	eq(t, "name any_", readNames(t, s, flowsFilter(filter.FlowFilter{Name: &filter.FlowFilterName{Any: []string{"gamma", "beta-ETL", "nope"}}})),
		[]string{"beta-ETL", "gamma"})
	eq(t, "name like_ etl (case-insensitive substring)", readNames(t, s, flowsFilter(filter.FlowFilter{Name: &filter.FlowFilterName{Like: ptr("etl")}})),
		[]string{"alpha-etl", "beta-ETL"})
	eq(t, "name like_ with a literal %", readNames(t, s, flowsFilter(filter.FlowFilter{Name: &filter.FlowFilterName{Like: ptr("50%")}})),
		[]string{"delta_50%"})
	eq(t, "name like_ with a literal _", readNames(t, s, flowsFilter(filter.FlowFilter{Name: &filter.FlowFilterName{Like: ptr("a_5")}})),
		[]string{"delta_50%"})
	eq(t, "name any_ empty list", readNames(t, s, flowsFilter(filter.FlowFilter{Name: &filter.FlowFilterName{Any: []string{}}})),
		[]string{})
}

func testFilterByTags(t *testing.T, s store.Store) {
	seedFlows(t, s)
	eq(t, "tags all_ prod", readNames(t, s, flowsFilter(filter.FlowFilter{Tags: &filter.FlowFilterTags{All: []string{"prod"}}})),
		[]string{"alpha-etl", "beta-ETL"})
	eq(t, "tags all_ prod,etl", readNames(t, s, flowsFilter(filter.FlowFilter{Tags: &filter.FlowFilterTags{All: []string{"etl", "prod"}}})),
		[]string{"alpha-etl"})
	eq(t, "tags is_null_ true", readNames(t, s, flowsFilter(filter.FlowFilter{Tags: &filter.FlowFilterTags{IsNull: ptr(true)}})),
		[]string{"delta_50%"})
	eq(t, "tags is_null_ false", readNames(t, s, flowsFilter(filter.FlowFilter{Tags: &filter.FlowFilterTags{IsNull: ptr(false)}})),
		[]string{"alpha-etl", "beta-ETL", "gamma"})
}

func testFilterByID(t *testing.T, s store.Store) {
	fs := seedFlows(t, s)
	eq(t, "id any_", readNames(t, s, flowsFilter(filter.FlowFilter{Id: &filter.FlowFilterId{Any: []uuid.UUID{fs["gamma"].ID, fs["alpha-etl"].ID, uuid.New()}}})),
		[]string{"alpha-etl", "gamma"})
	eq(t, "id not_any_", readNames(t, s, flowsFilter(filter.FlowFilter{Id: &filter.FlowFilterId{NotAny: []uuid.UUID{fs["gamma"].ID, fs["alpha-etl"].ID}}})),
		[]string{"beta-ETL", "delta_50%"})
	or := filter.FlowFilter{Operator: filter.Or, Id: &filter.FlowFilterId{Any: []uuid.UUID{fs["gamma"].ID}}, Name: &filter.FlowFilterName{Any: []string{"beta-ETL"}}}
	eq(t, "operator or_", readNames(t, s, flowsFilter(or)), []string{"beta-ETL", "gamma"})
}

// testFilterByFlowRuns exercises the correlated subqueries over flow_run and
// checks that the schema has the columns the filter package reads.
func testFilterByFlowRuns(t *testing.T, s store.Store) {
	fs := seedFlows(t, s)
	Exec(t, s, `INSERT INTO flow_run (id, flow_id, name, state_type, state_name, tags) VALUES (?, ?, 'run-1', 'COMPLETED', 'Completed', '["nightly"]')`,
		uuid.New(), fs["gamma"].ID)
	q := store.FlowQuery{Filter: filter.FlowFilterSet{FlowRuns: &filter.FlowRunFilter{
		State: &filter.FlowRunFilterState{Type: &filter.FlowRunFilterStateType{Any: []string{"COMPLETED"}}},
	}}}
	eq(t, "flows with a COMPLETED run", readNames(t, s, q), []string{"gamma"})
	q.Filter.FlowRuns.State.Type.Any = []string{"FAILED"}
	eq(t, "flows with a FAILED run", readNames(t, s, q), []string{})
}

func testInvalidFilter(t *testing.T, s store.Store) {
	seedFlows(t, s)
	_, err := s.ReadFlows(ctxT(t), store.FlowQuery{Sort: "SIDEWAYS"})
	if !errors.Is(err, filter.ErrInvalid) {
		t.Errorf("unknown sort err = %v, want filter.ErrInvalid", err)
	}
}

func testSort(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	var last store.Flow
	for _, n := range []string{"b", "c", "a"} {
		if !last.Created.IsZero() {
			waitPast(t, last.Created)
		}
		last = mustCreate(t, s, store.FlowCreate{Name: n})
	}
	eq(t, "default sort", readNames(t, s, store.FlowQuery{}), []string{"a", "b", "c"})
	eq(t, "NAME_ASC", readNames(t, s, store.FlowQuery{Sort: "NAME_ASC"}), []string{"a", "b", "c"})
	eq(t, "NAME_DESC", readNames(t, s, store.FlowQuery{Sort: "NAME_DESC"}), []string{"c", "b", "a"})
	eq(t, "CREATED_DESC", readNames(t, s, store.FlowQuery{Sort: "CREATED_DESC"}), []string{"a", "c", "b"})
	b, err := s.ReadFlowByName(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	waitPast(t, last.Created)
	if err := s.UpdateFlow(ctx, b.ID, store.FlowUpdate{Tags: &[]string{"touched"}}); err != nil {
		t.Fatal(err)
	}
	eq(t, "UPDATED_DESC", readNames(t, s, store.FlowQuery{Sort: "UPDATED_DESC"}), []string{"b", "a", "c"})
}

func testLimitOffset(t *testing.T, s store.Store) {
	for i := range 7 {
		mustCreate(t, s, store.FlowCreate{Name: fmt.Sprintf("f%d", i)})
	}
	eq(t, "limit 3", readNames(t, s, store.FlowQuery{Limit: 3}), []string{"f0", "f1", "f2"})
	eq(t, "limit 3 offset 3", readNames(t, s, store.FlowQuery{Limit: 3, Offset: 3}), []string{"f3", "f4", "f5"})
	eq(t, "limit 3 offset 6", readNames(t, s, store.FlowQuery{Limit: 3, Offset: 6}), []string{"f6"})
	eq(t, "offset only", readNames(t, s, store.FlowQuery{Offset: 5}), []string{"f5", "f6"})
	eq(t, "offset past the end", readNames(t, s, store.FlowQuery{Limit: 2, Offset: 70}), []string{})
	eq(t, "desc page", readNames(t, s, store.FlowQuery{Sort: "NAME_DESC", Limit: 2, Offset: 1}), []string{"f5", "f4"})
}

func testCount(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if n, err := s.CountFlows(ctx, filter.FlowFilterSet{}); err != nil || n != 0 {
		t.Fatalf("CountFlows(empty store) = %d, %v", n, err)
	}
	seedFlows(t, s)
	if n, err := s.CountFlows(ctx, filter.FlowFilterSet{}); err != nil || n != 4 {
		t.Errorf("CountFlows(all) = %d, %v; want 4", n, err)
	}
	n, err := s.CountFlows(ctx, filter.FlowFilterSet{Flows: &filter.FlowFilter{Tags: &filter.FlowFilterTags{All: []string{"etl"}}}})
	if err != nil || n != 2 {
		t.Errorf("CountFlows(tag etl) = %d, %v; want 2", n, err)
	}
}

func testUpdateFlow(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	f := mustCreate(t, s, store.FlowCreate{Name: "u", Tags: []string{"old"}, Labels: map[string]any{"k": "v"}})
	waitPast(t, f.Updated)
	if err := s.UpdateFlow(ctx, f.ID, store.FlowUpdate{Tags: &[]string{"new", "newer"}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadFlow(ctx, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "tags after update", got.Tags, []string{"new", "newer"})
	eq(t, "labels after update", got.Labels, f.Labels)
	eq(t, "created after update", got.Created, f.Created)
	if !got.Updated.After(f.Updated) {
		t.Errorf("updated %v did not advance past %v", got.Updated, f.Updated)
	}

	// No fields: nothing changes but updated, as SQLAlchemy's onupdate.
	waitPast(t, got.Updated)
	if err := s.UpdateFlow(ctx, f.ID, store.FlowUpdate{}); err != nil {
		t.Fatal(err)
	}
	again, err := s.ReadFlow(ctx, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "tags after empty update", again.Tags, got.Tags)
	if !again.Updated.After(got.Updated) {
		t.Errorf("updated %v did not advance past %v", again.Updated, got.Updated)
	}

	if err := s.UpdateFlow(ctx, f.ID, store.FlowUpdate{Tags: &[]string{}}); err != nil {
		t.Fatal(err)
	}
	cleared, err := s.ReadFlow(ctx, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "tags cleared", cleared.Tags, []string{})
}

func testDeleteCascades(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	doomed := mustCreate(t, s, store.FlowCreate{Name: "doomed"})
	kept := mustCreate(t, s, store.FlowCreate{Name: "kept"})
	for _, f := range []store.Flow{doomed, kept} {
		runID, stateID, taskID := uuid.New(), uuid.New(), uuid.New()
		Exec(t, s, `INSERT INTO flow_run (id, flow_id, name) VALUES (?, ?, ?)`, runID, f.ID, "run-"+f.Name)
		Exec(t, s, `INSERT INTO flow_run_state (id, flow_run_id, type, name) VALUES (?, ?, 'PENDING', 'Pending')`, stateID, runID)
		Exec(t, s, `UPDATE flow_run SET state_id = ? WHERE id = ?`, stateID, runID)
		Exec(t, s, `INSERT INTO task_run (id, flow_run_id, name, task_key, dynamic_key) VALUES (?, ?, 't', 'k', '0')`, taskID, runID)
		Exec(t, s, `INSERT INTO task_run_state (id, task_run_id, type, name) VALUES (?, ?, 'RUNNING', 'Running')`, uuid.New(), taskID)
		Exec(t, s, `INSERT INTO deployment (id, flow_id, name) VALUES (?, ?, 'dep')`, uuid.New(), f.ID)
	}
	if err := s.DeleteFlow(ctx, doomed.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadFlow(ctx, doomed.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReadFlow after delete err = %v", err)
	}
	for table, want := range map[string]int64{"flow": 1, "flow_run": 1, "flow_run_state": 1, "task_run": 1, "task_run_state": 1, "deployment": 1} {
		if n := QueryInt(t, s, "SELECT count(*) FROM "+table); n != want {
			t.Errorf("%s rows after delete = %d, want %d", table, n, want)
		}
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM flow_run WHERE flow_id = ?", kept.ID); n != 1 {
		t.Errorf("the kept flow lost its run")
	}
	if err := s.DeleteFlow(ctx, doomed.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteFlow err = %v", err)
	}
}

func testBulkDelete(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	fs := seedFlows(t, s)
	Exec(t, s, `INSERT INTO deployment (id, flow_id, name) VALUES (?, ?, 'dep')`, uuid.New(), fs["alpha-etl"].ID)

	none, err := s.BulkDeleteFlows(ctx, filter.FlowFilterSet{Flows: &filter.FlowFilter{Name: &filter.FlowFilterName{Any: []string{"nope"}}}}, 50)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "bulk delete of nothing", none, []uuid.UUID{})

	// Limit applies after NAME_ASC ordering, as Prefect's read_flows default.
	etl := filter.FlowFilterSet{Flows: &filter.FlowFilter{Tags: &filter.FlowFilterTags{All: []string{"etl"}}}}
	got, err := s.BulkDeleteFlows(ctx, etl, 1)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "bulk delete limit 1", got, []uuid.UUID{fs["alpha-etl"].ID})
	if n := QueryInt(t, s, "SELECT count(*) FROM deployment"); n != 0 {
		t.Errorf("deployments of bulk-deleted flow remain: %d", n)
	}

	got, err = s.BulkDeleteFlows(ctx, filter.FlowFilterSet{}, 50)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "bulk delete all", got, []uuid.UUID{fs["beta-ETL"].ID, fs["delta_50%"].ID, fs["gamma"].ID})
	if n, _ := s.CountFlows(ctx, filter.FlowFilterSet{}); n != 0 {
		t.Errorf("flows left after bulk delete: %d", n)
	}
}

// testHostileText checks that text a database cannot store is refused as
// ErrInvalid (a 422), never an unclassified error (a 500), and that
// quoting characters are stored verbatim.
func testHostileText(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for _, name := range []string{"nul\x00inside", "bad-utf8-\xff"} {
		f, _, err := s.CreateFlow(ctx, store.FlowCreate{Name: name, Tags: []string{name}})
		if err != nil {
			if !errors.Is(err, store.ErrInvalid) {
				t.Errorf("CreateFlow(%q) err = %v, want nil or ErrInvalid", name, err)
			}
			continue
		}
		if _, err := s.ReadFlow(ctx, f.ID); err != nil {
			t.Errorf("ReadFlow(%q) after create: %v", name, err)
		}
	}
	for _, name := range []string{`it's`, `"quoted"`, `back\slash`, "new\nline", "emoji 🚀", "'; DROP TABLE flow; --"} {
		f := mustCreate(t, s, store.FlowCreate{Name: name, Tags: []string{name}})
		got, err := s.ReadFlowByName(ctx, name)
		if err != nil {
			t.Fatalf("ReadFlowByName(%q): %v", name, err)
		}
		eq(t, "hostile round trip", got, f)
	}
	if _, err := s.ReadFlowByName(ctx, "nul\x00absent"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReadFlowByName with NUL err = %v, want ErrNotFound", err)
	}
}

func testConcurrentCreate(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const n = 20
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ids     = map[uuid.UUID]int{}
		created int
		errs    []error
	)
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			f, c, err := s.CreateFlow(ctx, store.FlowCreate{Name: "contended"})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			ids[f.ID]++
			if c {
				created++
			}
		})
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d CreateFlow calls failed, first: %v", len(errs), n, errs[0])
	}
	if created != 1 || len(ids) != 1 {
		t.Errorf("created=%d distinct ids=%d, want exactly one flow created", created, len(ids))
	}
}
