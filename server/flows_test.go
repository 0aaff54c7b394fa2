package server

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/storetest"
)

type flowJSON struct {
	ID      string         `json:"id"`
	Name    string         `json:"name"`
	Tags    []string       `json:"tags"`
	Labels  map[string]any `json:"labels"`
	Created string         `json:"created"`
	Updated string         `json:"updated"`
}

func createFlow(t *testing.T, c *client, body map[string]any) flowJSON {
	t.Helper()
	r := c.do("POST", "/api/flows/", body)
	if r.status != http.StatusCreated && r.status != http.StatusOK {
		t.Fatalf("create flow: %d %s", r.status, r.body)
	}
	var f flowJSON
	r.json(t, &f)
	return f
}

func names(fs []flowJSON) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Name
	}
	return out
}

func TestRootEndpoints(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		r := c.do("GET", "/api/health", nil)
		wantStatus(t, r, 200)
		if string(r.body) != "true" {
			t.Fatalf("health: %s", r.body)
		}
		r = c.do("GET", "/api/version", nil)
		if string(r.body) != `"`+APIVersion+`"` {
			t.Fatalf("version: %s", r.body)
		}
		r = c.do("GET", "/api/admin/version", nil)
		if string(r.body) != `"3.9.1"` {
			t.Fatalf("admin version: %s", r.body)
		}
		r = c.do("GET", "/api/hello", nil)
		wantStatus(t, r, 200)
		r = c.do("GET", "/api/ready", nil)
		if string(r.body) != `{"message":"OK"}` {
			t.Fatalf("ready: %d %s", r.status, r.body)
		}
		r = c.do("GET", "/api/admin/settings", nil)
		wantStatus(t, r, 200)
		r = c.do("GET", "/api/csrf-token?client=abc", nil)
		wantDetail(t, r, 422, "CSRF protection is disabled.")
		r = c.do("GET", "/api/csrf-token", nil)
		wantValidation(t, r, "query.client", "missing")
	})
}

func TestFlowsCRUD(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		r := c.do("POST", "/api/flows/", map[string]any{"name": "etl", "tags": []string{"a", "b"}, "labels": map[string]any{"team": "data", "n": 3}})
		wantStatus(t, r, http.StatusCreated)
		var f flowJSON
		r.json(t, &f)
		if f.Name != "etl" || len(f.Tags) != 2 || f.Labels["team"] != "data" {
			t.Fatalf("created: %+v", f)
		}
		if !strings.HasSuffix(f.Created, "Z") || len(f.Created) != len("2006-01-02T15:04:05.000000Z") {
			t.Fatalf("timestamp format: %q", f.Created)
		}

		// The same name again is the same flow, answered 200 and untouched.
		r = c.do("POST", "/api/flows/", map[string]any{"name": "etl", "tags": []string{"other"}})
		wantStatus(t, r, http.StatusOK)
		var again flowJSON
		r.json(t, &again)
		if again.ID != f.ID || len(again.Tags) != 2 {
			t.Fatalf("second create: %+v", again)
		}

		r = c.do("GET", "/api/flows/"+f.ID, nil)
		wantStatus(t, r, 200)
		r = c.do("GET", "/api/flows/name/etl", nil)
		wantStatus(t, r, 200)
		wantDetail(t, c.do("GET", "/api/flows/name/nope", nil), 404, "Flow not found")
		wantDetail(t, c.do("GET", "/api/flows/"+uuid.NewString(), nil), 404, "Flow not found")
		// Prefect routes ids with Starlette's uuid converter: a malformed
		// id is an unknown route.
		wantDetail(t, c.do("GET", "/api/flows/not-a-uuid", nil), 404, "Not Found")

		r = c.do("PATCH", "/api/flows/"+f.ID, map[string]any{"tags": []string{"x"}})
		wantStatus(t, r, http.StatusNoContent)
		r = c.do("GET", "/api/flows/"+f.ID, nil)
		var updated flowJSON
		r.json(t, &updated)
		if len(updated.Tags) != 1 || updated.Tags[0] != "x" || updated.Updated < f.Updated {
			t.Fatalf("updated: %+v", updated)
		}
		wantDetail(t, c.do("PATCH", "/api/flows/"+uuid.NewString(), map[string]any{"tags": []string{}}), 404, "Flow not found")
		wantValidation(t, c.do("PATCH", "/api/flows/"+f.ID, map[string]any{"name": "renamed"}), "body.name", "extra_forbidden")

		wantStatus(t, c.do("DELETE", "/api/flows/"+f.ID, nil), http.StatusNoContent)
		wantDetail(t, c.do("DELETE", "/api/flows/"+f.ID, nil), 404, "Flow not found")
		wantDetail(t, c.do("GET", "/api/flows/"+f.ID, nil), 404, "Flow not found")
	})
}

