package server

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/storetest"
)

type taskRunJSON struct {
	ID              string         `json:"id"`
	Name            string         `json:"name"`
	FlowRunID       *string        `json:"flow_run_id"`
	TaskKey         string         `json:"task_key"`
	DynamicKey      string         `json:"dynamic_key"`
	Tags            []string       `json:"tags"`
	Labels          map[string]any `json:"labels"`
	StateID         *string        `json:"state_id"`
	StateType       *string        `json:"state_type"`
	StateName       *string        `json:"state_name"`
	EmpiricalPolicy map[string]any `json:"empirical_policy"`
	TaskInputs      map[string]any `json:"task_inputs"`
	Created         string         `json:"created"`
	State           *struct {
		ID           string         `json:"id"`
		Type         string         `json:"type"`
		Name         string         `json:"name"`
		StateDetails map[string]any `json:"state_details"`
	} `json:"state"`
}

// trSeedFlowRun writes a flow and a flow run directly: the flow run routes
// are another resource's.
func trSeedFlowRun(t *testing.T, s store.Store) string {
	t.Helper()
	flowID, runID := uuid.New(), uuid.New()
	storetest.Exec(t, s, `INSERT INTO flow (id, name) VALUES (?, ?)`, flowID, "f-"+flowID.String())
	storetest.Exec(t, s, `INSERT INTO flow_run (id, flow_id, name, labels) VALUES (?, ?, 'parent', '{"env": "test"}')`, runID, flowID)
	return runID.String()
}

func trCreate(t *testing.T, c *client, body map[string]any, want int) taskRunJSON {
	t.Helper()
	r := c.do("POST", "/api/task_runs/", body)
	wantStatus(t, r, want)
	var tr taskRunJSON
	r.json(t, &tr)
	return tr
}

func TestTaskRunCreateReadUpdateDelete(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		fr := trSeedFlowRun(t, s)
		body := map[string]any{
			"flow_run_id": fr, "task_key": "tasks.add", "dynamic_key": "0", "name": "add-0",
			"tags": []string{"t"}, "labels": map[string]any{"mine": 1},
			"empirical_policy": map[string]any{"max_retries": 3, "retry_delay_seconds": 2},
			"task_inputs":      map[string]any{"x": []any{map[string]any{"input_type": "parameter", "name": "x"}}},
		}
		tr := trCreate(t, c, body, http.StatusCreated)
		if tr.Name != "add-0" || tr.TaskKey != "tasks.add" || tr.FlowRunID == nil || *tr.FlowRunID != fr {
			t.Errorf("created %+v", tr)
		}
		if tr.State == nil || tr.State.Type != "PENDING" || tr.StateType == nil || *tr.StateType != "PENDING" || *tr.StateID != tr.State.ID {
			t.Fatalf("initial state %+v", tr.State)
		}
		if tr.State.StateDetails["task_run_id"] != tr.ID || tr.State.StateDetails["deferred"] != false {
			t.Errorf("state details %v", tr.State.StateDetails)
		}
		if tr.Labels["env"] != "test" || tr.Labels["prefect.flow-run.id"] != fr || tr.Labels["mine"] != float64(1) {
			t.Errorf("labels %v", tr.Labels)
		}
		// The deprecated policy fields fill the new ones, as Prefect's model.
		if tr.EmpiricalPolicy["retries"] != float64(3) || tr.EmpiricalPolicy["retry_delay"] != float64(2) {
			t.Errorf("empirical policy %v", tr.EmpiricalPolicy)
		}
		if len(tr.TaskInputs["x"].([]any)) != 1 {
			t.Errorf("task inputs %v", tr.TaskInputs)
		}

		// Same natural key: 200 with the existing run.
		again := trCreate(t, c, map[string]any{"flow_run_id": fr, "task_key": "tasks.add", "dynamic_key": "0"}, http.StatusOK)
		if again.ID != tr.ID || again.Name != "add-0" {
			t.Errorf("idempotent create returned %+v", again)
		}

		r := c.do("GET", "/api/task_runs/"+tr.ID, nil)
		wantStatus(t, r, http.StatusOK)
		var got taskRunJSON
		r.json(t, &got)
		if got.ID != tr.ID || got.State == nil || got.State.ID != tr.State.ID {
			t.Errorf("read %+v", got)
		}
		r = c.do("GET", "/api/task_runs/"+uuid.NewString(), nil)
		wantDetail(t, r, http.StatusNotFound, "Task not found")

		wantStatus(t, c.do("PATCH", "/api/task_runs/"+tr.ID, map[string]any{"name": "renamed"}), http.StatusNoContent)
		c.do("GET", "/api/task_runs/"+tr.ID, nil).json(t, &got)
		if got.Name != "renamed" {
			t.Errorf("name after PATCH = %q", got.Name)
		}
		r = c.do("PATCH", "/api/task_runs/"+uuid.NewString(), map[string]any{"name": "x"})
		wantDetail(t, r, http.StatusNotFound, "Task run not found")

		wantStatus(t, c.do("DELETE", "/api/task_runs/"+tr.ID, nil), http.StatusNoContent)
		wantStatus(t, c.do("GET", "/api/task_runs/"+tr.ID, nil), http.StatusNotFound)
		r = c.do("DELETE", "/api/task_runs/"+tr.ID, nil)
		wantDetail(t, r, http.StatusNotFound, "Task not found")
	})
}

