package server

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/storetest"
)

type frStateJSON struct {
	ID           string         `json:"id"`
	Type         string         `json:"type"`
	Name         string         `json:"name"`
	Timestamp    string         `json:"timestamp"`
	Message      *string        `json:"message"`
	Data         any            `json:"data"`
	StateDetails map[string]any `json:"state_details"`
}

type frRunJSON struct {
	ID                string         `json:"id"`
	Name              string         `json:"name"`
	FlowID            string         `json:"flow_id"`
	StateID           *string        `json:"state_id"`
	StateType         *string        `json:"state_type"`
	StateName         *string        `json:"state_name"`
	State             *frStateJSON   `json:"state"`
	Tags              []string       `json:"tags"`
	Labels            map[string]any `json:"labels"`
	Parameters        map[string]any `json:"parameters"`
	RunCount          int            `json:"run_count"`
	StartTime         *string        `json:"start_time"`
	EndTime           *string        `json:"end_time"`
	ExpectedStartTime *string        `json:"expected_start_time"`
	IdempotencyKey    *string        `json:"idempotency_key"`
	InfrastructurePID *string        `json:"infrastructure_pid"`
	EmpiricalPolicy   map[string]any `json:"empirical_policy"`
	JobVariables      map[string]any `json:"job_variables"`
}

func frCreate(t *testing.T, c *client, body map[string]any, want int) frRunJSON {
	t.Helper()
	r := c.do("POST", "/api/flow_runs/", body)
	wantStatus(t, r, want)
	var out frRunJSON
	r.json(t, &out)
	return out
}

func frFlow(t *testing.T, c *client, name string) string {
	t.Helper()
	return createFlow(t, c, map[string]any{"name": name}).ID
}

func frNames(rs []frRunJSON) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}

func frEq(t *testing.T, what string, got, want any) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

func TestFlowRunCreateReadUpdateDelete(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		flowID := frFlow(t, c, "etl")
		run := frCreate(t, c, map[string]any{"flow_id": flowID, "name": "first", "tags": []string{"a"}, "parameters": map[string]any{"x": 1},
			"labels": map[string]any{"team": "data"}, "empirical_policy": map[string]any{"retries": 2, "retry_delay": 5}}, http.StatusCreated)
		if run.State == nil || run.State.Type != "PENDING" || *run.StateType != "PENDING" || *run.StateName != "Pending" {
			t.Fatalf("default state: %+v", run)
		}
		if run.Labels["prefect.flow.id"] != flowID || run.Labels["team"] != "data" {
			t.Errorf("labels %v", run.Labels)
		}
		frEq(t, "retries", run.EmpiricalPolicy["retries"], 2)

		// Idempotency: the same key answers the existing run with 200.
		key := map[string]any{"flow_id": flowID, "idempotency_key": "once", "state": map[string]any{"type": "SCHEDULED"}}
		a := frCreate(t, c, key, http.StatusCreated)
		if a.State.Type != "SCHEDULED" || a.State.StateDetails["scheduled_time"] == nil {
			t.Errorf("scheduled state %+v", a.State)
		}
		b := frCreate(t, c, key, http.StatusOK)
		if a.ID != b.ID {
			t.Errorf("idempotent create made %s and %s", a.ID, b.ID)
		}

		got := c.do("GET", "/api/flow_runs/"+run.ID, nil)
		wantStatus(t, got, http.StatusOK)
		var read frRunJSON
		got.json(t, &read)
		if read.ID != run.ID || read.State.ID != run.State.ID {
			t.Errorf("read %+v", read)
		}
		wantDetail(t, c.do("GET", "/api/flow_runs/"+uuid.NewString(), nil), http.StatusNotFound, "Flow run not found")

		wantStatus(t, c.do("PATCH", "/api/flow_runs/"+run.ID, map[string]any{"name": "renamed", "infrastructure_pid": "42", "tags": []string{"b"}}), http.StatusNoContent)
		got = c.do("GET", "/api/flow_runs/"+run.ID, nil)
		got.json(t, &read)
		if read.Name != "renamed" || read.InfrastructurePID == nil || *read.InfrastructurePID != "42" || fmt.Sprint(read.Tags) != "[b]" {
			t.Errorf("after patch %+v", read)
		}
		wantDetail(t, c.do("PATCH", "/api/flow_runs/"+uuid.NewString(), map[string]any{"name": "x"}), http.StatusNotFound, "Flow run not found")
		// Job variables need a scheduled run of a deployment.
		wantDetail(t, c.do("PATCH", "/api/flow_runs/"+run.ID, map[string]any{"job_variables": map[string]any{"a": 1}}), http.StatusBadRequest,
			"Job variables for a flow run in state PENDING cannot be updated")

		wantStatus(t, c.do("PATCH", "/api/flow_runs/"+run.ID+"/labels", map[string]any{"env": "prod"}), http.StatusNoContent)
		got = c.do("GET", "/api/flow_runs/"+run.ID, nil)
		got.json(t, &read)
		if read.Labels["env"] != "prod" || read.Labels["team"] != "data" {
			t.Errorf("labels after patch %v", read.Labels)
		}
		r := c.do("PATCH", "/api/flow_runs/"+uuid.NewString()+"/labels", map[string]any{"env": "prod"})
		wantStatus(t, r, http.StatusNotFound)

		wantStatus(t, c.do("DELETE", "/api/flow_runs/"+run.ID, nil), http.StatusNoContent)
		wantDetail(t, c.do("DELETE", "/api/flow_runs/"+run.ID, nil), http.StatusNotFound, "Flow run not found")
	})
}