func TestFlowsFilter(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		a := createFlow(t, c, map[string]any{"name": "alpha-etl", "tags": []string{"prod", "etl"}})
		b := createFlow(t, c, map[string]any{"name": "beta-ETL", "tags": []string{"prod"}})
		createFlow(t, c, map[string]any{"name": "gamma"})

		filter := func(body map[string]any) []string {
			t.Helper()
			r := c.do("POST", "/api/flows/filter", body)
			wantStatus(t, r, 200)
			var fs []flowJSON
			r.json(t, &fs)
			return names(fs)
		}
		eq := func(got []string, want ...string) {
			t.Helper()
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		}
		eq(filter(map[string]any{}), "alpha-etl", "beta-ETL", "gamma")
		eq(filter(map[string]any{"sort": "NAME_DESC"}), "gamma", "beta-ETL", "alpha-etl")
		eq(filter(map[string]any{"flows": map[string]any{"name": map[string]any{"any_": []string{"gamma", "alpha-etl"}}}}), "alpha-etl", "gamma")
		eq(filter(map[string]any{"flows": map[string]any{"name": map[string]any{"like_": "etl"}}}), "alpha-etl", "beta-ETL")
		eq(filter(map[string]any{"flows": map[string]any{"tags": map[string]any{"all_": []string{"prod", "etl"}}}}), "alpha-etl")
		eq(filter(map[string]any{"flows": map[string]any{"tags": map[string]any{"is_null_": true}}}), "gamma")
		eq(filter(map[string]any{"flows": map[string]any{"id": map[string]any{"any_": []string{a.ID, b.ID}}}}), "alpha-etl", "beta-ETL")
		eq(filter(map[string]any{"flows": map[string]any{"id": map[string]any{"not_any_": []string{a.ID}}}}), "beta-ETL", "gamma")
		eq(filter(map[string]any{"flows": map[string]any{"operator": "or_", "name": map[string]any{"any_": []string{"gamma"}}, "tags": map[string]any{"all_": []string{"etl"}}}}), "alpha-etl", "gamma")
		eq(filter(map[string]any{"limit": 1, "offset": 1}), "beta-ETL")
		eq(filter(map[string]any{"flows": nil, "flow_runs": nil, "task_runs": nil, "deployments": nil, "work_pools": nil, "limit": 200}), "alpha-etl", "beta-ETL", "gamma")

		r := c.do("POST", "/api/flows/count", map[string]any{"flows": map[string]any{"tags": map[string]any{"all_": []string{"prod"}}}})
		if string(r.body) != "2" {
			t.Fatalf("count: %s", r.body)
		}
		r = c.do("POST", "/api/flows/paginate", map[string]any{"limit": 2, "page": 2})
		var page struct {
			Results      []flowJSON
			Count, Limit int
			Pages        int
			PageNo       int `json:"page"`
		}
		r.json(t, &page)
		if page.Count != 3 || page.Pages != 2 || page.PageNo != 2 || len(page.Results) != 1 || page.Results[0].Name != "gamma" {
			t.Fatalf("paginate: %s", r.body)
		}

		wantValidation(t, c.do("POST", "/api/flows/filter", map[string]any{"sort": "SIDEWAYS"}), "body.sort", "enum")
		wantDetail(t, c.do("POST", "/api/flows/filter", map[string]any{"limit": 201}), 422, "Invalid limit: must be less than or equal to 200.")
		wantValidation(t, c.do("POST", "/api/flows/filter", map[string]any{"offset": -1}), "body.offset", "greater_than_equal")
		wantValidation(t, c.do("POST", "/api/flows/filter", map[string]any{"flows": map[string]any{"nme": map[string]any{}}}), "body.flows.nme", "extra_forbidden")
		wantValidation(t, c.do("POST", "/api/flows/filter", map[string]any{"flows": map[string]any{"id": map[string]any{"any_": []string{"x"}}}}), "body.flows.id.any_.0", "uuid_parsing")
	})
}

