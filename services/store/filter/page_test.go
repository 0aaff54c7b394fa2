package filter

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// seedPageRows inserts flow runs and task runs whose states, tags and times
// come from small domains, so that sort keys tie and are NULL often.
func seedPageRows(t *testing.T, e *engine) {
	t.Helper()
	rng := rand.New(rand.NewPCG(4, 2))
	states := []string{"COMPLETED", "FAILED", "RUNNING", "SCHEDULED", "PENDING"}
	tagSets := []string{`[]`, `["t1"]`, `["t2"]`, `["t1","t2"]`, `["t1\"x"]`}
	at := func() any {
		if rng.IntN(6) == 0 {
			return nil
		}
		return t0.Add(time.Duration(rng.IntN(40)) * time.Minute)
	}
	e.exec(t, "BEGIN")
	insert(t, e, "flow", []string{"id", "name"}, fid("page-flow"), "page-flow")
	fr := []string{"id", "name", "flow_id", "state_type", "state_name", "tags", "expected_start_time", "start_time",
		"end_time", "next_scheduled_start_time"}
	tr := []string{"id", "task_key", "dynamic_key", "name", "flow_run_id", "state_type", "state_name", "tags",
		"expected_start_time", "start_time", "end_time", "total_run_time"}
	for i := range 150 {
		st := states[rng.IntN(len(states))]
		run := fid(fmt.Sprintf("page-run-%d", i))
		insert(t, e, "flow_run", fr, run, fmt.Sprintf("run-%d", rng.IntN(30)), fid("page-flow"), st, strings.ToLower(st),
			jsonDoc(tagSets[rng.IntN(len(tagSets))]), at(), at(), at(), at())
		for k := range 3 {
			st := states[rng.IntN(len(states))]
			insert(t, e, "task_run", tr, fid(fmt.Sprintf("page-task-%d-%d", i, k)), "k", fmt.Sprint(k),
				fmt.Sprintf("task-%d", rng.IntN(30)), run, st, strings.ToLower(st), jsonDoc(tagSets[rng.IntN(len(tagSets))]),
				at(), at(), at(), float64(rng.IntN(5)))
		}
	}
	e.exec(t, "COMMIT")
}

// pageFilters are filter sets for both run tables; %s is flow_runs or
// task_runs.
var pageFilters = []string{
	`{"%s":{"state":{"type":{"any_":["COMPLETED","FAILED"]}},"tags":{"all_":["t1"]}}}`,
	`{"%s":{"state":{"type":{"any_":["COMPLETED","FAILED","RUNNING","COMPLETED"]}}}}`,
	`{"%s":{"state":{"type":{"any_":["COMPLETED","FAILED","PENDING"]},"name":{"any_":["completed","pending"]}}}}`,
	`{"%s":{"state":{"operator":"or_","type":{"any_":["COMPLETED","FAILED"]},"name":{"any_":["running"]}}}}`,
	`{"%s":{"operator":"or_","state":{"type":{"any_":["COMPLETED","FAILED"]}},"tags":{"all_":["t2"]}}}`,
	`{"%s":{"state":{"type":{"any_":["SCHEDULED","RUNNING"]}},"expected_start_time":{"after_":"2024-01-01T10:10:00Z"}}}`,
	`{"%s":{"state":{"type":{"any_":["FAILED"]}},"tags":{"any_":["t2","t1\"x"]}}}`,
	`{"%s":{"state":{"type":{"any_":[]}}}}`,
	`{"%s":{"tags":{"all_":["t1"]}}}`,
}

// Reading a page through one ordered subquery per state type must select
// exactly the rows, in exactly the order, of the plain statement.
func TestPageWhereMatchesPlainQuery(t *testing.T) {
	for _, e := range []*engine{openSQLite(t), openPostgres(t)} {
		t.Run(e.d.String(), func(t *testing.T) {
			applyMigrations(t, e)
			seedPageRows(t, e)
			for _, table := range []string{"flow_run", "task_run"} {
				sorts := flowRunSorts
				if table == "task_run" {
					sorts = taskRunSorts
				}
				for _, tmpl := range pageFilters {
					body := fmt.Sprintf(tmpl, table+"s")
					for sortName := range sorts {
						for _, lo := range [][2]int{{1, 0}, {7, 0}, {7, 5}, {60, 30}, {500, 0}} {
							plain, plainArgs, _ := pageQuery(t, e.d, table, body, sortName, lo[0], lo[1], false)
							paged, pagedArgs, split := pageQuery(t, e.d, table, body, sortName, lo[0], lo[1], true)
							want := e.query(t, plain, plainArgs...)
							got := e.query(t, paged, pagedArgs...)
							if !slices.Equal(got, want) {
								t.Fatalf("%s %s limit %d offset %d (split %v):\ngot  %v\nwant %v\nsql: %s",
									body, sortName, lo[0], lo[1], split, got, want, paged)
							}
						}
					}
				}
			}
		})
	}
}