func TestFlowRunBadInput(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		flowID := frFlow(t, c, "f")
		wantValidation(t, c.do("POST", "/api/flow_runs/", map[string]any{"name": "no flow"}), "body.flow_id", "missing")
		wantValidation(t, c.do("POST", "/api/flow_runs/", map[string]any{"flow_id": "nope"}), "body.flow_id", "uuid_parsing")
		r := c.do("POST", "/api/flow_runs/", map[string]any{"flow_id": flowID, "state": map[string]any{"type": "BOGUS"}})
		wantStatus(t, r, http.StatusUnprocessableEntity)
		// A run of a flow that does not exist violates a foreign key.
		wantStatus(t, c.do("POST", "/api/flow_runs/", map[string]any{"flow_id": uuid.NewString()}), http.StatusConflict)
		wantStatus(t, c.do("POST", "/api/flow_runs/filter", map[string]any{"sort": "SIDEWAYS"}), http.StatusUnprocessableEntity)
		wantStatus(t, c.do("POST", "/api/flow_runs/filter", map[string]any{"limit": -1}), http.StatusUnprocessableEntity)
		wantStatus(t, c.do("POST", "/api/flow_runs/history", map[string]any{"history_start": "2024-01-01T00:00:00Z", "history_end": "2024-01-02T00:00:00Z", "history_interval_seconds": 0.5}), http.StatusUnprocessableEntity)
		wantStatus(t, c.do("GET", "/api/flow_runs/not-a-uuid", nil), http.StatusNotFound)
		// A named work pool that does not exist.
		wantStatus(t, c.do("POST", "/api/flow_runs/", map[string]any{"flow_id": flowID, "work_pool_name": "nope"}), http.StatusNotFound)
	})
}

