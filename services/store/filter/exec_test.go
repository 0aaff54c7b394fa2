package filter

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	_ "github.com/mattn/go-sqlite3"
)

// engine runs a query on one database and returns the ids it selects, as
// lowercase strings in result order.
type engine struct {
	d     Dialect
	exec  func(t *testing.T, q string, args ...any)
	query func(t *testing.T, q string, args ...any) []string
}

func openSQLite(t *testing.T) *engine {
	t.Helper()
	db, err := sql.Open("sqlite3", filepath.Join(t.TempDir(), "filter.db")+"?_foreign_keys=on")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return &engine{
		d: SQLite,
		exec: func(t *testing.T, q string, args ...any) {
			t.Helper()
			if _, err := db.Exec(q, args...); err != nil {
				t.Fatalf("sqlite exec %q: %v", q, err)
			}
		},
		query: func(t *testing.T, q string, args ...any) []string {
			t.Helper()
			rows, err := db.Query(q, args...)
			if err != nil {
				t.Fatalf("sqlite query %q %v: %v", q, args, err)
			}
			defer rows.Close()
			var ids []string
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			return ids
		},
	}
}

func postgresDSN() string {
	if dsn := os.Getenv("PREFECT_TEST_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return "postgres://postgres:postgres@127.0.0.1:5432/prefect_test?sslmode=disable"
}

// openPostgres connects to a fresh schema of its own, dropped at cleanup.
// Without a reachable server the test is skipped, unless CI=true.
func openPostgres(t *testing.T) *engine {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, postgresDSN())
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("postgres unreachable: %v", err)
		}
		t.Skipf("postgres unreachable: %v", err)
	}
	schema := "filter_test_" + strings.ReplaceAll(uuid.NewString(), "-", "")
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		admin.Close(context.Background())
	})
	cfg, err := pgx.ParseConfig(postgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["search_path"] = schema
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return &engine{
		d: Postgres,
		exec: func(t *testing.T, q string, args ...any) {
			t.Helper()
			if _, err := conn.Exec(ctx, q, args...); err != nil {
				t.Fatalf("postgres exec %q: %v", q, err)
			}
		},
		query: func(t *testing.T, q string, args ...any) []string {
			t.Helper()
			rows, err := conn.Query(ctx, q, args...)
			if err != nil {
				t.Fatalf("postgres query %q %v: %v", q, args, err)
			}
			defer rows.Close()
			var ids []string
			for rows.Next() {
				var id uuid.UUID
				if err := rows.Scan(&id); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id.String())
			}
			if err := rows.Err(); err != nil {
				t.Fatalf("postgres query %q %v: %v", q, args, err)
			}
			return ids
		},
	}
}

// ---- fixture data ----

// fixture names every row; ids are derived from the names so expectations
// read as names.
type fixture struct{ byID map[string]string }

func fid(name string) uuid.UUID { return uuid.NewSHA1(uuid.NameSpaceOID, []byte(name)) }

func (f *fixture) names(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		n, ok := f.byID[id]
		if !ok {
			n = "?" + id
		}
		out[i] = n
	}
	return out
}

var (
	t0 = time.Date(2024, 1, 1, 10, 0, 0, 0, time.UTC)
	t1 = t0.Add(time.Hour)
	t2 = t0.Add(2 * time.Hour)
	t3 = t0.Add(3 * time.Hour)
)

// jsonDoc is a JSON column value: jsonb text for PostgreSQL, TEXT for SQLite.
type jsonDoc string

// dbValue converts a Go value to what the engine's columns hold.
func dbValue(d Dialect, v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case uuid.UUID:
		if d == SQLite {
			return x.String()
		}
		return x
	case time.Time:
		if d == SQLite {
			return SQLiteTime(x)
		}
		return x
	case jsonDoc:
		return string(x)
	}
	return v
}

func insert(t *testing.T, e *engine, table string, cols []string, vals ...any) {
	t.Helper()
	b := NewBuilder(e.d)
	ph := make([]string, len(vals))
	for i, v := range vals {
		ph[i] = b.Bind(dbValue(e.d, v))
	}
	e.exec(t, "INSERT INTO "+table+" ("+strings.Join(cols, ", ")+") VALUES ("+strings.Join(ph, ", ")+")", b.Args()...)
}

