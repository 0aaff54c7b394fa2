package filter

import (
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var pgPlaceholder = regexp.MustCompile(`\$(\d+)`)

// checkPlaceholders asserts that the SQL refers to exactly the bound
// arguments: for PostgreSQL each of $1..$n at least once and nothing beyond,
// for SQLite one ? per argument.
func checkPlaceholders(t *testing.T, d Dialect, sql string, args []any) {
	t.Helper()
	if sql == "" {
		t.Fatalf("%v: empty expression", d)
	}
	if d == SQLite {
		if n := strings.Count(sql, "?"); n != len(args) {
			t.Fatalf("sqlite: %d placeholders, %d args\n%s", n, len(args), sql)
		}
		return
	}
	used := make([]bool, len(args)+1)
	for _, m := range pgPlaceholder.FindAllStringSubmatch(sql, -1) {
		n, err := strconv.Atoi(m[1])
		if err != nil || n < 1 || n > len(args) {
			t.Fatalf("postgres: placeholder $%s out of range (%d args)\n%s", m[1], len(args), sql)
		}
		used[n] = true
	}
	for i := 1; i <= len(args); i++ {
		if !used[i] {
			t.Fatalf("postgres: argument $%d unused\n%s", i, sql)
		}
	}
}

// fuzzBuild decodes arbitrary JSON into T; whatever decodes must build on
// both dialects without panicking, and either fail with ErrInvalid or yield
// SQL whose placeholders match its arguments.
func fuzzBuild[T any](t *testing.T, data []byte, where func(*Builder, *T) (string, error)) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return
	}
	for _, d := range []Dialect{Postgres, SQLite} {
		b := NewBuilder(d)
		sql, err := where(b, &v)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v: unexpected error kind: %v", d, err)
			}
			continue
		}
		checkPlaceholders(t, d, sql, b.Args())
	}
}

var fuzzSeeds = []string{
	`{}`,
	`null`,
	`{"flows":{"operator":"or_","id":{"any_":[],"not_any_":["11111111-1111-4111-8111-111111111111"]},"name":{"like_":"a%_"},"tags":{"all_":["a","b"],"is_null_":true},"deployment":{"is_null_":false}}}`,
	`{"flow_runs":{"tags":{"any_":["x"],"all_":["y"]},"state":{"type":{"any_":["RUNNING"]},"name":{"not_any_":["Late"]}},"start_time":{"before_":"2024-01-01T00:00:00Z"},"parent_flow_run_id":{"any_":["11111111-1111-4111-8111-111111111111"]},"created_by":{"id_":[],"type_":["A"]}}}`,
	`{"task_runs":{"subflow_runs":{"exists_":false},"flow_run_id":{"is_null_":false}},"flow_runs":{"id":{"any_":["11111111-1111-4111-8111-111111111111"]}}}`,
	`{"deployments":{"flow_or_deployment_name":{"like_":"x"},"tags":{"any_":[]}},"work_pools":{"name":{"any_":["p"]}},"work_pool_queues":{"name":{"startswith_":["q"]}}}`,
	`{"operator":"or_","level":{"ge_":10},"text":{"query":"a -b +\"c d\""},"task_run_id":{"is_null_":true}}`,
	`{"flows":{"operator":"bad"}}`,
	`{"flow_runs":{"name":{"any_":["\u0000"]}}}`,
	`{"flow_runs":{"state":{"type":{"any_":["COMPLETED","FAILED","COMPLETED"],"not_any_":["RUNNING"]}}},"task_runs":{"state":{"type":{"any_":["RUNNING","PENDING"]},"name":{"any_":["Running"]}}}}`,
	`{"flow_runs":{"state":{"type":{"any_":["COMPLETED","nope"]}}},"task_runs":{"operator":"or_","state":{"type":{"any_":["RUNNING","PENDING"]}}}}`,
}

func addSeeds(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
}

func FuzzFlowFilterDecode(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzBuild(t, data, func(b *Builder, s *FlowFilterSet) (string, error) { return b.FlowWhere(*s) })
	})
}

func FuzzFlowRunFilterDecode(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzBuild(t, data, func(b *Builder, s *FlowRunFilterSet) (string, error) { return b.FlowRunWhere(*s) })
		fuzzBuild(t, data, func(b *Builder, s *FlowRunFilterSet) (string, error) {
			return b.FlowRunPageWhere(*s, flowRunSorts["EXPECTED_START_TIME_DESC"], 200, 10)
		})
	})
}

func FuzzTaskRunFilterDecode(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzBuild(t, data, func(b *Builder, s *TaskRunFilterSet) (string, error) { return b.TaskRunWhere(*s) })
		fuzzBuild(t, data, func(b *Builder, s *TaskRunFilterSet) (string, error) {
			return b.TaskRunPageWhere(*s, taskRunSorts["EXPECTED_START_TIME_DESC"], 200, 10)
		})
	})
}

func FuzzDeploymentFilterDecode(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzBuild(t, data, func(b *Builder, s *DeploymentFilterSet) (string, error) { return b.DeploymentWhere(*s) })
	})
}

func FuzzLogFilterDecode(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzBuild(t, data, func(b *Builder, s *LogFilter) (string, error) { return b.LogWhere(s) })
	})
}

func FuzzWorkFilterDecode(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzBuild(t, data, func(b *Builder, s *WorkPoolFilter) (string, error) { return b.WorkPoolWhere(s) })
		fuzzBuild(t, data, func(b *Builder, s *WorkQueueFilter) (string, error) { return b.WorkQueueWhere(s) })
	})
}