func TestTaskRunCreateStatesAndBadInput(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		fr := trSeedFlowRun(t, s)
		// An explicit initial state is forced, whatever the policy.
		tr := trCreate(t, c, map[string]any{"flow_run_id": fr, "task_key": "k", "dynamic_key": "run",
			"state": map[string]any{"type": "RUNNING", "message": "go"}}, http.StatusCreated)
		if tr.State == nil || tr.State.Type != "RUNNING" || tr.State.Name != "Running" {
			t.Errorf("state %+v", tr.State)
		}
		// No flow run and no name: a generated name.
		bg := trCreate(t, c, map[string]any{"task_key": "bg", "dynamic_key": "0"}, http.StatusCreated)
		if bg.Name == "" || bg.FlowRunID != nil {
			t.Errorf("background run %+v", bg)
		}
		// A client-chosen id.
		id := uuid.NewString()
		own := trCreate(t, c, map[string]any{"id": id, "flow_run_id": fr, "task_key": "k", "dynamic_key": "own"}, http.StatusCreated)
		if own.ID != id {
			t.Errorf("id %s, want %s", own.ID, id)
		}

		wantStatus(t, c.do("POST", "/api/task_runs/", map[string]any{"dynamic_key": "0"}), http.StatusUnprocessableEntity)
		wantStatus(t, c.do("POST", "/api/task_runs/", map[string]any{"task_key": "k", "dynamic_key": "0", "state": map[string]any{"type": "BOGUS"}}), http.StatusUnprocessableEntity)
		long := make([]byte, 2001)
		for i := range long {
			long[i] = 'k'
		}
		wantStatus(t, c.do("POST", "/api/task_runs/", map[string]any{"task_key": "k", "dynamic_key": "long", "cache_key": string(long)}), http.StatusUnprocessableEntity)
		// A flow run that does not exist violates the foreign key: 409.
		wantStatus(t, c.do("POST", "/api/task_runs/", map[string]any{"flow_run_id": uuid.NewString(), "task_key": "k", "dynamic_key": "0"}), http.StatusConflict)
		// Like Starlette's uuid path converter, a malformed id matches no route.
		wantStatus(t, c.do("GET", "/api/task_runs/not-a-uuid", nil), http.StatusNotFound)
	})
}