func seed(t *testing.T, e *engine) *fixture {
	t.Helper()
	f := &fixture{byID: map[string]string{}}
	id := func(name string) uuid.UUID {
		u := fid(name)
		f.byID[u.String()] = name
		return u
	}
	none := any(nil)

	wp := []string{"id", "name", "type"}
	insert(t, e, "work_pool", wp, id("pool-process"), "pool-process", "process")
	insert(t, e, "work_pool", wp, id("pool-k8s"), "pool-k8s", "kubernetes")
	wq := []string{"id", "name", "work_pool_id", "priority"}
	insert(t, e, "work_queue", wq, id("wq-default"), "default", id("pool-process"), 1)
	insert(t, e, "work_queue", wq, id("wq-Critical"), "Critical", id("pool-k8s"), 1)

	fl := []string{"id", "created", "updated", "name", "tags"}
	insert(t, e, "flow", fl, id("f-alpha"), t0, t2, "Alpha-flow", jsonDoc(`["a","b"]`))
	insert(t, e, "flow", fl, id("f-beta"), t1, t1, "beta_flow", jsonDoc(`[]`))
	insert(t, e, "flow", fl, id("f-gamma"), t2, t0, "gamma%", jsonDoc(`["b"]`))

	dp := []string{"id", "created", "updated", "name", "flow_id", "paused", "tags", "work_queue_name", "work_queue_id"}
	insert(t, e, "deployment", dp, id("d-one"), t0, t1, "dep-one", id("f-alpha"), false, jsonDoc(`["prod"]`), "default", id("wq-default"))
	insert(t, e, "deployment", dp, id("d-two"), t1, t0, "other", id("f-beta"), true, jsonDoc(`[]`), "Critical", id("wq-Critical"))

	fr := []string{"id", "created", "updated", "name", "flow_id", "deployment_id", "work_queue_id", "work_queue_name",
		"state_type", "state_name", "flow_version", "start_time", "end_time", "expected_start_time",
		"next_scheduled_start_time", "parent_task_run_id", "idempotency_key", "created_by", "tags"}
	creator := jsonDoc(fmt.Sprintf(`{"id": %q, "type": "DEPLOYMENT", "display_value": "x"}`, fid("d-one")))
	insert(t, e, "flow_run", fr, id("r-one"), t0, t0, "run-one", id("f-alpha"), id("d-one"), id("wq-default"), "default",
		"RUNNING", "Running", "1.0", t0, none, t0, none, none, "k1", creator, jsonDoc(`["x","y"]`))
	// r-two is a subflow of r-one (through task run tr-a), not started yet.
	tr := []string{"id", "created", "updated", "task_key", "dynamic_key", "name", "flow_run_id", "tags", "state_type", "state_name",
		"state_timestamp", "start_time", "end_time", "expected_start_time", "next_scheduled_start_time", "total_run_time"}
	insert(t, e, "task_run", tr, id("tr-a"), t0, t0, "k", "a", "task-a", id("r-one"), jsonDoc(`["t1"]`), "COMPLETED", "Completed", t1, t0, t1, t0, none, 30.0)
	insert(t, e, "flow_run", fr, id("r-two"), t1, t1, "run-two", id("f-alpha"), none, none, none,
		"COMPLETED", "Completed", "2.0", none, t2, t1, none, id("tr-a"), none, jsonDoc(`{"id": null, "type": "AUTOMATION"}`), jsonDoc(`["y"]`))
	insert(t, e, "flow_run", fr, id("r-three"), t2, t2, "Other_run", id("f-beta"), id("d-two"), id("wq-Critical"), "Critical",
		"SCHEDULED", "Late", none, none, none, t3, t3, none, "k3", none, jsonDoc(`[]`))

	insert(t, e, "task_run", tr, id("tr-b"), t1, t1, "k", "b", "task-b", id("r-one"), jsonDoc(`[]`), "FAILED", "Failed", t2, t1, t2, t1, none, 60.0)
	// tr-bg has been RUNNING for an hour with nothing in total_run_time yet:
	// Prefect's estimated run time counts that hour.
	insert(t, e, "task_run", tr, id("tr-bg"), t2, t2, "k", "bg", "background", none, jsonDoc(`["t1","t2"]`), "RUNNING", "Running", time.Now().Add(-time.Hour), none, none, t2, none, 0.0)

	lg := []string{"id", "created", "updated", "name", "level", "flow_run_id", "task_run_id", "message", "timestamp"}
	insert(t, e, "log", lg, id("l-err"), t0, t0, "prefect.flow_runs", 40, id("r-one"), none, "Connection TIMEOUT error", t0)
	insert(t, e, "log", lg, id("l-ok"), t1, t1, "prefect.task_runs", 20, id("r-one"), id("tr-a"), `all good 100% "done"`, t1)
	insert(t, e, "log", lg, id("l-dbg"), t2, t2, "prefect.flow_runs", 10, id("r-two"), none, "debug stuff", t2)
	return f
}

// ---- the cases ----

type execCase struct {
	name  string
	table string // flow, flow_run, task_run, deployment, log, work_pool, work_queue
	body  string // the endpoint body (or the bare filter for log/work_pool/work_queue)
	sort  string
	want  []string // ids by name; sorted unless sort is set
}

