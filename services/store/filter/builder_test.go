package filter

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
)

var (
	u1 = uuid.MustParse("11111111-1111-4111-8111-111111111111")
	u2 = uuid.MustParse("22222222-2222-4222-8222-222222222222")
)

type sqlCase struct {
	name       string
	build      func(b *Builder) (string, error)
	pg         string
	pgArgs     []any
	sqlite     string
	sqliteArgs []any
}

func flowSet(body string) func(b *Builder) (string, error) {
	return func(b *Builder) (string, error) {
		var s FlowFilterSet
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			return "", err
		}
		return b.FlowWhere(s)
	}
}

func flowRunSet(body string) func(b *Builder) (string, error) {
	return func(b *Builder) (string, error) {
		var s FlowRunFilterSet
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			return "", err
		}
		return b.FlowRunWhere(s)
	}
}

func taskRunSet(body string) func(b *Builder) (string, error) {
	return func(b *Builder) (string, error) {
		var s TaskRunFilterSet
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			return "", err
		}
		return b.TaskRunWhere(s)
	}
}

func deploymentSet(body string) func(b *Builder) (string, error) {
	return func(b *Builder) (string, error) {
		var s DeploymentFilterSet
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			return "", err
		}
		return b.DeploymentWhere(s)
	}
}

func logFilter(body string) func(b *Builder) (string, error) {
	return func(b *Builder) (string, error) {
		var f *LogFilter
		if err := json.Unmarshal([]byte(body), &f); err != nil {
			return "", err
		}
		return b.LogWhere(f)
	}
}

var ts = time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)