// pageQuery builds the id query of one page, with or without the page
// rewrite; split reports whether the rewrite split the filter.
func pageQuery(t *testing.T, d Dialect, table, body, sortName string, limit, offset int, page bool) (string, []any, bool) {
	t.Helper()
	b := NewBuilder(d)
	var where, order string
	var err error
	if table == "flow_run" {
		var s FlowRunFilterSet
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			t.Fatal(err)
		}
		order, _ = FlowRunOrderBy(sortName)
		if page {
			where, err = b.FlowRunPageWhere(s, order, limit, offset)
		} else {
			where, err = b.FlowRunWhere(s)
		}
	} else {
		var s TaskRunFilterSet
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			t.Fatal(err)
		}
		order, _ = b.TaskRunOrderBy(sortName)
		if page {
			where, err = b.TaskRunPageWhere(s, order, limit, offset)
		} else {
			where, err = b.TaskRunWhere(s)
		}
	}
	if err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	q := "SELECT " + table + ".id FROM " + table + " WHERE " + where + " ORDER BY " + order +
		" LIMIT " + b.Bind(int64(limit)) + " OFFSET " + b.Bind(int64(offset))
	checkPlaceholders(t, d, q, b.Args())
	return q, b.Args(), strings.Contains(where, "UNION ALL")
}

// The rewrite applies on SQLite to paged reads whose filter requires one of
// several state types, and nowhere else.
func TestPageWhereSplitsOnlyStateLists(t *testing.T) {
	order := flowRunSorts["EXPECTED_START_TIME_DESC"]
	for _, c := range []struct {
		body          string
		limit, offset int
		d             Dialect
		arms          int
	}{
		{`{"flow_runs":{"state":{"type":{"any_":["COMPLETED","FAILED"]}}}}`, 200, 0, SQLite, 2},
		{`{"flow_runs":{"state":{"type":{"any_":["COMPLETED","FAILED","COMPLETED","RUNNING"]}}}}`, 10, 5, SQLite, 3},
		{`{"flow_runs":{"state":{"type":{"any_":["COMPLETED","FAILED"]}}}}`, 200, 0, Postgres, 0},
		{`{"flow_runs":{"state":{"type":{"any_":["COMPLETED","FAILED"]}}}}`, 0, 0, SQLite, 0},
		{`{"flow_runs":{"state":{"type":{"any_":["COMPLETED","COMPLETED"]}}}}`, 200, 0, SQLite, 0},
		{`{"flow_runs":{"operator":"or_","state":{"type":{"any_":["COMPLETED","FAILED"]}}}}`, 200, 0, SQLite, 0},
		{`{"flow_runs":{"state":{"operator":"or_","type":{"any_":["COMPLETED","FAILED"]}}}}`, 200, 0, SQLite, 0},
		{`{"flow_runs":{"state":{"name":{"any_":["Completed","Failed"]}}}}`, 200, 0, SQLite, 0},
	} {
		var s FlowRunFilterSet
		if err := json.Unmarshal([]byte(c.body), &s); err != nil {
			t.Fatal(err)
		}
		b := NewBuilder(c.d)
		where, err := b.FlowRunPageWhere(s, order, c.limit, c.offset)
		if err != nil {
			t.Fatalf("%s: %v", c.body, err)
		}
		if arms := strings.Count(where, "SELECT page_rowid FROM"); arms != c.arms {
			t.Errorf("%v %s limit %d: %d arms, want %d\n%s", c.d, c.body, c.limit, arms, c.arms, where)
		}
		if c.arms > 0 {
			// Each arm reads limit+offset rows.
			for _, a := range b.Args() {
				if n, ok := a.(int64); ok && n != int64(c.limit+c.offset) {
					t.Errorf("%s: arm limit %d, want %d", c.body, n, c.limit+c.offset)
				}
			}
		}
	}
	// An invalid state type is reported as for the plain filter.
	var s FlowRunFilterSet
	if err := json.Unmarshal([]byte(`{"flow_runs":{"state":{"type":{"any_":["COMPLETED","NOPE"]}}}}`), &s); err != nil {
		t.Fatal(err)
	}
	if _, err := NewBuilder(SQLite).FlowRunPageWhere(s, order, 10, 0); err == nil {
		t.Fatal("unknown state type accepted")
	}
}