var execCases = []execCase{
	// flows
	{"flow all", "flow", `{}`, "", []string{"f-alpha", "f-beta", "f-gamma"}},
	{"flow id any", "flow", `{"flows":{"id":{"any_":["` + fid("f-beta").String() + `"]}}}`, "", []string{"f-beta"}},
	{"flow id any empty", "flow", `{"flows":{"id":{"any_":[]}}}`, "", nil},
	{"flow id not_any", "flow", `{"flows":{"id":{"not_any_":["` + fid("f-beta").String() + `"]}}}`, "", []string{"f-alpha", "f-gamma"}},
	{"flow id not_any empty is no criterion", "flow", `{"flows":{"id":{"not_any_":[]}}}`, "", []string{"f-alpha", "f-beta", "f-gamma"}},
	{"flow name any", "flow", `{"flows":{"name":{"any_":["beta_flow","nope"]}}}`, "", []string{"f-beta"}},
	{"flow name like is case-insensitive", "flow", `{"flows":{"name":{"like_":"ALPHA"}}}`, "", []string{"f-alpha"}},
	{"flow name like escapes underscore", "flow", `{"flows":{"name":{"like_":"a_f"}}}`, "", []string{"f-beta"}},
	{"flow name like escapes percent", "flow", `{"flows":{"name":{"like_":"a%"}}}`, "", []string{"f-gamma"}},
	{"flow tags all", "flow", `{"flows":{"tags":{"all_":["b"]}}}`, "", []string{"f-alpha", "f-gamma"}},
	{"flow tags all two", "flow", `{"flows":{"tags":{"all_":["a","b"]}}}`, "", []string{"f-alpha"}},
	{"flow tags is_null", "flow", `{"flows":{"tags":{"is_null_":true}}}`, "", []string{"f-beta"}},
	{"flow tags not null", "flow", `{"flows":{"tags":{"is_null_":false}}}`, "", []string{"f-alpha", "f-gamma"}},
	{"flow deployment is_null", "flow", `{"flows":{"deployment":{"is_null_":true}}}`, "", []string{"f-gamma"}},
	{"flow deployment not null", "flow", `{"flows":{"deployment":{"is_null_":false}}}`, "", []string{"f-alpha", "f-beta"}},
	{"flow or_", "flow", `{"flows":{"operator":"or_","name":{"any_":["gamma%"]},"tags":{"all_":["a"]}}}`, "", []string{"f-alpha", "f-gamma"}},
	{"flow or_ with empty sub-filter is true", "flow", `{"flows":{"operator":"or_","name":{},"tags":{"all_":["a"]}}}`, "", []string{"f-alpha", "f-beta", "f-gamma"}},
	{"flow by flow runs", "flow", `{"flow_runs":{"state":{"type":{"any_":["SCHEDULED"]}}}}`, "", []string{"f-beta"}},
	{"flow by task runs", "flow", `{"task_runs":{"name":{"any_":["task-b"]}}}`, "", []string{"f-alpha"}},
	{"flow by deployments", "flow", `{"deployments":{"paused":{"eq_":true}}}`, "", []string{"f-beta"}},
	{"flow by work pools", "flow", `{"work_pools":{"type":{"any_":["process"]}}}`, "", []string{"f-alpha"}},
	{"flow sort name asc", "flow", `{}`, "NAME_ASC", []string{"f-alpha", "f-beta", "f-gamma"}},
	{"flow sort name desc", "flow", `{}`, "NAME_DESC", []string{"f-gamma", "f-beta", "f-alpha"}},
	{"flow sort created desc", "flow", `{}`, "CREATED_DESC", []string{"f-gamma", "f-beta", "f-alpha"}},
	{"flow sort updated desc", "flow", `{}`, "UPDATED_DESC", []string{"f-alpha", "f-beta", "f-gamma"}},

	// flow runs
	{"run name like", "flow_run", `{"flow_runs":{"name":{"like_":"RUN"}}}`, "", []string{"r-one", "r-three", "r-two"}},
	{"run name any", "flow_run", `{"flow_runs":{"name":{"any_":["run-two"]}}}`, "", []string{"r-two"}},
	{"run tags all", "flow_run", `{"flow_runs":{"tags":{"all_":["x","y"]}}}`, "", []string{"r-one"}},
	{"run tags any", "flow_run", `{"flow_runs":{"tags":{"any_":["y","zzz"]}}}`, "", []string{"r-one", "r-two"}},
	{"run tags any empty", "flow_run", `{"flow_runs":{"tags":{"any_":[]}}}`, "", nil},
	{"run tags is_null", "flow_run", `{"flow_runs":{"tags":{"is_null_":true}}}`, "", []string{"r-three"}},
	{"run tags or_", "flow_run", `{"flow_runs":{"tags":{"operator":"or_","all_":["x"],"is_null_":true}}}`, "", []string{"r-one", "r-three"}},
	{"run deployment_id any", "flow_run", `{"flow_runs":{"deployment_id":{"any_":["` + fid("d-two").String() + `"]}}}`, "", []string{"r-three"}},
	{"run deployment_id is_null", "flow_run", `{"flow_runs":{"deployment_id":{"is_null_":true}}}`, "", []string{"r-two"}},
	{"run work_queue_name any", "flow_run", `{"flow_runs":{"work_queue_name":{"any_":["default"]}}}`, "", []string{"r-one"}},
	{"run work_queue_name is_null", "flow_run", `{"flow_runs":{"work_queue_name":{"is_null_":false}}}`, "", []string{"r-one", "r-three"}},
	{"run state type any", "flow_run", `{"flow_runs":{"state":{"type":{"any_":["RUNNING","COMPLETED"]}}}}`, "", []string{"r-one", "r-two"}},
	{"run state type not_any", "flow_run", `{"flow_runs":{"state":{"type":{"not_any_":["RUNNING"]}}}}`, "", []string{"r-three", "r-two"}},
	{"run state name any", "flow_run", `{"flow_runs":{"state":{"name":{"any_":["Late"]}}}}`, "", []string{"r-three"}},
	{"run state name not_any", "flow_run", `{"flow_runs":{"state":{"name":{"not_any_":["Late"]}}}}`, "", []string{"r-one", "r-two"}},
	{"run state or_ drops empty sub-filter", "flow_run", `{"flow_runs":{"state":{"operator":"or_","type":{},"name":{"any_":["Late"]}}}}`, "", []string{"r-three"}},
	{"run state or_", "flow_run", `{"flow_runs":{"state":{"operator":"or_","type":{"any_":["RUNNING"]},"name":{"any_":["Late"]}}}}`, "", []string{"r-one", "r-three"}},
	{"run flow_version", "flow_run", `{"flow_runs":{"flow_version":{"any_":["2.0"]}}}`, "", []string{"r-two"}},
	{"run start_time before falls back to expected", "flow_run", `{"flow_runs":{"start_time":{"before_":"` + t1.Format(time.RFC3339) + `"}}}`, "", []string{"r-one", "r-two"}},
	{"run start_time after", "flow_run", `{"flow_runs":{"start_time":{"after_":"2024-01-01 11:00:00"}}}`, "", []string{"r-three", "r-two"}},
	{"run start_time is_null", "flow_run", `{"flow_runs":{"start_time":{"is_null_":true}}}`, "", []string{"r-three", "r-two"}},
	{"run end_time before", "flow_run", `{"flow_runs":{"end_time":{"before_":"2024-01-01T12:00:00+00:00"}}}`, "", []string{"r-two"}},
	{"run end_time after excludes null", "flow_run", `{"flow_runs":{"end_time":{"after_":"2000-01-01T00:00:00Z"}}}`, "", []string{"r-two"}},
	{"run end_time is_null", "flow_run", `{"flow_runs":{"end_time":{"is_null_":false}}}`, "", []string{"r-two"}},
	{"run expected_start_time range", "flow_run", `{"flow_runs":{"expected_start_time":{"after_":"2024-01-01T11:00:00Z","before_":"2024-01-01T12:00:00Z"}}}`, "", []string{"r-two"}},
	{"run expected_start_time offset", "flow_run", `{"flow_runs":{"expected_start_time":{"before_":"2024-01-01T12:00:00+02:00"}}}`, "", []string{"r-one"}},
	{"run next_scheduled_start_time", "flow_run", `{"flow_runs":{"next_scheduled_start_time":{"before_":"2024-01-01T13:00:00Z"}}}`, "", []string{"r-three"}},
	{"run parent_flow_run_id", "flow_run", `{"flow_runs":{"parent_flow_run_id":{"any_":["` + fid("r-one").String() + `"]}}}`, "", []string{"r-two"}},
	{"run parent_flow_run_id empty", "flow_run", `{"flow_runs":{"parent_flow_run_id":{"any_":[]}}}`, "", nil},
	{"run parent_task_run_id any", "flow_run", `{"flow_runs":{"parent_task_run_id":{"any_":["` + fid("tr-a").String() + `"]}}}`, "", []string{"r-two"}},
	{"run parent_task_run_id is_null", "flow_run", `{"flow_runs":{"parent_task_run_id":{"is_null_":true}}}`, "", []string{"r-one", "r-three"}},
	{"run idempotency_key any", "flow_run", `{"flow_runs":{"idempotency_key":{"any_":["k1"]}}}`, "", []string{"r-one"}},
	{"run idempotency_key not_any skips null", "flow_run", `{"flow_runs":{"idempotency_key":{"not_any_":["k1"]}}}`, "", []string{"r-three"}},
	{"run created_by id", "flow_run", `{"flow_runs":{"created_by":{"id_":["` + fid("d-one").String() + `"]}}}`, "", []string{"r-one"}},
	{"run created_by type", "flow_run", `{"flow_runs":{"created_by":{"type_":["AUTOMATION"]}}}`, "", []string{"r-two"}},
	{"run created_by is_null", "flow_run", `{"flow_runs":{"created_by":{"is_null_":true}}}`, "", []string{"r-three"}},
	{"run by flows", "flow_run", `{"flows":{"name":{"any_":["beta_flow"]}}}`, "", []string{"r-three"}},
	{"run by task runs", "flow_run", `{"task_runs":{"state":{"type":{"any_":["FAILED"]}}}}`, "", []string{"r-one"}},
	{"run by flows and task runs", "flow_run", `{"flows":{"name":{"any_":["Alpha-flow"]}},"task_runs":{"name":{"like_":"task"}}}`, "", []string{"r-one"}},
	{"run by deployments", "flow_run", `{"deployments":{"name":{"like_":"dep"}}}`, "", []string{"r-one"}},
	{"run by work pools", "flow_run", `{"work_pools":{"name":{"any_":["pool-k8s"]}}}`, "", []string{"r-three"}},
	{"run by work queues", "flow_run", `{"work_pool_queues":{"name":{"startswith_":["crit"]}}}`, "", []string{"r-three"}},
	{"run sort id desc", "flow_run", `{}`, "ID_DESC", sortedByIDDesc("r-one", "r-two", "r-three")},
	{"run sort start time asc", "flow_run", `{}`, "START_TIME_ASC", []string{"r-one", "r-two", "r-three"}},
	{"run sort start time desc", "flow_run", `{}`, "START_TIME_DESC", []string{"r-three", "r-two", "r-one"}},
	{"run sort expected asc", "flow_run", `{}`, "EXPECTED_START_TIME_ASC", []string{"r-one", "r-two", "r-three"}},
	{"run sort expected desc", "flow_run", `{}`, "EXPECTED_START_TIME_DESC", []string{"r-three", "r-two", "r-one"}},
	{"run sort name asc", "flow_run", `{}`, "NAME_ASC", []string{"r-three", "r-one", "r-two"}},
	{"run sort name desc", "flow_run", `{}`, "NAME_DESC", []string{"r-two", "r-one", "r-three"}},
	{"run sort next scheduled (non-null)", "flow_run", `{"flow_runs":{"next_scheduled_start_time":{"after_":"2000-01-01T00:00:00Z"}}}`, "NEXT_SCHEDULED_START_TIME_ASC", []string{"r-three"}},
	{"run sort end time desc (non-null)", "flow_run", `{"flow_runs":{"end_time":{"is_null_":false}}}`, "END_TIME_DESC", []string{"r-two"}},

	// task runs
	{"task all", "task_run", `{}`, "", []string{"tr-a", "tr-b", "tr-bg"}},
	{"task id any", "task_run", `{"task_runs":{"id":{"any_":["` + fid("tr-b").String() + `"]}}}`, "", []string{"tr-b"}},
	{"task name like", "task_run", `{"task_runs":{"name":{"like_":"TASK-"}}}`, "", []string{"tr-a", "tr-b"}},
	{"task tags all", "task_run", `{"task_runs":{"tags":{"all_":["t1"]}}}`, "", []string{"tr-a", "tr-bg"}},
	{"task tags is_null", "task_run", `{"task_runs":{"tags":{"is_null_":true}}}`, "", []string{"tr-b"}},
	{"task state type", "task_run", `{"task_runs":{"state":{"type":{"any_":["FAILED","RUNNING"]}}}}`, "", []string{"tr-b", "tr-bg"}},
	{"task state name", "task_run", `{"task_runs":{"state":{"name":{"any_":["Completed"]}}}}`, "", []string{"tr-a"}},
	{"task state or_ drops empty", "task_run", `{"task_runs":{"state":{"operator":"or_","type":{},"name":{"any_":["Completed"]}}}}`, "", []string{"tr-a"}},
	{"task start_time", "task_run", `{"task_runs":{"start_time":{"after_":"2024-01-01T10:30:00Z"}}}`, "", []string{"tr-b"}},
	{"task start_time is_null", "task_run", `{"task_runs":{"start_time":{"is_null_":true}}}`, "", []string{"tr-bg"}},
	{"task end_time", "task_run", `{"task_runs":{"end_time":{"before_":"2024-01-01T11:00:00Z"}}}`, "", []string{"tr-a"}},
	{"task end_time is_null", "task_run", `{"task_runs":{"end_time":{"is_null_":true}}}`, "", []string{"tr-bg"}},
	{"task expected_start_time", "task_run", `{"task_runs":{"expected_start_time":{"before_":"2024-01-01T11:00:00Z"}}}`, "", []string{"tr-a", "tr-b"}},
	{"task subflow_runs exists", "task_run", `{"task_runs":{"subflow_runs":{"exists_":true}}}`, "", []string{"tr-a"}},
	{"task subflow_runs not exists", "task_run", `{"task_runs":{"subflow_runs":{"exists_":false}}}`, "", []string{"tr-b", "tr-bg"}},
	{"task flow_run_id any", "task_run", `{"task_runs":{"flow_run_id":{"any_":["` + fid("r-one").String() + `"]}}}`, "", []string{"tr-a", "tr-b"}},
	{"task flow_run_id is_null", "task_run", `{"task_runs":{"flow_run_id":{"is_null_":true,"any_":["` + fid("r-one").String() + `"]}}}`, "", []string{"tr-bg"}},
	{"task flow_run_id empty means is_null_ false", "task_run", `{"task_runs":{"flow_run_id":{}}}`, "", []string{"tr-a", "tr-b"}},
	{"task flow_run_id not null", "task_run", `{"task_runs":{"flow_run_id":{"is_null_":false}}}`, "", []string{"tr-a", "tr-b"}},
	{"task by flow run ids (shortcut)", "task_run", `{"flow_runs":{"id":{"any_":["` + fid("r-one").String() + `"]}}}`, "", []string{"tr-a", "tr-b"}},
	{"task by flow run state", "task_run", `{"flow_runs":{"state":{"type":{"any_":["RUNNING"]}}}}`, "", []string{"tr-a", "tr-b"}},
	{"task by flows", "task_run", `{"flows":{"name":{"any_":["Alpha-flow"]}}}`, "", []string{"tr-a", "tr-b"}},
	{"task by deployments", "task_run", `{"deployments":{"tags":{"any_":["prod"]}}}`, "", []string{"tr-a", "tr-b"}},
	{"task by deployments none", "task_run", `{"deployments":{"tags":{"any_":["dev"]}}}`, "", nil},
	{"task sort duration desc", "task_run", `{}`, "DURATION_DESC", []string{"tr-bg", "tr-b", "tr-a"}},
	{"task sort duration asc", "task_run", `{}`, "DURATION_ASC", []string{"tr-a", "tr-b", "tr-bg"}},
	{"task sort name asc", "task_run", `{}`, "NAME_ASC", []string{"tr-bg", "tr-a", "tr-b"}},
	{"task sort name desc", "task_run", `{}`, "NAME_DESC", []string{"tr-b", "tr-a", "tr-bg"}},
	{"task sort expected asc", "task_run", `{}`, "EXPECTED_START_TIME_ASC", []string{"tr-a", "tr-b", "tr-bg"}},
	{"task sort expected desc", "task_run", `{}`, "EXPECTED_START_TIME_DESC", []string{"tr-bg", "tr-b", "tr-a"}},
	{"task sort end time desc (non-null)", "task_run", `{"task_runs":{"end_time":{"is_null_":false}}}`, "END_TIME_DESC", []string{"tr-b", "tr-a"}},
	{"task sort id desc", "task_run", `{}`, "ID_DESC", sortedByIDDesc("tr-a", "tr-b", "tr-bg")},

	// deployments
	{"dep id not_any", "deployment", `{"deployments":{"id":{"not_any_":["` + fid("d-one").String() + `"]}}}`, "", []string{"d-two"}},
	{"dep name like", "deployment", `{"deployments":{"name":{"like_":"OTH"}}}`, "", []string{"d-two"}},
	{"dep flow_or_deployment_name flow side", "deployment", `{"deployments":{"flow_or_deployment_name":{"like_":"alpha"}}}`, "", []string{"d-one"}},
	{"dep flow_or_deployment_name deployment side", "deployment", `{"deployments":{"flow_or_deployment_name":{"like_":"other"}}}`, "", []string{"d-two"}},
	{"dep paused", "deployment", `{"deployments":{"paused":{"eq_":false}}}`, "", []string{"d-one"}},
	{"dep tags any", "deployment", `{"deployments":{"tags":{"any_":["prod"]}}}`, "", []string{"d-one"}},
	{"dep tags all", "deployment", `{"deployments":{"tags":{"all_":["prod"]}}}`, "", []string{"d-one"}},
	{"dep tags is_null", "deployment", `{"deployments":{"tags":{"is_null_":true}}}`, "", []string{"d-two"}},
	{"dep work_queue_name", "deployment", `{"deployments":{"work_queue_name":{"any_":["Critical"]}}}`, "", []string{"d-two"}},
	{"dep concurrency_limit ignored", "deployment", `{"deployments":{"concurrency_limit":{"ge_":5}}}`, "", []string{"d-one", "d-two"}},
	{"dep by flows", "deployment", `{"flows":{"tags":{"all_":["a"]}}}`, "", []string{"d-one"}},
	{"dep by flow runs", "deployment", `{"flow_runs":{"state":{"type":{"any_":["SCHEDULED"]}}}}`, "", []string{"d-two"}},
	{"dep by task runs", "deployment", `{"task_runs":{"state":{"type":{"any_":["FAILED"]}}}}`, "", []string{"d-one"}},
	{"dep by work pools", "deployment", `{"work_pools":{"id":{"any_":["` + fid("pool-k8s").String() + `"]}}}`, "", []string{"d-two"}},
	{"dep by work queues", "deployment", `{"work_pool_queues":{"id":{"any_":["` + fid("wq-default").String() + `"]}}}`, "", []string{"d-one"}},
	{"dep sort name asc", "deployment", `{}`, "NAME_ASC", []string{"d-one", "d-two"}},
	{"dep sort name desc", "deployment", `{}`, "NAME_DESC", []string{"d-two", "d-one"}},
	{"dep sort created desc", "deployment", `{}`, "CREATED_DESC", []string{"d-two", "d-one"}},
	{"dep sort updated desc", "deployment", `{}`, "UPDATED_DESC", []string{"d-one", "d-two"}},

	// logs
	{"log all", "log", `null`, "TIMESTAMP_ASC", []string{"l-err", "l-ok", "l-dbg"}},
	{"log sort desc", "log", `{}`, "TIMESTAMP_DESC", []string{"l-dbg", "l-ok", "l-err"}},
	{"log level", "log", `{"level":{"ge_":20,"le_":40}}`, "", []string{"l-err", "l-ok"}},
	{"log timestamp", "log", `{"timestamp":{"after_":"2024-01-01T11:00:00Z"}}`, "", []string{"l-dbg", "l-ok"}},
	{"log flow_run_id", "log", `{"flow_run_id":{"any_":["` + fid("r-two").String() + `"]}}`, "", []string{"l-dbg"}},
	{"log task_run_id any", "log", `{"task_run_id":{"any_":["` + fid("tr-a").String() + `"]}}`, "", []string{"l-ok"}},
	{"log task_run_id is_null", "log", `{"task_run_id":{"is_null_":true}}`, "", []string{"l-dbg", "l-err"}},
	{"log text include or", "log", `{"text":{"query":"timeout debug"}}`, "", []string{"l-dbg", "l-err"}},
	{"log text matches logger name", "log", `{"text":{"query":"task_runs"}}`, "", []string{"l-ok"}},
	{"log text exclude", "log", `{"text":{"query":"-timeout"}}`, "", []string{"l-dbg", "l-ok"}},
	{"log text required", "log", `{"text":{"query":"+good +100%"}}`, "", []string{"l-ok"}},
	{"log text phrase", "log", `{"text":{"query":"\"connection timeout\""}}`, "", []string{"l-err"}},
	{"log text escaped quote", "log", `{"text":{"query":"\"\\\"done\\\"\""}}`, "", []string{"l-ok"}},
	{"log text blank", "log", `{"text":{"query":"   "}}`, "", []string{"l-dbg", "l-err", "l-ok"}},
	{"log or_ with text", "log", `{"operator":"or_","level":{"ge_":40},"text":{"query":"debug"}}`, "", []string{"l-dbg", "l-err"}},

	// long lists travel as one array parameter
	{"long id list", "flow_run", `{"flow_runs":{"id":{"any_":` + longIDs(fid("r-two")) + `}}}`, "", []string{"r-two"}},
	{"long id exclusion list", "flow_run", `{"flow_runs":{"id":{"not_any_":` + longIDs(fid("r-two")) + `}}}`, "", []string{"r-one", "r-three"}},
	{"long name list", "flow_run", `{"flow_runs":{"name":{"any_":` + longStrings("run-one") + `}}}`, "", []string{"r-one"}},
	{"long tags any", "flow_run", `{"flow_runs":{"tags":{"any_":` + longStrings("x") + `}}}`, "", []string{"r-one"}},
	{"long tags all", "flow_run", `{"flow_runs":{"tags":{"all_":` + longStrings("y", "y") + `}}}`, "", nil},
	{"long tags all with duplicates", "flow_run", `{"flow_runs":{"tags":{"all_":` + repeated("y", longList) + `}}}`, "", []string{"r-one", "r-two"}},
	{"long state type list is de-duplicated", "flow_run", `{"flow_runs":{"state":{"type":{"any_":` + repeated("RUNNING", 500) + `}}}}`, "", []string{"r-one"}},
	{"task runs of many flow runs", "task_run", `{"flow_runs":{"id":{"any_":` + longIDs(fid("r-one")) + `}}}`, "", []string{"tr-a", "tr-b"}},
	{"long log flow_run_id", "log", `{"flow_run_id":{"any_":` + longIDs(fid("r-two")) + `}}`, "", []string{"l-dbg"}},

	// work pools and queues
	{"pool name", "work_pool", `{"name":{"any_":["pool-k8s"]}}`, "", []string{"pool-k8s"}},
	{"pool type or id", "work_pool", `{"operator":"or_","type":{"any_":["process"]},"id":{"any_":["` + fid("pool-k8s").String() + `"]}}`, "", []string{"pool-k8s", "pool-process"}},
	{"queue startswith", "work_queue", `{"name":{"startswith_":["DEF","x"]}}`, "", []string{"wq-default"}},
	{"queue startswith is a prefix", "work_queue", `{"name":{"startswith_":["ritical"]}}`, "", nil},
	{"queue id", "work_queue", `{"id":{"any_":["` + fid("wq-Critical").String() + `"]}}`, "", []string{"wq-Critical"}},
}

