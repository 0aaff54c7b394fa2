package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
)

// logCases are the conformance cases of store.LogStore.
var logCases = []suiteCase{
	{"Logs/RoundTripAndOrder", testLogsRoundTrip},
	{"Logs/Filters", testLogsFilters},
	{"Logs/LargeBatch", testLogsLargeBatch},
	{"Logs/BadInput", testLogsBadInput},
	{"Logs/FlowRunName", testLogFlowRunName},
}

var logBase = time.Date(2024, 1, 22, 15, 30, 45, 123456000, time.UTC)

func mustCreateLogs(t *testing.T, s store.Store, in []store.LogCreate) []store.Log {
	t.Helper()
	out, err := s.CreateLogs(ctxT(t), in)
	if err != nil {
		t.Fatalf("CreateLogs(%d): %v", len(in), err)
	}
	if len(out) != len(in) {
		t.Fatalf("CreateLogs returned %d logs for %d", len(out), len(in))
	}
	return out
}

func readLogs(t *testing.T, s store.Store, q store.LogQuery) []store.Log {
	t.Helper()
	out, err := s.ReadLogs(ctxT(t), q)
	if err != nil {
		t.Fatalf("ReadLogs(%+v): %v", q, err)
	}
	return out
}

func logMessages(ls []store.Log) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Message
	}
	return out
}

func testLogsRoundTrip(t *testing.T, s store.Store) {
	fr, tr := uuid.New(), uuid.New()
	// Written in reverse time order so that the read order must come from
	// the sort, not from insertion.
	in := make([]store.LogCreate, 100)
	for i := range in {
		n := 99 - i
		in[i] = store.LogCreate{
			Name: "prefect.flow_runs", Level: 20, Message: fmt.Sprintf("line %03d", n),
			Timestamp: logBase.Add(time.Duration(n) * time.Millisecond).Add(789 * time.Nanosecond),
			FlowRunID: &fr,
		}
	}
	in[0].TaskRunID = &tr
	created := mustCreateLogs(t, s, in)
	if created[0].ID == uuid.Nil || created[0].Created.IsZero() || created[0].Message != "line 099" {
		t.Fatalf("created[0] = %+v", created[0])
	}
	got := readLogs(t, s, store.LogQuery{})
	if len(got) != 100 {
		t.Fatalf("read %d logs, want 100", len(got))
	}
	for i, l := range got {
		if want := fmt.Sprintf("line %03d", i); l.Message != want {
			t.Fatalf("TIMESTAMP_ASC[%d] = %q, want %q", i, l.Message, want)
		}
	}
	// The stored row equals what CreateLogs answered (microseconds, UTC).
	last := got[99]
	eq(t, "round trip", last, created[0])
	eq(t, "timestamp", last.Timestamp, logBase.Add(99*time.Millisecond))
	eq(t, "flow run", *got[5].FlowRunID, fr)
	if got[5].TaskRunID != nil {
		t.Errorf("task run id = %v, want nil", got[5].TaskRunID)
	}

	desc := readLogs(t, s, store.LogQuery{Sort: "TIMESTAMP_DESC", Limit: 3, Offset: 1})
	eq(t, "DESC page", logMessages(desc), []string{"line 098", "line 097", "line 096"})
	page := readLogs(t, s, store.LogQuery{Sort: "TIMESTAMP_ASC", Limit: 2, Offset: 98})
	eq(t, "ASC last page", logMessages(page), []string{"line 098", "line 099"})
	eq(t, "offset only", len(readLogs(t, s, store.LogQuery{Offset: 95})), 5)
	if _, err := s.ReadLogs(ctxT(t), store.LogQuery{Sort: "LEVEL_DESC"}); !errors.Is(err, filter.ErrInvalid) {
		t.Errorf("bad sort: err = %v, want filter.ErrInvalid", err)
	}
	if got, err := s.CreateLogs(ctxT(t), nil); err != nil || len(got) != 0 {
		t.Errorf("CreateLogs(nil) = %v, %v", got, err)
	}
}