// The tags' instr() test only rules rows out: a tag's text occurring inside
// another tag, or a tag that needs escapes, must not change the result.
func TestTagTextPrefilter(t *testing.T) {
	for _, e := range []*engine{openSQLite(t), openPostgres(t)} {
		t.Run(e.d.String(), func(t *testing.T) {
			applyMigrations(t, e)
			fl := []string{"id", "name", "tags"}
			for name, tags := range map[string]string{
				"plain":     `["a"]`,
				"inside":    `["q\"a"]`, // holds the text "a" (quote, a, quote)
				"prefix":    `["ab"]`,
				"escaped":   `["<a>","b\\c","d\"e"]`,
				"two":       `["a","x y"]`,
				"none":      `[]`,
				"htmlAsIs":  `["<a>"]`,
				"quoteOnly": `["\""]`,
			} {
				insert(t, e, "flow", fl, fid("tag-"+name), name, jsonDoc(tags))
			}
			names := func(body string) []string {
				var s FlowFilterSet
				if err := json.Unmarshal([]byte(body), &s); err != nil {
					t.Fatal(err)
				}
				b := NewBuilder(e.d)
				where, err := b.FlowWhere(s)
				if err != nil {
					t.Fatal(err)
				}
				var out []string
				for _, id := range e.query(t, "SELECT flow.id FROM flow WHERE "+where, b.Args()...) {
					for _, n := range []string{"plain", "inside", "prefix", "escaped", "two", "none", "htmlAsIs", "quoteOnly"} {
						if fid("tag-"+n).String() == id {
							out = append(out, n)
						}
					}
				}
				slices.Sort(out)
				return out
			}
			for body, want := range map[string][]string{
				`{"flows":{"tags":{"all_":["a"]}}}`:           {"plain", "two"},
				`{"flows":{"tags":{"all_":["a","x y"]}}}`:     {"two"},
				`{"flows":{"tags":{"all_":["q\"a"]}}}`:        {"inside"},
				`{"flows":{"tags":{"all_":["<a>"]}}}`:         {"escaped", "htmlAsIs"},
				`{"flows":{"tags":{"all_":["b\\c","d\"e"]}}}`: {"escaped"},
				`{"flows":{"tags":{"all_":["\""]}}}`:          {"quoteOnly"},
			} {
				if got := names(body); !slices.Equal(got, want) {
					t.Errorf("%s: got %v, want %v", body, got, want)
				}
			}
			// tags.any_ exists on flow runs and deployments; deployments
			// need no parents beyond a flow.
			dp := []string{"id", "name", "flow_id", "tags"}
			insert(t, e, "deployment", dp, fid("dep-plain"), "p", fid("tag-plain"), jsonDoc(`["a"]`))
			insert(t, e, "deployment", dp, fid("dep-inside"), "i", fid("tag-inside"), jsonDoc(`["q\"a"]`))
			insert(t, e, "deployment", dp, fid("dep-escaped"), "e", fid("tag-escaped"), jsonDoc(`["<a>"]`))
			for body, want := range map[string][]string{
				`{"deployments":{"tags":{"any_":["a","zz"]}}}`:  {fid("dep-plain").String()},
				`{"deployments":{"tags":{"any_":["<a>","a"]}}}`: {fid("dep-escaped").String(), fid("dep-plain").String()},
				`{"deployments":{"tags":{"any_":["q\"a"]}}}`:    {fid("dep-inside").String()},
			} {
				var s DeploymentFilterSet
				if err := json.Unmarshal([]byte(body), &s); err != nil {
					t.Fatal(err)
				}
				b := NewBuilder(e.d)
				where, err := b.DeploymentWhere(s)
				if err != nil {
					t.Fatal(err)
				}
				got := e.query(t, "SELECT deployment.id FROM deployment WHERE "+where+" ORDER BY deployment.id", b.Args()...)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("%s: got %v, want %v", body, got, want)
				}
			}
		})
	}
}