// longIDs is a JSON list of 2*longList random ids plus the given ones.
func longIDs(extra ...uuid.UUID) string {
	ids := slices.Clone(extra)
	for range 2 * longList {
		ids = append(ids, uuid.New())
	}
	b, _ := json.Marshal(ids)
	return string(b)
}

// longStrings is a JSON list of 2*longList made-up names plus the given ones.
func longStrings(extra ...string) string {
	out := slices.Clone(extra)
	for i := range 2 * longList {
		out = append(out, fmt.Sprintf("nope-%d", i))
	}
	b, _ := json.Marshal(out)
	return string(b)
}

func repeated(s string, n int) string {
	b, _ := json.Marshal(slices.Repeat([]string{s}, n))
	return string(b)
}

// sortedByIDDesc orders fixture names by their ids, largest first.
func sortedByIDDesc(names ...string) []string {
	out := slices.Clone(names)
	slices.SortFunc(out, func(a, b string) int { return strings.Compare(fid(b).String(), fid(a).String()) })
	return out
}

// buildCase decodes a case body and returns the full SELECT and its args.
func buildCase(t *testing.T, d Dialect, c execCase) (string, []any) {
	t.Helper()
	b := NewBuilder(d)
	var where, order string
	var err error
	dec := func(v any) {
		if err := json.Unmarshal([]byte(c.body), v); err != nil {
			t.Fatalf("decode %s: %v", c.body, err)
		}
	}
	switch c.table {
	case "flow":
		var s FlowFilterSet
		dec(&s)
		where, err = b.FlowWhere(s)
		if err == nil {
			order, err = FlowOrderBy(c.sort)
		}
	case "flow_run":
		var s FlowRunFilterSet
		dec(&s)
		where, err = b.FlowRunWhere(s)
		if err == nil {
			order, err = FlowRunOrderBy(c.sort)
		}
	case "task_run":
		var s TaskRunFilterSet
		dec(&s)
		where, err = b.TaskRunWhere(s)
		if err == nil {
			order, err = b.TaskRunOrderBy(c.sort)
		}
	case "deployment":
		var s DeploymentFilterSet
		dec(&s)
		where, err = b.DeploymentWhere(s)
		if err == nil {
			order, err = DeploymentOrderBy(c.sort)
		}
	case "log":
		var f *LogFilter
		dec(&f)
		where, err = b.LogWhere(f)
		if err == nil {
			order, err = LogOrderBy(c.sort)
		}
	case "work_pool":
		var f *WorkPoolFilter
		dec(&f)
		where, err = b.WorkPoolWhere(f)
		order = "work_pool.id"
	case "work_queue":
		var f *WorkQueueFilter
		dec(&f)
		where, err = b.WorkQueueWhere(f)
		order = "work_queue.id"
	default:
		t.Fatalf("unknown table %q", c.table)
	}
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return "SELECT " + c.table + ".id FROM " + c.table + " WHERE " + where + " ORDER BY " + order, b.Args()
}