func TestFlowsBulkDelete(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		var want []string
		for i := 0; i < 3; i++ {
			want = append(want, createFlow(t, c, map[string]any{"name": fmt.Sprintf("bulk-%d", i), "tags": []string{"bulk"}}).ID)
		}
		createFlow(t, c, map[string]any{"name": "keep"})
		r := c.do("POST", "/api/flows/bulk_delete", map[string]any{"flows": map[string]any{"tags": map[string]any{"all_": []string{"bulk"}}}})
		wantStatus(t, r, 200)
		var out struct{ Deleted []string }
		r.json(t, &out)
		sort.Strings(out.Deleted)
		sort.Strings(want)
		if fmt.Sprint(out.Deleted) != fmt.Sprint(want) {
			t.Fatalf("deleted %v, want %v", out.Deleted, want)
		}
		r = c.do("POST", "/api/flows/count", nil)
		if string(r.body) != "1" {
			t.Fatalf("count after bulk delete: %s", r.body)
		}
		wantValidation(t, c.do("POST", "/api/flows/bulk_delete", map[string]any{"limit": 51}), "body.limit", "less_than_equal")
	})
}

func TestBadInput(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s, func(o *Options) { o.MaxBodyBytes = 1 << 10 })
		wantValidation(t, c.do("POST", "/api/flows/", map[string]any{}), "body.name", "missing")
		wantValidation(t, c.do("POST", "/api/flows/", map[string]any{"name": 5}), "body.name", "string_type")
		wantValidation(t, c.do("POST", "/api/flows/", map[string]any{"name": "a/b"}), "body.name", "string_pattern_mismatch")
		wantValidation(t, c.do("POST", "/api/flows/", map[string]any{"name": "x", "extra": 1}), "body.extra", "extra_forbidden")
		wantValidation(t, c.raw("POST", "/api/flows/", []byte(`{"name": "x"`), "application/json"), "body.0", "json_invalid")
		wantValidation(t, c.raw("POST", "/api/flows/", nil, ""), "body", "missing")
		big := strings.Repeat("x", 2<<10)
		r := c.do("POST", "/api/flows/", map[string]any{"name": big})
		wantStatus(t, r, http.StatusRequestEntityTooLarge)

		// Nothing of the above was written.
		r = c.do("POST", "/api/flows/count", nil)
		if string(r.body) != "0" {
			t.Fatalf("count after bad input: %s", r.body)
		}

		wantDetail(t, c.do("GET", "/api/no/such/route", nil), 404, "Not Found")
		wantDetail(t, c.do("GET", "/elsewhere", nil), 404, "Not Found")
		wantDetail(t, c.do("PUT", "/api/flows/filter", nil), 405, "Method Not Allowed")

		c.header.Set("X-Prefect-Api-Version", "0.7.9")
		wantStatus(t, c.do("POST", "/api/flows/count", nil), 400)
		c.header.Set("X-Prefect-Api-Version", "garbage")
		wantStatus(t, c.do("POST", "/api/flows/count", nil), 400)
		c.header.Set("X-Prefect-Api-Version", "0.8.4")
		wantStatus(t, c.do("POST", "/api/flows/count", nil), 200)
	})
}

// Operations not built yet answer from the one generic fallback, exactly as
// an unknown FastAPI route.
func TestUnimplementedOperationsAreUnknownRoutes(t *testing.T) {
	ops, err := Operations()
	if err != nil {
		t.Fatal(err)
	}
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		for _, op := range ops {
			if op.Implemented {
				continue
			}
			path := strings.NewReplacer("{id}", uuid.NewString(), "{", "", "}", "").Replace(op.Path)
			r := c.raw(op.Method, "/api"+path, []byte(`{}`), "application/json")
			if r.status != 404 || string(r.body) != `{"detail":"Not Found"}` {
				t.Fatalf("%s %s: %d %s", op.Method, path, r.status, r.body)
			}
		}
	})
}

func TestCORSAndAuth(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s, func(o *Options) { o.AuthString = "admin:pass" })
		c.header.Set("Origin", "http://ui.example")
		r := c.do("GET", "/api/health", nil)
		wantStatus(t, r, 200)
		if r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("CORS header missing: %v", r.header)
		}
		r = c.do("POST", "/api/flows/count", nil)
		wantStatus(t, r, http.StatusUnauthorized)
		c.header.Set("Authorization", "Basic YWRtaW46cGFzcw==")
		wantStatus(t, c.do("POST", "/api/flows/count", nil), 200)
	})
}