func TestFlowRunFilterCountPaginate(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		f1, f2 := frFlow(t, c, "one"), frFlow(t, c, "two")
		for i, name := range []string{"b", "a", "c", "d"} {
			fid := f1
			if i%2 == 1 {
				fid = f2
			}
			frCreate(t, c, map[string]any{"flow_id": fid, "name": name, "tags": []string{fmt.Sprint("t", i%2)}}, http.StatusCreated)
		}
		list := func(body map[string]any) []frRunJSON {
			t.Helper()
			r := c.do("POST", "/api/flow_runs/filter", body)
			wantStatus(t, r, http.StatusOK)
			var out []frRunJSON
			r.json(t, &out)
			return out
		}
		frEq(t, "NAME_ASC", frNames(list(map[string]any{"sort": "NAME_ASC"})), []string{"a", "b", "c", "d"})
		frEq(t, "page", frNames(list(map[string]any{"sort": "NAME_DESC", "limit": 2, "offset": 1})), []string{"c", "b"})
		frEq(t, "by flow", frNames(list(map[string]any{"sort": "NAME_ASC", "flows": map[string]any{"name": map[string]any{"any_": []string{"two"}}}})), []string{"a", "d"})
		frEq(t, "by tag", frNames(list(map[string]any{"sort": "NAME_ASC", "flow_runs": map[string]any{"tags": map[string]any{"all_": []string{"t0"}}}})), []string{"b", "c"})
		frEq(t, "by state", frNames(list(map[string]any{"sort": "NAME_ASC", "flow_runs": map[string]any{"state": map[string]any{"type": map[string]any{"any_": []string{"PENDING"}}}}})), []string{"a", "b", "c", "d"})
		r := c.do("POST", "/api/flow_runs/count", map[string]any{"flow_runs": map[string]any{"name": map[string]any{"like_": "a"}}})
		wantStatus(t, r, http.StatusOK)
		frEq(t, "count", string(r.body), "1")
		r = c.do("POST", "/api/flow_runs/count", nil)
		frEq(t, "count all", string(r.body), "4")
		r = c.do("POST", "/api/flow_runs/paginate", map[string]any{"limit": 3, "page": 2, "sort": "NAME_ASC"})
		wantStatus(t, r, http.StatusOK)
		var page struct {
			Results []frRunJSON `json:"results"`
			Count   int         `json:"count"`
			Pages   int         `json:"pages"`
			Page    int         `json:"page"`
		}
		r.json(t, &page)
		if page.Count != 4 || page.Pages != 2 || page.Page != 2 || len(page.Results) != 1 || page.Results[0].Name != "d" {
			t.Errorf("paginate %+v", page)
		}
		r = c.do("POST", "/api/flow_runs/lateness", nil)
		wantStatus(t, r, http.StatusOK)
		r = c.do("POST", "/api/flow_runs/lateness", map[string]any{"flow_runs": map[string]any{"name": map[string]any{"any_": []string{"nope"}}}})
		wantStatus(t, r, http.StatusOK)
		frEq(t, "lateness of nothing", string(r.body), "null")

		now := time.Now().UTC()
		r = c.do("POST", "/api/flow_runs/history", map[string]any{
			"history_start": now.Add(-time.Hour).Format(time.RFC3339), "history_end": now.Add(time.Hour).Format(time.RFC3339), "history_interval_seconds": 3600,
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
		if len(hist) != 2 || total != 4 {
			t.Errorf("history %s", r.body)
		}

		r = c.do("POST", "/api/flow_runs/bulk_delete", map[string]any{"flow_runs": map[string]any{"name": map[string]any{"any_": []string{"a", "b"}}}})
		wantStatus(t, r, http.StatusOK)
		var del struct {
			Deleted []string `json:"deleted"`
		}
		r.json(t, &del)
		if len(del.Deleted) != 2 {
			t.Errorf("bulk delete %s", r.body)
		}
		wantStatus(t, c.do("POST", "/api/flow_runs/bulk_delete", map[string]any{"limit": 51}), http.StatusUnprocessableEntity)
	})
}