func TestTaskRunFilterCountPaginate(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		fr1, fr2 := trSeedFlowRun(t, s), trSeedFlowRun(t, s)
		for i, name := range []string{"c", "a", "b"} {
			fr := fr1
			if i == 2 {
				fr = fr2
			}
			trCreate(t, c, map[string]any{"flow_run_id": fr, "task_key": "k", "dynamic_key": name, "name": name, "tags": []string{"tag-" + name}}, http.StatusCreated)
		}
		filterNames := func(body map[string]any) []string {
			t.Helper()
			r := c.do("POST", "/api/task_runs/filter", body)
			wantStatus(t, r, http.StatusOK)
			var trs []taskRunJSON
			r.json(t, &trs)
			out := make([]string, len(trs))
			for i, tr := range trs {
				out[i] = tr.Name
			}
			return out
		}
		trEqStrings(t, "NAME_ASC", filterNames(map[string]any{"sort": "NAME_ASC"}), []string{"a", "b", "c"})
		trEqStrings(t, "limit/offset", filterNames(map[string]any{"sort": "NAME_DESC", "limit": 1, "offset": 1}), []string{"b"})
		trEqStrings(t, "flow run filter", filterNames(map[string]any{"sort": "NAME_ASC", "flow_runs": map[string]any{"id": map[string]any{"any_": []string{fr1}}}}), []string{"a", "c"})
		trEqStrings(t, "tags filter", filterNames(map[string]any{"task_runs": map[string]any{"tags": map[string]any{"all_": []string{"tag-b"}}}}), []string{"b"})
		trEqStrings(t, "state filter", filterNames(map[string]any{"sort": "NAME_ASC", "task_runs": map[string]any{"state": map[string]any{"type": map[string]any{"any_": []string{"PENDING"}}}}}), []string{"a", "b", "c"})
		if got := filterNames(map[string]any{}); len(got) != 3 {
			t.Errorf("no body: %v", got)
		}
		wantStatus(t, c.do("POST", "/api/task_runs/filter", map[string]any{"sort": "SIDEWAYS"}), http.StatusUnprocessableEntity)
		wantStatus(t, c.do("POST", "/api/task_runs/filter", map[string]any{"limit": 201}), http.StatusUnprocessableEntity)

		r := c.do("POST", "/api/task_runs/count", map[string]any{"flow_runs": map[string]any{"id": map[string]any{"any_": []string{fr2}}}})
		wantStatus(t, r, http.StatusOK)
		if string(r.body) != "1" {
			t.Errorf("count = %s", r.body)
		}
		r = c.do("POST", "/api/task_runs/paginate", map[string]any{"sort": "NAME_ASC", "limit": 2, "page": 2})
		wantStatus(t, r, http.StatusOK)
		var page struct {
			Results []taskRunJSON `json:"results"`
			Count   int           `json:"count"`
			Limit   int           `json:"limit"`
			Pages   int           `json:"pages"`
			Page    int           `json:"page"`
		}
		r.json(t, &page)
		if page.Count != 3 || page.Pages != 2 || page.Page != 2 || page.Limit != 2 || len(page.Results) != 1 || page.Results[0].Name != "c" {
			t.Errorf("paginate %+v", page)
		}
	})
}

func TestTaskRunHistoryAndStates(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		fr := trSeedFlowRun(t, s)
		tr := trCreate(t, c, map[string]any{"flow_run_id": fr, "task_key": "k", "dynamic_key": "0"}, http.StatusCreated)
		now := time.Now().UTC()
		r := c.do("POST", "/api/task_runs/history", map[string]any{
			"history_start":            now.Add(-time.Hour).Format(time.RFC3339Nano),
			"history_end":              now.Add(time.Hour).Format(time.RFC3339Nano),
			"history_interval_seconds": 3600,
		})
		wantStatus(t, r, http.StatusOK)
		var hist []struct {
			States []struct {
				StateType string `json:"state_type"`
				CountRuns int    `json:"count_runs"`
			} `json:"states"`
		}
		r.json(t, &hist)
		total := 0
		for _, iv := range hist {
			for _, st := range iv.States {
				total += st.CountRuns
			}
		}
		if len(hist) != 2 || total != 1 {
			t.Errorf("history %s", r.body)
		}
		r = c.do("POST", "/api/task_runs/history", map[string]any{
			"history_start": now.Format(time.RFC3339), "history_end": now.Format(time.RFC3339), "history_interval_seconds": 0.5,
		})
		wantStatus(t, r, http.StatusUnprocessableEntity)

		r = c.do("GET", "/api/task_run_states/"+tr.State.ID, nil)
		wantStatus(t, r, http.StatusOK)
		var st struct {
			ID   string `json:"id"`
			Type string `json:"type"`
		}
		r.json(t, &st)
		if st.ID != tr.State.ID || st.Type != "PENDING" {
			t.Errorf("state %s", r.body)
		}
		r = c.do("GET", "/api/task_run_states/"+uuid.NewString(), nil)
		wantDetail(t, r, http.StatusNotFound, "Flow run state not found")

		r = c.do("GET", "/api/task_run_states/?task_run_id="+tr.ID, nil)
		wantStatus(t, r, http.StatusOK)
		var states []struct {
			ID string `json:"id"`
		}
		r.json(t, &states)
		if len(states) != 1 || states[0].ID != tr.State.ID {
			t.Errorf("states %s", r.body)
		}
		r = c.do("GET", "/api/task_run_states/?task_run_id="+uuid.NewString(), nil)
		wantStatus(t, r, http.StatusOK)
		if string(r.body) != "[]" {
			t.Errorf("states of unknown run: %s", r.body)
		}
		wantStatus(t, c.do("GET", "/api/task_run_states/", nil), http.StatusUnprocessableEntity)
	})
}

func trEqStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}
