package main

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

// The key sets below are those of events the 3.9.1 client sent for a real
// task run (captured from /events/filter); the server reads them to record
// task runs, so the bench must send the same shape.
func TestTaskRunLifecycleEventsMatchClientShape(t *testing.T) {
	fr := flowRunRef{ID: uuid.NewString(), Name: "brave-teal", FlowID: uuid.NewString(), FlowName: "f"}
	tr := newTaskRunSpec(fr, "bench_task-0", 0, nil)
	frames, err := taskRunLifecycleEvents(tr, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	wantNames := []string{"prefect.task-run.Pending", "prefect.task-run.Running", "prefect.task-run.Completed"}
	var prevID string
	for i, f := range frames {
		var ev map[string]any
		if err := json.Unmarshal(f, &ev); err != nil {
			t.Fatal(err)
		}
		if got := sortedKeys(ev); !slices.Equal(got, []string{"event", "follows", "id", "occurred", "payload", "related", "resource"}) {
			t.Errorf("event keys %v", got)
		}
		if ev["event"] != wantNames[i] {
			t.Errorf("event %d is %v, want %s", i, ev["event"], wantNames[i])
		}
		id, err := uuid.Parse(ev["id"].(string))
		if err != nil || id.Version() != 7 {
			t.Errorf("event id %v is not a uuid7", ev["id"])
		}
		if i == 0 && ev["follows"] != nil || i > 0 && ev["follows"] != prevID {
			t.Errorf("event %d follows %v, want %q", i, ev["follows"], prevID)
		}
		prevID = ev["id"].(string)
		res := ev["resource"].(map[string]any)
		if got := sortedKeys(res); !slices.Equal(got, []string{
			"prefect.orchestration", "prefect.resource.id", "prefect.resource.name", "prefect.run-count",
			"prefect.state-message", "prefect.state-name", "prefect.state-timestamp", "prefect.state-type",
		}) {
			t.Errorf("resource keys %v", got)
		}
		if res["prefect.resource.id"] != "prefect.task-run."+tr.ID {
			t.Errorf("resource id %v", res["prefect.resource.id"])
		}
		related := ev["related"].([]any)
		roles := []string{}
		for _, r := range related {
			roles = append(roles, r.(map[string]any)["prefect.resource.role"].(string))
		}
		if !slices.Equal(roles, []string{"flow-run", "flow"}) ||
			related[0].(map[string]any)["prefect.resource.id"] != "prefect.flow-run."+fr.ID {
			t.Errorf("related %v", related)
		}
		payload := ev["payload"].(map[string]any)
		if got := sortedKeys(payload); !slices.Equal(got, []string{"initial_state", "intended", "task_run", "validated_state"}) {
			t.Errorf("payload keys %v", got)
		}
		if (i == 0) != (payload["initial_state"] == nil) {
			t.Errorf("event %d initial_state %v", i, payload["initial_state"])
		}
		for _, k := range []string{"name", "task_key", "dynamic_key", "empirical_policy", "tags", "labels", "task_inputs", "run_count", "flow_run_run_count", "expected_start_time", "total_run_time"} {
			if _, ok := payload["task_run"].(map[string]any)[k]; !ok {
				t.Errorf("task_run lacks %s", k)
			}
		}
	}
}

func TestCheckRunPage(t *testing.T) {
	s := func(v string) *string { return &v }
	good := []runRow{
		{ID: "a", StateType: "COMPLETED", Tags: []string{"x", "y", "z"}, ExpectedStartTime: s("2026-01-02T00:00:02.000000Z")},
		{ID: "b", StateType: "FAILED", Tags: []string{"x", "y"}, ExpectedStartTime: nil},
		{ID: "c", StateType: "FAILED", Tags: []string{"y", "x"}, ExpectedStartTime: s("2026-01-02T00:00:01.000000Z")},
	}
	types, tags := []string{"COMPLETED", "FAILED"}, []string{"x", "y"}
	if err := checkRunPage(good, types, tags, 3); err != nil {
		t.Fatalf("good page rejected: %v", err)
	}
	cases := map[string]func([]runRow) ([]runRow, int){
		"short":    func(p []runRow) ([]runRow, int) { return p, 4 },
		"state":    func(p []runRow) ([]runRow, int) { p[1].StateType = "RUNNING"; return p, 3 },
		"tag":      func(p []runRow) ([]runRow, int) { p[2].Tags = []string{"x"}; return p, 3 },
		"unsorted": func(p []runRow) ([]runRow, int) { p[0], p[2] = p[2], p[0]; return p, 3 },
	}
	for name, mutate := range cases {
		page, want := mutate(slices.Clone(good))
		if err := checkRunPage(page, types, tags, want); err == nil {
			t.Errorf("%s: bad page accepted", name)
		}
	}
}

func TestEventsInURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:4200/api":    "ws://127.0.0.1:4200/api/events/in",
		"https://prefect.example/api/": "wss://prefect.example/api/events/in",
	} {
		if got := eventsInURL(in); got != want {
			t.Errorf("eventsInURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRunStatsMedian(t *testing.T) {
	got := runStats([]clientRun{{Seconds: 3}, {Seconds: 1}, {Seconds: 2}, {Seconds: 10}})
	if got.median != 2.5 || got.mean != 4 || got.max != 10 {
		t.Errorf("runStats = %+v", got)
	}
	if !strings.Contains(cellErr(strings.Repeat("a|", 60)), "...") {
		t.Error("long error cells are not cut")
	}
}