func TestFlowRunInputsAndStates(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		run := frCreate(t, c, map[string]any{"flow_id": frFlow(t, c, "f")}, http.StatusCreated)
		base := "/api/flow_runs/" + run.ID + "/input"
		wantStatus(t, c.do("POST", base, map[string]any{"key": "k-1", "value": `{"a": 1}`, "sender": "me"}), http.StatusCreated)
		wantStatus(t, c.do("POST", base, map[string]any{"key": "k-2", "value": `"x"`}), http.StatusCreated)
		wantDetail(t, c.do("POST", base, map[string]any{"key": "k-1", "value": "again"}), http.StatusConflict, "A flow run input with this key already exists.")
		wantDetail(t, c.do("POST", "/api/flow_runs/"+uuid.NewString()+"/input", map[string]any{"key": "k", "value": "v"}), http.StatusNotFound, "Flow run not found")
		// Prefect answers a PlainTextResponse where its document says JSON,
		// so this one answer is read without the document check.
		resp, err := http.Get(c.base + base + "/k-1")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(raw) != `{"a": 1}` || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("read input: %d %q %s", resp.StatusCode, raw, resp.Header.Get("Content-Type"))
		}
		wantDetail(t, c.do("GET", base+"/nope", nil), http.StatusNotFound, "Flow run input not found")
		r := c.do("POST", base+"/filter", map[string]any{"prefix": "k-", "limit": 10, "exclude_keys": []string{"k-2"}})
		wantStatus(t, r, http.StatusOK)
		var ins []struct {
			Key    string  `json:"key"`
			Sender *string `json:"sender"`
		}
		r.json(t, &ins)
		if len(ins) != 1 || ins[0].Key != "k-1" || ins[0].Sender == nil {
			t.Errorf("filter %s", r.body)
		}
		r = c.do("POST", base+"/filter", map[string]any{"prefix": "k-"})
		r.json(t, &ins)
		if len(ins) != 1 {
			t.Errorf("default limit 1: %s", r.body)
		}
		wantStatus(t, c.do("DELETE", base+"/k-1", nil), http.StatusNoContent)
		wantDetail(t, c.do("DELETE", base+"/k-1", nil), http.StatusNotFound, "Flow run input not found")

		r = c.do("GET", "/api/flow_run_states/?flow_run_id="+run.ID, nil)
		wantStatus(t, r, http.StatusOK)
		var states []frStateJSON
		r.json(t, &states)
		if len(states) != 1 || states[0].ID != run.State.ID {
			t.Fatalf("states %s", r.body)
		}
		r = c.do("GET", "/api/flow_run_states/"+states[0].ID, nil)
		wantStatus(t, r, http.StatusOK)
		wantDetail(t, c.do("GET", "/api/flow_run_states/"+uuid.NewString(), nil), http.StatusNotFound, "Flow run state not found")
		wantValidation(t, c.do("GET", "/api/flow_run_states/", nil), "query.flow_run_id", "missing")
	})
}

func TestFlowRunGraphs(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		run := frCreate(t, c, map[string]any{"flow_id": frFlow(t, c, "f")}, http.StatusCreated)
		wantStatus(t, c.do("POST", "/api/flow_runs/"+run.ID+"/set_state", map[string]any{"state": map[string]any{"type": "RUNNING"}}), http.StatusCreated)
		up := uuid.New()
		storetest.Exec(t, s, `INSERT INTO task_run (id, flow_run_id, name, task_key, dynamic_key) VALUES (?, ?, 'up', 'k', '0')`, up, uuid.MustParse(run.ID))
		down := uuid.New()
		storetest.Exec(t, s, `INSERT INTO task_run (id, flow_run_id, name, task_key, dynamic_key, task_inputs) VALUES (?, ?, 'down', 'k', '1', ?)`,
			down, uuid.MustParse(run.ID), fmt.Sprintf(`{"x": [{"input_type": "task_run", "id": "%s"}]}`, up))
		for _, id := range []uuid.UUID{up, down} {
			for _, typ := range []string{"PENDING", "RUNNING", "COMPLETED"} {
				wantStatus(t, c.do("POST", "/api/task_runs/"+id.String()+"/set_state", map[string]any{"state": map[string]any{"type": typ}}), http.StatusCreated)
			}
		}
		r := c.do("GET", "/api/flow_runs/"+run.ID+"/graph", nil)
		wantStatus(t, r, http.StatusOK)
		var v1 []struct {
			ID   string `json:"id"`
			Deps []any  `json:"upstream_dependencies"`
		}
		r.json(t, &v1)
		if len(v1) != 2 {
			t.Errorf("graph v1 %s", r.body)
		}
		r = c.do("GET", "/api/flow_runs/"+run.ID+"/graph-v2", nil)
		wantStatus(t, r, http.StatusOK)
		var v2 struct {
			RootNodeIDs []string `json:"root_node_ids"`
			Nodes       [][]any  `json:"nodes"`
			States      []any    `json:"states"`
		}
		r.json(t, &v2)
		if len(v2.Nodes) != 2 || len(v2.RootNodeIDs) != 1 || v2.RootNodeIDs[0] != up.String() || len(v2.States) != 2 {
			t.Errorf("graph v2 %s", r.body)
		}
		wantStatus(t, c.do("GET", "/api/flow_runs/"+uuid.NewString()+"/graph", nil), http.StatusNotFound)
		wantStatus(t, c.do("GET", "/api/flow_runs/"+uuid.NewString()+"/graph-v2", nil), http.StatusNotFound)
	})
}