// The plans of sorted pages on SQLite, on an empty database: the statistics
// the migrations pin make them the plans of a large one. Each case names
// what the plan must use and what it must not.
func TestSQLitePagePlans(t *testing.T) {
	db, err := sql.Open("sqlite3", filepath.Join(t.TempDir(), "plans.db")+"?_foreign_keys=on")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	files, _ := filepath.Glob(filepath.Join("..", "..", "..", "migrations", "sqlite", "*.up.sql"))
	slices.Sort(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(b)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	tags := `"tags":{"all_":["bench-prefill","bench-b1"]}`
	for _, c := range []struct {
		name, table, body, sort string
		want, notWant           []string
	}{
		{
			name: "one state, sorted: walk the state's index in order", table: "task_run",
			body: `{"task_runs":{"state":{"type":{"any_":["COMPLETED"]}},` + tags + `}}`, sort: "EXPECTED_START_TIME_DESC",
			want:    []string{"SEARCH task_run USING INDEX ix_task_run__state_type_expected_start_time (state_type=?)"},
			notWant: []string{"USE TEMP B-TREE FOR ORDER BY"},
		},
		{
			name: "two states: one ordered walk each", table: "flow_run",
			body: `{"flow_runs":{"state":{"type":{"any_":["COMPLETED","FAILED"]}},` + tags + `}}`, sort: "EXPECTED_START_TIME_DESC",
			want: []string{
				"SEARCH flow_run USING INTEGER PRIMARY KEY (rowid=?)",
				"SEARCH flow_run USING INDEX ix_flow_run__state_type_expected_start_time (state_type=?)",
			},
		},
		{
			name: "two states by start time", table: "flow_run",
			body: `{"flow_runs":{"state":{"type":{"any_":["RUNNING","PENDING"]}}}}`, sort: "START_TIME_DESC",
			want: []string{"SEARCH flow_run USING INDEX ix_flow_run__state_type_coalesce_start_time (state_type=?)"},
		},
		{
			name: "two task run states", table: "task_run",
			body: `{"task_runs":{"state":{"type":{"any_":["COMPLETED","FAILED"]}}}}`, sort: "EXPECTED_START_TIME_ASC",
			want: []string{"SEARCH task_run USING INDEX ix_task_run__state_type_expected_start_time (state_type=?)"},
		},
		{
			name: "a state and a flow run: the flow run's ten rows, not the state's", table: "task_run",
			body: `{"task_runs":{"state":{"type":{"any_":["COMPLETED"]}},"flow_run_id":{"any_":["11111111-1111-4111-8111-111111111111"]}}}`,
			sort: "EXPECTED_START_TIME_DESC",
			want: []string{"SEARCH task_run USING INDEX uq_task_run__flow_run_id_task_key_dynamic_key (flow_run_id=?)"},
		},
		{
			name: "the task runs of a flow run", table: "task_run",
			body: `{"flow_runs":{"id":{"any_":["11111111-1111-4111-8111-111111111111"]}}}`, sort: "EXPECTED_START_TIME_DESC",
			want: []string{"SEARCH task_run USING INDEX uq_task_run__flow_run_id_task_key_dynamic_key (flow_run_id=?)"},
		},
		{
			name: "tags alone: walk the sort's index", table: "task_run",
			body: `{"task_runs":{` + tags + `}}`, sort: "EXPECTED_START_TIME_DESC",
			want:    []string{"SCAN task_run USING INDEX ix_task_run__expected_start_time_desc"},
			notWant: []string{"USE TEMP B-TREE FOR ORDER BY"},
		},
		{
			name: "a deployment's runs by start time", table: "flow_run",
			body: `{"flow_runs":{"deployment_id":{"any_":["11111111-1111-4111-8111-111111111111"]}}}`, sort: "START_TIME_DESC",
			want: []string{"SEARCH flow_run USING INDEX ix_flow_run__deployment_id (deployment_id=?)"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			q, args, _ := pageQuery(t, SQLite, c.table, c.body, c.sort, 200, 0, true)
			rows, err := db.Query("EXPLAIN QUERY PLAN "+q, args...)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			text := strings.Join(plan, "\n")
			for _, w := range c.want {
				if !strings.Contains(text, w) {
					t.Errorf("plan lacks %q:\n%s", w, text)
				}
			}
			for _, w := range c.notWant {
				if strings.Contains(text, w) {
					t.Errorf("plan has %q:\n%s", w, text)
				}
			}
		})
	}
}

// A filter whose parameters fit once but not once per state type is read
// without the rewrite rather than refused.
func TestPageWhereKeepsParameterBound(t *testing.T) {
	// startswith_ binds one parameter per prefix, however many.
	prefixes := make([]string, maxArgs/2)
	for i := range prefixes {
		prefixes[i] = fmt.Sprint("q", i)
	}
	list, _ := json.Marshal(prefixes)
	body := `{"flow_runs":{"state":{"type":{"any_":["COMPLETED","FAILED","RUNNING"]}}},"work_pool_queues":{"name":{"startswith_":` + string(list) + `}}}`
	var s FlowRunFilterSet
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatal(err)
	}
	b := NewBuilder(SQLite)
	where, err := b.FlowRunPageWhere(s, flowRunSorts["NAME_ASC"], 10, 0)
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	if strings.Contains(where, "UNION ALL") || len(b.Args()) > maxArgs {
		t.Fatalf("split a filter of %d parameters", len(b.Args()))
	}
	// Within the bound, the same filter is split.
	var small FlowRunFilterSet
	if err := json.Unmarshal([]byte(`{"flow_runs":{"state":{"type":{"any_":["COMPLETED","FAILED","RUNNING"]}}},"work_pool_queues":{"name":{"startswith_":["a","b"]}}}`), &small); err != nil {
		t.Fatal(err)
	}
	if where, err := NewBuilder(SQLite).FlowRunPageWhere(small, flowRunSorts["NAME_ASC"], 10, 0); err != nil || strings.Count(where, "UNION ALL") != 2 {
		t.Fatalf("small filter not split in three: %v\n%s", err, where)
	}
}
