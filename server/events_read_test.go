package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/openapi"
	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/storetest"
)

type eventPageJSON struct {
	Events []struct {
		ID       string            `json:"id"`
		Event    string            `json:"event"`
		Occurred string            `json:"occurred"`
		Received string            `json:"received"`
		Resource map[string]string `json:"resource"`
		Related  []map[string]string
		Payload  map[string]any `json:"payload"`
	} `json:"events"`
	Total    int     `json:"total"`
	NextPage *string `json:"next_page"`
}

func (p eventPageJSON) names() []string {
	out := []string{}
	for _, e := range p.Events {
		out = append(out, e.Event)
	}
	return out
}

func insertTestEvents(t *testing.T, s store.Store, at time.Time, n int) {
	t.Helper()
	evs := make([]events.ReceivedEvent, n)
	for i := range evs {
		occurred := at.Add(time.Duration(i) * time.Second)
		evs[i] = events.Event{
			ID:       uuid.New(),
			Occurred: openapi.Time{Time: occurred},
			Event:    fmt.Sprintf("prefect.flow-run.E%02d", i),
			Resource: events.Resource{"prefect.resource.id": fmt.Sprintf("prefect.flow-run.%d", i%3)},
			Related:  []events.Resource{{"prefect.resource.id": "prefect.flow.1", "prefect.resource.role": "flow", "prefect.resource.name": "etl"}},
			Payload:  json.RawMessage(`{"n":1}`),
		}.Receive(occurred)
	}
	if _, err := s.InsertEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

func readEventsAPI(t *testing.T, c *client, body any) eventPageJSON {
	t.Helper()
	r := c.do("POST", "/api/events/filter", body)
	wantStatus(t, r, http.StatusOK)
	var p eventPageJSON
	r.json(t, &p)
	return p
}

func TestEventsFilterAndPages(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		start := time.Now().UTC().Add(-time.Hour)
		insertTestEvents(t, s, start, 120)
		// Outside the default window (180 days back).
		insertTestEvents(t, s, start.AddDate(-1, 0, 0), 1)

		first := readEventsAPI(t, c, map[string]any{})
		if first.Total != 120 || len(first.Events) != 50 || first.NextPage == nil {
			t.Fatalf("first page: total %d, %d events, next %v", first.Total, len(first.Events), first.NextPage)
		}
		// Newest first by default.
		if first.Events[0].Event != "prefect.flow-run.E119" || first.Events[0].Related[0]["prefect.resource.role"] != "flow" {
			t.Fatalf("first event %+v", first.Events[0])
		}
		seen := map[string]bool{}
		for _, e := range first.Events {
			seen[e.ID] = true
		}
		page := first
		pages := 1
		for page.NextPage != nil {
			u, err := url.Parse(*page.NextPage)
			if err != nil || !strings.HasSuffix(u.Path, "/api/events/filter/next") {
				t.Fatalf("next page link %q (%v)", *page.NextPage, err)
			}
			r := c.do("GET", u.RequestURI(), nil)
			wantStatus(t, r, http.StatusOK)
			page = eventPageJSON{}
			r.json(t, &page)
			if page.Total != 120 {
				t.Fatalf("page %d total %d", pages+1, page.Total)
			}
			for _, e := range page.Events {
				if seen[e.ID] {
					t.Fatalf("event %s on two pages", e.ID)
				}
				seen[e.ID] = true
			}
			pages++
		}
		if pages != 3 || len(seen) != 120 || len(page.Events) != 20 {
			t.Fatalf("%d pages, %d events, last page %d", pages, len(seen), len(page.Events))
		}

		since := start.Add(10 * time.Second).Format(time.RFC3339Nano)
		until := start.Add(13 * time.Second).Format(time.RFC3339Nano)
		asc := readEventsAPI(t, c, map[string]any{"limit": 10, "filter": map[string]any{
			"occurred": map[string]any{"since": since, "until": until}, "order": "ASC",
		}})
		eqStrings(t, "window ASC", asc.names(), []string{"prefect.flow-run.E10", "prefect.flow-run.E11", "prefect.flow-run.E12", "prefect.flow-run.E13"})
		if asc.NextPage != nil || asc.Total != 4 {
			t.Fatalf("window: total %d next %v", asc.Total, asc.NextPage)
		}

		byName := readEventsAPI(t, c, map[string]any{"filter": map[string]any{
			"event":    map[string]any{"name": []string{"prefect.flow-run.E05", "prefect.flow-run.E06"}},
			"resource": map[string]any{"id": []string{"prefect.flow-run.0"}},
		}})
		eqStrings(t, "name and resource", byName.names(), []string{"prefect.flow-run.E06"})
		// any_resource and related as one object or a list.
		one := readEventsAPI(t, c, map[string]any{"limit": 0, "filter": map[string]any{"any_resource": map[string]any{"id": []string{"prefect.flow.1"}}}})
		many := readEventsAPI(t, c, map[string]any{"limit": 0, "filter": map[string]any{"related": []any{map[string]any{"labels": map[string]any{"prefect.resource.name": "etl"}}, map[string]any{"role": []string{"flow"}}}}})
		if one.Total != 120 || many.Total != 120 || len(one.Events) != 0 || one.NextPage != nil {
			t.Fatalf("any_resource %d, related %d, events %d", one.Total, many.Total, len(one.Events))
		}
		distinct := readEventsAPI(t, c, map[string]any{"filter": map[string]any{"resource": map[string]any{"distinct": true}}})
		eqStrings(t, "distinct", distinct.names(), []string{"prefect.flow-run.E119", "prefect.flow-run.E118", "prefect.flow-run.E117"})
		if distinct.Total != 3 {
			t.Fatalf("distinct total %d", distinct.Total)
		}

		wantValidation(t, c.do("POST", "/api/events/filter", map[string]any{"limit": 51}), "body.limit", "")
		wantValidation(t, c.do("POST", "/api/events/filter", map[string]any{"filter": map[string]any{"order": "UP"}}), "body.filter.order", "")
		wantValidation(t, c.do("POST", "/api/events/filter", map[string]any{"filter": map[string]any{"bogus": 1}}), "body.filter.bogus", "")
		wantDetail(t, c.do("GET", "/api/events/filter/next?page-token=not-base64!", nil), http.StatusForbidden, "Forbidden")
		wantDetail(t, c.do("GET", "/api/events/filter/next?page-token=aGVsbG8=", nil), http.StatusForbidden, "Forbidden")
		wantValidation(t, c.do("GET", "/api/events/filter/next", nil), "query.page-token", "missing")
	})
}