func runExecCases(t *testing.T, e *engine) {
	f := seed(t, e)
	for _, c := range execCases {
		t.Run(c.name, func(t *testing.T) {
			q, args := buildCase(t, e.d, c)
			got := f.names(e.query(t, q, args...))
			want := slices.Clone(c.want)
			if c.sort == "" {
				slices.Sort(got)
				slices.Sort(want)
			}
			if !slices.Equal(got, want) {
				t.Errorf("got %v, want %v\nsql: %s\nargs: %v", got, want, q, args)
			}
		})
	}
}

// applyMigrations runs the project's migration files for the engine, in
// name order, so the filters are tested against the real schema.
func applyMigrations(t *testing.T, e *engine) {
	t.Helper()
	dir := "postgres"
	if e.d == SQLite {
		dir = "sqlite"
	}
	files, err := filepath.Glob(filepath.Join("..", "..", "..", "migrations", dir, "*.up.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s migrations found (%v)", dir, err)
	}
	slices.Sort(files)
	for _, f := range files {
		sql, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		e.exec(t, string(sql))
	}
}

func TestExecSQLite(t *testing.T) {
	e := openSQLite(t)
	applyMigrations(t, e)
	runExecCases(t, e)
}

func TestExecPostgres(t *testing.T) {
	e := openPostgres(t)
	applyMigrations(t, e)
	runExecCases(t, e)
}