func testLogsFilters(t *testing.T, s store.Store) {
	fr1, fr2, tr := uuid.New(), uuid.New(), uuid.New()
	mustCreateLogs(t, s, []store.LogCreate{
		{Name: "prefect.flow_runs", Level: 10, Message: "debug detail", Timestamp: logBase, FlowRunID: &fr1},
		{Name: "prefect.task_runs", Level: 20, Message: "Task finished", Timestamp: logBase.Add(time.Second), FlowRunID: &fr1, TaskRunID: &tr},
		{Name: "prefect.flow_runs", Level: 40, Message: "Connection timeout error", Timestamp: logBase.Add(2 * time.Second), FlowRunID: &fr2},
		{Name: "custom", Level: 50, Message: "no run at all", Timestamp: logBase.Add(3 * time.Second)},
	})
	cases := []struct {
		name string
		f    filter.LogFilter
		want []string
	}{
		{"level ge", filter.LogFilter{Level: &filter.LogFilterLevel{Ge: ptr(20)}}, []string{"Task finished", "Connection timeout error", "no run at all"}},
		{"level range", filter.LogFilter{Level: &filter.LogFilterLevel{Ge: ptr(20), Le: ptr(40)}}, []string{"Task finished", "Connection timeout error"}},
		{"flow run", filter.LogFilter{FlowRunId: &filter.LogFilterFlowRunId{Any: []uuid.UUID{fr1}}}, []string{"debug detail", "Task finished"}},
		{"task run null", filter.LogFilter{FlowRunId: &filter.LogFilterFlowRunId{Any: []uuid.UUID{fr1}}, TaskRunId: &filter.LogFilterTaskRunId{IsNull: ptr(true)}}, []string{"debug detail"}},
		{"task run any", filter.LogFilter{TaskRunId: &filter.LogFilterTaskRunId{Any: []uuid.UUID{tr}}}, []string{"Task finished"}},
		{"timestamp", filter.LogFilter{Timestamp: &filter.LogFilterTimestamp{After: &filter.Time{Time: logBase.Add(time.Second)}, Before: &filter.Time{Time: logBase.Add(2 * time.Second)}}}, []string{"Task finished", "Connection timeout error"}},
		{"text", filter.LogFilter{Text: &filter.LogFilterTextSearch{Query: "TIMEOUT"}}, []string{"Connection timeout error"}},
		{"text on name and exclusion", filter.LogFilter{Text: &filter.LogFilterTextSearch{Query: "prefect -debug"}}, []string{"Task finished", "Connection timeout error"}},
		{"empty any", filter.LogFilter{FlowRunId: &filter.LogFilterFlowRunId{Any: []uuid.UUID{}}}, []string{}},
	}
	for _, c := range cases {
		got := logMessages(readLogs(t, s, store.LogQuery{Filter: &c.f}))
		eq(t, c.name, got, c.want)
	}
}

// testLogsLargeBatch writes more rows in one call than one SQLite statement
// can carry, to cover the chunking.
func testLogsLargeBatch(t *testing.T, s store.Store) {
	fr := uuid.New()
	in := make([]store.LogCreate, 5000)
	for i := range in {
		in[i] = store.LogCreate{Name: "n", Level: 20, Message: fmt.Sprint(i), Timestamp: logBase.Add(time.Duration(i) * time.Microsecond), FlowRunID: &fr}
	}
	mustCreateLogs(t, s, in)
	got := readLogs(t, s, store.LogQuery{Filter: &filter.LogFilter{FlowRunId: &filter.LogFilterFlowRunId{Any: []uuid.UUID{fr}}}})
	if len(got) != 5000 || got[4999].Message != "4999" {
		t.Fatalf("read %d logs (last %q)", len(got), got[len(got)-1].Message)
	}
}

func testLogsBadInput(t *testing.T, s store.Store) {
	// NUL is stripped, as Prefect does, rather than failing the batch.
	out := mustCreateLogs(t, s, []store.LogCreate{{Name: "a\x00b", Level: 20, Message: "x\x00y", Timestamp: logBase}})
	eq(t, "sanitized", []string{out[0].Name, out[0].Message}, []string{"ab", "xy"})
	got := readLogs(t, s, store.LogQuery{})
	eq(t, "stored sanitized", logMessages(got), []string{"xy"})

	// A level outside smallint fails the whole batch: nothing half-written.
	_, err := s.CreateLogs(ctxT(t), []store.LogCreate{
		{Name: "ok", Level: 20, Message: "fine", Timestamp: logBase},
		{Name: "bad", Level: 1 << 20, Message: "too loud", Timestamp: logBase},
	})
	if !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("level out of range: err = %v, want ErrInvalid", err)
	}
	eq(t, "after failed batch", len(readLogs(t, s, store.LogQuery{})), 1)
}

func testLogFlowRunName(t *testing.T, s store.Store) {
	if _, err := s.LogFlowRunName(ctxT(t), uuid.New()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing flow run: err = %v, want ErrNotFound", err)
	}
	f := mustCreate(t, s, store.FlowCreate{Name: "logs-flow"})
	id := uuid.New()
	Exec(t, s, "INSERT INTO flow_run (id, flow_id, name) VALUES (?, ?, ?)", id, f.ID, "smart-otter")
	name, err := s.LogFlowRunName(ctxT(t), id)
	if err != nil || name != "smart-otter" {
		t.Fatalf("LogFlowRunName = %q, %v", name, err)
	}
}