type eventCountJSON struct {
	Value     string `json:"value"`
	Label     string `json:"label"`
	Count     int    `json:"count"`
	StartTime string `json:"start_time"`
	EndTime   string `json:"end_time"`
}

func TestEventsCountBy(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		day := time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC) // a Monday
		insertTestEvents(t, s, day.Add(30*time.Minute), 5) // 00:30 .. 00:30:04, resources 0,1,2,0,1
		insertTestEvents(t, s, day.Add(2*time.Hour), 1)
		window := map[string]any{"occurred": map[string]any{"since": day.Format(time.RFC3339), "until": day.Add(4*time.Hour - time.Microsecond).Format(time.RFC3339Nano)}}

		var hours []eventCountJSON
		r := c.do("POST", "/api/events/count-by/time", map[string]any{"filter": window, "time_unit": "hour", "time_interval": 1})
		wantStatus(t, r, http.StatusOK)
		r.json(t, &hours)
		if len(hours) != 4 {
			t.Fatalf("%d hour buckets: %+v", len(hours), hours)
		}
		want := []eventCountJSON{
			{"0", "2025-06-02T00:00:00+00:00", 5, "2025-06-02T00:00:00.000000Z", "2025-06-02T00:59:59.999999Z"},
			{"1", "2025-06-02T01:00:00+00:00", 0, "2025-06-02T01:00:00.000000Z", "2025-06-02T01:59:59.999999Z"},
			{"2", "2025-06-02T02:00:00+00:00", 1, "2025-06-02T02:00:00.000000Z", "2025-06-02T02:59:59.999999Z"},
			{"3", "2025-06-02T03:00:00+00:00", 0, "2025-06-02T03:00:00.000000Z", "2025-06-02T03:59:59.999999Z"},
		}
		for i := range want {
			if hours[i] != want[i] {
				t.Fatalf("bucket %d = %+v, want %+v", i, hours[i], want[i])
			}
		}

		var days []eventCountJSON
		r = c.do("POST", "/api/events/count-by/day", map[string]any{"filter": window})
		wantStatus(t, r, http.StatusOK)
		r.json(t, &days)
		if len(days) != 1 || days[0].Count != 6 || days[0].Label != "2025-06-02T00:00:00+00:00" {
			t.Fatalf("days %+v", days)
		}

		var byResource []eventCountJSON
		r = c.do("POST", "/api/events/count-by/resource", map[string]any{"filter": window})
		wantStatus(t, r, http.StatusOK)
		r.json(t, &byResource)
		got := []string{}
		for _, g := range byResource {
			got = append(got, fmt.Sprintf("%s=%d", g.Label, g.Count))
		}
		eqStrings(t, "by resource", got, []string{"prefect.flow-run.0=3", "prefect.flow-run.1=2", "prefect.flow-run.2=1"})

		var byEvent []eventCountJSON
		r = c.do("POST", "/api/events/count-by/event", map[string]any{"filter": window})
		wantStatus(t, r, http.StatusOK)
		r.json(t, &byEvent)
		if len(byEvent) != 5 || byEvent[0].Label != "prefect.flow-run.E00" || byEvent[0].Count != 2 {
			t.Fatalf("by event %+v", byEvent)
		}

		r = c.do("POST", "/api/events/count-by/time", map[string]any{"filter": window, "time_unit": "second", "time_interval": 1})
		wantStatus(t, r, http.StatusUnprocessableEntity)
		if !strings.Contains(string(r.body), "which is too many") {
			t.Fatalf("too many buckets: %s", r.body)
		}
		wantValidation(t, c.do("POST", "/api/events/count-by/time", map[string]any{"filter": window, "time_interval": 0.001}), "body.time_interval", "")
		wantValidation(t, c.do("POST", "/api/events/count-by/time", map[string]any{}), "body.filter", "missing")
		wantValidation(t, c.do("POST", "/api/events/count-by/color", map[string]any{"filter": window}), "path.countable", "enum")
	})
}