var sqlCases = []sqlCase{
	{
		name: "no criteria", build: flowSet(`{}`),
		pg: "1=1", sqlite: "1=1",
	},
	{
		name: "empty filter object", build: flowSet(`{"flows":{}}`),
		pg: "1=1", sqlite: "1=1",
	},
	{
		name: "id any and not_any", build: flowSet(`{"flows":{"id":{"any_":["` + u1.String() + `"],"not_any_":["` + u2.String() + `"]}}}`),
		pg:     "(flow.id IN ($1) AND NOT (flow.id IN ($2)))",
		pgArgs: []any{u1, u2},
		sqlite: "(flow.id IN (?) AND NOT (flow.id IN (?)))", sqliteArgs: []any{u1.String(), u2.String()},
	},
	{
		name: "empty any_ matches nothing, empty not_any_ is ignored", build: flowSet(`{"flows":{"id":{"any_":[],"not_any_":[]}}}`),
		pg: "1=0", sqlite: "1=0",
	},
	{
		name: "name any and like with escaping", build: flowSet(`{"flows":{"name":{"any_":["a","b"],"like_":"50%_o\\k"}}}`),
		pg:     `(flow.name IN ($1, $2) AND flow.name ILIKE $3 ESCAPE '\')`,
		pgArgs: []any{"a", "b", `%50\%\_o\\k%`},
		sqlite: `(flow.name IN (?, ?) AND flow.name LIKE ? ESCAPE '\')`, sqliteArgs: []any{"a", "b", `%50\%\_o\\k%`},
	},
	{
		name: "empty like_ is no criterion", build: flowSet(`{"flows":{"name":{"like_":""}}}`),
		pg: "1=1", sqlite: "1=1",
	},
	{
		name: "tags all_ and is_null_ with or_", build: flowSet(`{"flows":{"tags":{"operator":"or_","all_":["a","b"],"is_null_":true}}}`),
		pg:         `(flow.tags @> $1::jsonb OR (flow.tags IS NULL OR flow.tags = '[]'::jsonb))`,
		pgArgs:     []any{`["a","b"]`},
		sqlite:     `((instr(flow.tags, ?) > 0 AND instr(flow.tags, ?) > 0 AND EXISTS (SELECT 1 FROM json_each(flow.tags) WHERE json_each.value = ?) AND EXISTS (SELECT 1 FROM json_each(flow.tags) WHERE json_each.value = ?)) OR (flow.tags IS NULL OR json_array_length(flow.tags) = 0))`,
		sqliteArgs: []any{`"a"`, `"b"`, "a", "b"},
	},
	{
		// Tags an encoder may escape get no instr() test: their stored
		// text is not the tag in quotes.
		name:       "tags all_ with tags needing escapes",
		build:      flowSet(`{"flows":{"tags":{"all_":["a\"q", "b\\s", "<c>", "d&", "é", "t\tab", "ok"]}}}`),
		pg:         `flow.tags @> $1::jsonb`,
		pgArgs:     []any{`["a\"q","b\\s","\u003cc\u003e","d\u0026","é","t\tab","ok"]`},
		sqlite:     `(instr(flow.tags, ?) > 0 AND EXISTS (SELECT 1 FROM json_each(flow.tags) WHERE json_each.value = ?) AND EXISTS (SELECT 1 FROM json_each(flow.tags) WHERE json_each.value = ?) AND EXISTS (SELECT 1 FROM json_each(flow.tags) WHERE json_each.value = ?) AND EXISTS (SELECT 1 FROM json_each(flow.tags) WHERE json_each.value = ?) AND EXISTS (SELECT 1 FROM json_each(flow.tags) WHERE json_each.value = ?) AND EXISTS (SELECT 1 FROM json_each(flow.tags) WHERE json_each.value = ?) AND EXISTS (SELECT 1 FROM json_each(flow.tags) WHERE json_each.value = ?))`,
		sqliteArgs: []any{`"ok"`, `a"q`, `b\s`, "<c>", "d&", "é", "t\tab", "ok"},
	},
	{
		name: "tags is_null_ false", build: flowSet(`{"flows":{"tags":{"is_null_":false}}}`),
		pg:     `(flow.tags IS NOT NULL AND flow.tags <> '[]'::jsonb)`,
		sqlite: `json_array_length(flow.tags) > 0`,
	},
	{
		name: "flow deployment is_null_", build: flowSet(`{"flows":{"deployment":{"is_null_":true}}}`),
		pg:     `NOT EXISTS (SELECT 1 FROM deployment WHERE deployment.flow_id = flow.id)`,
		sqlite: `NOT EXISTS (SELECT 1 FROM deployment WHERE deployment.flow_id = flow.id)`,
	},
	{
		name: "or_ keeps an empty sub-filter as TRUE, as Prefect", build: flowSet(`{"flows":{"operator":"or_","id":{},"name":{"any_":["x"]}}}`),
		pg: "(1=1 OR flow.name IN ($1))", pgArgs: []any{"x"},
		sqlite: "(1=1 OR flow.name IN (?))", sqliteArgs: []any{"x"},
	},
	{
		name:       "flows joined to deployments, work pools, flow runs and task runs",
		build:      flowSet(`{"deployments":{"paused":{"eq_":true}},"work_pools":{"name":{"any_":["p"]}},"flow_runs":{"name":{"any_":["r"]}},"task_runs":{"name":{"any_":["t"]}}}`),
		pg:         "(EXISTS (SELECT 1 FROM deployment JOIN work_queue ON work_queue.id = deployment.work_queue_id JOIN work_pool ON work_pool.id = work_queue.work_pool_id WHERE deployment.flow_id = flow.id AND deployment.paused IS TRUE AND work_pool.name IN ($1)) AND EXISTS (SELECT 1 FROM flow_run JOIN task_run ON task_run.flow_run_id = flow_run.id WHERE flow_run.flow_id = flow.id AND flow_run.name IN ($2) AND task_run.name IN ($3)))",
		pgArgs:     []any{"p", "r", "t"},
		sqlite:     "(EXISTS (SELECT 1 FROM deployment JOIN work_queue ON work_queue.id = deployment.work_queue_id JOIN work_pool ON work_pool.id = work_queue.work_pool_id WHERE deployment.flow_id = flow.id AND deployment.paused IS TRUE AND work_pool.name IN (?)) AND EXISTS (SELECT 1 FROM flow_run JOIN task_run ON task_run.flow_run_id = flow_run.id WHERE flow_run.flow_id = flow.id AND flow_run.name IN (?) AND task_run.name IN (?)))",
		sqliteArgs: []any{"p", "r", "t"},
	},
	{
		name:       "flow run tags any_",
		build:      flowRunSet(`{"flow_runs":{"tags":{"any_":["a","b"]}}}`),
		pg:         `flow_run.tags ?| ARRAY[$1, $2]::text[]`,
		pgArgs:     []any{"a", "b"},
		sqlite:     `((instr(flow_run.tags, ?) > 0 OR instr(flow_run.tags, ?) > 0) AND EXISTS (SELECT 1 FROM json_each(flow_run.tags) WHERE json_each.value IN (?, ?)))`,
		sqliteArgs: []any{`"a"`, `"b"`, "a", "b"},
	},
	{
		// One tag without a plain text could be in any row: no instr().
		name:       "flow run tags any_ with a tag needing escapes",
		build:      flowRunSet(`{"flow_runs":{"tags":{"any_":["a","b\\"]}}}`),
		pg:         `flow_run.tags ?| ARRAY[$1, $2]::text[]`,
		pgArgs:     []any{"a", `b\`},
		sqlite:     `EXISTS (SELECT 1 FROM json_each(flow_run.tags) WHERE json_each.value IN (?, ?))`,
		sqliteArgs: []any{"a", `b\`},
	},
	{
		name:       "flow run start_time uses expected_start_time when not started",
		build:      flowRunSet(`{"flow_runs":{"start_time":{"before_":"2024-05-06T09:08:09.123456+02:00","after_":"2024-05-06 07:08:09.123456","is_null_":false}}}`),
		pg:         "(COALESCE(flow_run.start_time, flow_run.expected_start_time) <= $1 AND COALESCE(flow_run.start_time, flow_run.expected_start_time) >= $2 AND flow_run.start_time IS NOT NULL)",
		pgArgs:     []any{ts, ts},
		sqlite:     "(COALESCE(flow_run.start_time, flow_run.expected_start_time) <= ? AND COALESCE(flow_run.start_time, flow_run.expected_start_time) >= ? AND flow_run.start_time IS NOT NULL)",
		sqliteArgs: []any{"2024-05-06T07:08:09.123456Z", "2024-05-06T07:08:09.123456Z"},
	},
	{
		name:   "flow run state drops empty sub-filters",
		build:  flowRunSet(`{"flow_runs":{"state":{"operator":"or_","type":{"not_any_":["FAILED"]},"name":{}}}}`),
		pg:     "NOT (flow_run.state_type IN ($1))",
		pgArgs: []any{"FAILED"},
		sqlite: "NOT (flow_run.state_type IN (?))", sqliteArgs: []any{"FAILED"},
	},
	{
		name:   "flow run parent_flow_run_id",
		build:  flowRunSet(`{"flow_runs":{"parent_flow_run_id":{"any_":["` + u1.String() + `"]}}}`),
		pg:     "EXISTS (SELECT 1 FROM task_run WHERE task_run.id = flow_run.parent_task_run_id AND task_run.flow_run_id IN ($1))",
		pgArgs: []any{u1},
		sqlite: "EXISTS (SELECT 1 FROM task_run WHERE task_run.id = flow_run.parent_task_run_id AND task_run.flow_run_id IN (?))", sqliteArgs: []any{u1.String()},
	},
	{
		name:       "flow run created_by",
		build:      flowRunSet(`{"flow_runs":{"created_by":{"id_":["` + u1.String() + `"],"type_":["DEPLOYMENT"],"is_null_":false}}}`),
		pg:         "(flow_run.created_by->>'id' IN ($1) AND flow_run.created_by->>'type' IN ($2) AND flow_run.created_by IS NOT NULL)",
		pgArgs:     []any{u1.String(), "DEPLOYMENT"},
		sqlite:     "(json_extract(flow_run.created_by, '$.id') IN (?) AND json_extract(flow_run.created_by, '$.type') IN (?) AND flow_run.created_by IS NOT NULL)",
		sqliteArgs: []any{u1.String(), "DEPLOYMENT"},
	},
	{
		name:       "flow runs joined to everything",
		build:      flowRunSet(`{"flows":{"name":{"any_":["f"]}},"task_runs":{"name":{"any_":["t"]}},"deployments":{"name":{"any_":["d"]}},"work_pools":{"name":{"any_":["p"]}},"work_pool_queues":{"name":{"any_":["q"]}}}`),
		pg:         "(EXISTS (SELECT 1 FROM deployment WHERE deployment.id = flow_run.deployment_id AND deployment.name IN ($1)) AND EXISTS (SELECT 1 FROM work_queue JOIN work_pool ON work_pool.id = work_queue.work_pool_id WHERE work_queue.id = flow_run.work_queue_id AND work_pool.name IN ($2)) AND EXISTS (SELECT 1 FROM work_queue WHERE work_queue.id = flow_run.work_queue_id AND work_queue.name IN ($3)) AND EXISTS (SELECT 1 FROM flow WHERE flow.id = flow_run.flow_id AND flow.name IN ($4)) AND EXISTS (SELECT 1 FROM task_run WHERE task_run.flow_run_id = flow_run.id AND task_run.name IN ($5)))",
		pgArgs:     []any{"d", "p", "q", "f", "t"},
		sqlite:     "(EXISTS (SELECT 1 FROM deployment WHERE deployment.id = flow_run.deployment_id AND deployment.name IN (?)) AND EXISTS (SELECT 1 FROM work_queue JOIN work_pool ON work_pool.id = work_queue.work_pool_id WHERE work_queue.id = flow_run.work_queue_id AND work_pool.name IN (?)) AND EXISTS (SELECT 1 FROM work_queue WHERE work_queue.id = flow_run.work_queue_id AND work_queue.name IN (?)) AND EXISTS (SELECT 1 FROM flow WHERE flow.id = flow_run.flow_id AND flow.name IN (?)) AND EXISTS (SELECT 1 FROM task_run WHERE task_run.flow_run_id = flow_run.id AND task_run.name IN (?)))",
		sqliteArgs: []any{"d", "p", "q", "f", "t"},
	},
	{
		name:   "task runs of given flow runs need no subquery",
		build:  taskRunSet(`{"flow_runs":{"id":{"any_":["` + u1.String() + `"]}}}`),
		pg:     "task_run.flow_run_id IN ($1)",
		pgArgs: []any{u1},
		sqlite: "task_run.flow_run_id IN (?)", sqliteArgs: []any{u1.String()},
	},
	{
		name:       "task runs joined through flow_run",
		build:      taskRunSet(`{"task_runs":{"subflow_runs":{"exists_":false}},"flow_runs":{"name":{"any_":["r"]}},"flows":{"name":{"any_":["f"]}},"deployments":{"name":{"any_":["d"]}}}`),
		pg:         "(NOT EXISTS (SELECT 1 FROM flow_run WHERE flow_run.parent_task_run_id = task_run.id) AND EXISTS (SELECT 1 FROM flow_run JOIN flow ON flow.id = flow_run.flow_id JOIN deployment ON deployment.id = flow_run.deployment_id WHERE flow_run.id = task_run.flow_run_id AND flow_run.name IN ($1) AND flow.name IN ($2) AND deployment.name IN ($3)))",
		pgArgs:     []any{"r", "f", "d"},
		sqlite:     "(NOT EXISTS (SELECT 1 FROM flow_run WHERE flow_run.parent_task_run_id = task_run.id) AND EXISTS (SELECT 1 FROM flow_run JOIN flow ON flow.id = flow_run.flow_id JOIN deployment ON deployment.id = flow_run.deployment_id WHERE flow_run.id = task_run.flow_run_id AND flow_run.name IN (?) AND flow.name IN (?) AND deployment.name IN (?)))",
		sqliteArgs: []any{"r", "f", "d"},
	},
	{
		name:   "task run flow_run_id is_null_ wins over any_",
		build:  taskRunSet(`{"task_runs":{"flow_run_id":{"is_null_":true,"any_":["` + u1.String() + `"]}}}`),
		pg:     "task_run.flow_run_id IS NULL",
		sqlite: "task_run.flow_run_id IS NULL",
	},
	{
		name:   "task run flow_run_id is_null_ false with any_ is just any_",
		build:  taskRunSet(`{"task_runs":{"flow_run_id":{"is_null_":false,"any_":["` + u1.String() + `"]}}}`),
		pg:     "task_run.flow_run_id IN ($1)",
		pgArgs: []any{u1},
		sqlite: "task_run.flow_run_id IN (?)", sqliteArgs: []any{u1.String()},
	},
	{
		name:       "deployment flow_or_deployment_name",
		build:      deploymentSet(`{"deployments":{"flow_or_deployment_name":{"like_":"x"},"paused":{"eq_":false}}}`),
		pg:         `((deployment.name ILIKE $1 ESCAPE '\' OR EXISTS (SELECT 1 FROM flow WHERE flow.id = deployment.flow_id AND flow.name ILIKE $2 ESCAPE '\')) AND deployment.paused IS FALSE)`,
		pgArgs:     []any{"%x%", "%x%"},
		sqlite:     `((deployment.name LIKE ? ESCAPE '\' OR EXISTS (SELECT 1 FROM flow WHERE flow.id = deployment.flow_id AND flow.name LIKE ? ESCAPE '\')) AND deployment.paused IS FALSE)`,
		sqliteArgs: []any{"%x%", "%x%"},
	},
	{
		name:       "deployments joined",
		build:      deploymentSet(`{"flows":{"name":{"any_":["f"]}},"flow_runs":{"name":{"any_":["r"]}},"work_pool_queues":{"name":{"startswith_":["a_"]}},"work_pools":{"type":{"any_":["t"]}}}`),
		pg:         `(EXISTS (SELECT 1 FROM flow WHERE flow.id = deployment.flow_id AND flow.name IN ($1)) AND EXISTS (SELECT 1 FROM flow_run WHERE flow_run.deployment_id = deployment.id AND flow_run.name IN ($2)) AND EXISTS (SELECT 1 FROM work_queue JOIN work_pool ON work_pool.id = work_queue.work_pool_id WHERE work_queue.id = deployment.work_queue_id AND work_queue.name ILIKE $3 ESCAPE '\' AND work_pool.type IN ($4)))`,
		pgArgs:     []any{"f", "r", `a\_%`, "t"},
		sqlite:     `(EXISTS (SELECT 1 FROM flow WHERE flow.id = deployment.flow_id AND flow.name IN (?)) AND EXISTS (SELECT 1 FROM flow_run WHERE flow_run.deployment_id = deployment.id AND flow_run.name IN (?)) AND EXISTS (SELECT 1 FROM work_queue JOIN work_pool ON work_pool.id = work_queue.work_pool_id WHERE work_queue.id = deployment.work_queue_id AND work_queue.name LIKE ? ESCAPE '\' AND work_pool.type IN (?)))`,
		sqliteArgs: []any{"f", "r", `a\_%`, "t"},
	},
	{
		name:       "log level, text search terms",
		build:      logFilter(`{"level":{"ge_":20},"text":{"query":"Err -debug +\"must have\""}}`),
		pg:         `(log.level >= $1 AND lower(log.message || ' ' || log.name) LIKE $2 ESCAPE '\' AND NOT (lower(log.message || ' ' || log.name) LIKE $3 ESCAPE '\') AND lower(log.message || ' ' || log.name) LIKE $4 ESCAPE '\')`,
		pgArgs:     []any{int64(20), "%err%", "%debug%", "%must have%"},
		sqlite:     `(log.level >= ? AND lower(log.message || ' ' || log.name) LIKE ? ESCAPE '\' AND NOT (lower(log.message || ' ' || log.name) LIKE ? ESCAPE '\') AND lower(log.message || ' ' || log.name) LIKE ? ESCAPE '\')`,
		sqliteArgs: []any{int64(20), "%err%", "%debug%", "%must have%"},
	},
	{
		name:   "nil log filter",
		build:  logFilter(`null`),
		pg:     "1=1",
		sqlite: "1=1",
	},
}

func TestWhereSQL(t *testing.T) {
	for _, c := range sqlCases {
		t.Run(c.name, func(t *testing.T) {
			for _, d := range []Dialect{Postgres, SQLite} {
				b := NewBuilder(d)
				got, err := c.build(b)
				if err != nil {
					t.Fatalf("%v: %v", d, err)
				}
				want, wantArgs := c.pg, c.pgArgs
				if d == SQLite {
					want, wantArgs = c.sqlite, c.sqliteArgs
				}
				if got != want {
					t.Errorf("%v sql:\n got %s\nwant %s", d, got, want)
				}
				if len(wantArgs) == 0 && len(b.Args()) == 0 {
					continue
				}
				if !reflect.DeepEqual(b.Args(), wantArgs) {
					t.Errorf("%v args:\n got %#v\nwant %#v", d, b.Args(), wantArgs)
				}
			}
		})
	}
}

func TestLongLists(t *testing.T) {
	ids := make([]uuid.UUID, longList)
	names := make([]string, longList)
	for i := range ids {
		ids[i] = uuid.New()
		names[i] = "n"
	}
	s := FlowRunFilterSet{FlowRuns: &FlowRunFilter{
		Id:   &FlowRunFilterId{Any: ids},
		Name: &FlowRunFilterName{Any: names},
		Tags: &FlowRunFilterTags{Any: names},
	}}
	b := NewBuilder(Postgres)
	got, err := b.FlowRunWhere(s)
	if err != nil {
		t.Fatal(err)
	}
	if want := "(flow_run.id = ANY($1::uuid[]) AND flow_run.name = ANY($2::text[]) AND flow_run.tags ?| $3::text[])"; got != want {
		t.Errorf("postgres:\n got %s\nwant %s", got, want)
	}
	if len(b.Args()) != 3 {
		t.Errorf("postgres args: %d", len(b.Args()))
	}
	b = NewBuilder(SQLite)
	got, err = b.FlowRunWhere(s)
	if err != nil {
		t.Fatal(err)
	}
	if want := "(flow_run.id IN (SELECT value FROM json_each(?)) AND flow_run.name IN (SELECT value FROM json_each(?)) AND EXISTS (SELECT 1 FROM json_each(flow_run.tags) WHERE json_each.value IN (SELECT value FROM json_each(?))))"; got != want {
		t.Errorf("sqlite:\n got %s\nwant %s", got, want)
	}
	if len(b.Args()) != 3 {
		t.Errorf("sqlite args: %d", len(b.Args()))
	}
}

func TestTooManyParameters(t *testing.T) {
	prefixes := make([]string, maxArgs+1)
	for i := range prefixes {
		prefixes[i] = "p"
	}
	_, err := NewBuilder(SQLite).WorkQueueWhere(&WorkQueueFilter{Name: &WorkQueueFilterName{StartsWith: prefixes}})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("want ErrInvalid, got %v", err)
	}
}

func TestBindContinuesNumbering(t *testing.T) {
	b := NewBuilder(Postgres)
	w, err := b.FlowWhere(FlowFilterSet{Flows: &FlowFilter{Name: &FlowFilterName{Any: []string{"a"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if w != "flow.name IN ($1)" || b.Bind(10) != "$2" || b.Bind(0) != "$3" {
		t.Fatalf("unexpected numbering: %s %v", w, b.Args())
	}
	if !reflect.DeepEqual(b.Args(), []any{"a", 10, 0}) {
		t.Fatalf("args %v", b.Args())
	}
}

func TestInvalidFilters(t *testing.T) {
	cases := []struct {
		name  string
		d     Dialect
		build func(b *Builder) (string, error)
	}{
		{"bad operator", SQLite, func(b *Builder) (string, error) {
			return b.FlowWhere(FlowFilterSet{Flows: &FlowFilter{Operator: "xor_"}})
		}},
		{"bad nested operator", Postgres, func(b *Builder) (string, error) {
			return b.FlowRunWhere(FlowRunFilterSet{FlowRuns: &FlowRunFilter{Tags: &FlowRunFilterTags{Operator: "nand"}}})
		}},
		{"bad operator on the id shortcut", Postgres, func(b *Builder) (string, error) {
			return b.TaskRunWhere(TaskRunFilterSet{FlowRuns: &FlowRunFilter{Operator: "x", Id: &FlowRunFilterId{Any: []uuid.UUID{u1}}}})
		}},
		{"unknown state type", Postgres, func(b *Builder) (string, error) {
			return b.TaskRunWhere(TaskRunFilterSet{TaskRuns: &TaskRunFilter{State: &TaskRunFilterState{Type: &TaskRunFilterStateType{Any: []string{"DONE"}}}}})
		}},
		{"NUL in a Postgres string", Postgres, func(b *Builder) (string, error) {
			return b.FlowWhere(FlowFilterSet{Flows: &FlowFilter{Name: &FlowFilterName{Any: []string{"a\x00"}}}})
		}},
		{"NUL in a Postgres tag", Postgres, func(b *Builder) (string, error) {
			return b.FlowWhere(FlowFilterSet{Flows: &FlowFilter{Tags: &FlowFilterTags{All: []string{"a\x00"}}}})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.build(NewBuilder(c.d))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("want ErrInvalid, got %v", err)
			}
		})
	}
	// SQLite stores NUL fine, so it is no error there.
	if _, err := NewBuilder(SQLite).FlowWhere(FlowFilterSet{Flows: &FlowFilter{Name: &FlowFilterName{Any: []string{"a\x00"}}}}); err != nil {
		t.Fatal(err)
	}
}

func TestTaskRunOrderByDialect(t *testing.T) {
	for _, d := range []Dialect{Postgres, SQLite} {
		got, err := NewBuilder(d).TaskRunOrderBy("DURATION_DESC")
		if err != nil || got != estimatedRunTime[d]+" DESC, task_run.expected_start_time DESC, task_run.id DESC" {
			t.Errorf("%v: %q %v", d, got, err)
		}
		got, err = NewBuilder(d).TaskRunOrderBy("NAME_ASC")
		if err != nil || got != "task_run.name ASC, task_run.id ASC" {
			t.Errorf("%v: %q %v", d, got, err)
		}
		if _, err := NewBuilder(d).TaskRunOrderBy("nope"); !errors.Is(err, ErrInvalid) {
			t.Errorf("%v: unknown sort accepted: %v", d, err)
		}
	}
}

func TestOrderBy(t *testing.T) {
	enums := map[string]struct {
		fn     func(string) (string, error)
		values []string
		def    string
	}{
		"FlowSort":       {FlowOrderBy, []string{"CREATED_DESC", "UPDATED_DESC", "NAME_ASC", "NAME_DESC"}, "flow.name ASC, flow.id ASC"},
		"FlowRunSort":    {FlowRunOrderBy, []string{"ID_DESC", "START_TIME_ASC", "START_TIME_DESC", "EXPECTED_START_TIME_ASC", "EXPECTED_START_TIME_DESC", "NAME_ASC", "NAME_DESC", "NEXT_SCHEDULED_START_TIME_ASC", "END_TIME_DESC"}, "flow_run.id DESC"},
		"TaskRunSort":    {TaskRunOrderBy, []string{"ID_DESC", "EXPECTED_START_TIME_ASC", "EXPECTED_START_TIME_DESC", "NAME_ASC", "NAME_DESC", "NEXT_SCHEDULED_START_TIME_ASC", "END_TIME_DESC", "DURATION_DESC", "DURATION_ASC"}, "task_run.id DESC"},
		"DeploymentSort": {DeploymentOrderBy, []string{"CREATED_DESC", "UPDATED_DESC", "NAME_ASC", "NAME_DESC"}, "deployment.name ASC, deployment.id ASC"},
		"LogSort":        {LogOrderBy, []string{"TIMESTAMP_ASC", "TIMESTAMP_DESC"}, "log.timestamp ASC, log.id ASC"},
	}
	doc := openAPIEnums(t)
	for name, e := range enums {
		if !reflect.DeepEqual(doc[name], e.values) {
			t.Errorf("%s: document enum %v, tested %v", name, doc[name], e.values)
		}
		for _, v := range e.values {
			if s, err := e.fn(v); err != nil || s == "" {
				t.Errorf("%s %s: %q %v", name, v, s, err)
			}
		}
		if s, err := e.fn(""); err != nil || s != e.def {
			t.Errorf("%s default: %q %v", name, s, err)
		}
		if _, err := e.fn("name_asc"); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: unknown value accepted: %v", name, err)
		}
	}
}
