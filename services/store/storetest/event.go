package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/openapi"
	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
)

// eventCases are the conformance cases of store.EventStore.
var eventCases = []suiteCase{
	{"Events/RoundTripAndResources", testEventsRoundTrip},
	{"Events/Dedup", testEventsDedup},
	{"Events/BatchSizes", testEventsBatchSizes},
	{"Events/Filters", testEventsFilters},
	{"Events/DistinctAndOrder", testEventsDistinct},
	{"Events/BadInput", testEventsBadInput},
	{"Events/CountBy", testEventsCountBy},
	{"Events/PartlyKnown", testEventsPartlyKnown},
}

var eventBase = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

func newEvent(name, resourceID string, at time.Time, related ...events.Resource) events.ReceivedEvent {
	return events.ReceivedEvent{
		Event: events.Event{
			ID:       uuid.New(),
			Occurred: openapi.Time{Time: at},
			Event:    name,
			Resource: events.Resource{"prefect.resource.id": resourceID, "prefect.resource.name": "res-" + resourceID},
			Related:  related,
			Payload:  json.RawMessage(`{"validated_state":{"type":"COMPLETED"}}`),
		},
		Received: openapi.Time{Time: at.Add(time.Second)},
	}
}

func related(id, role string, labels ...string) events.Resource {
	r := events.Resource{"prefect.resource.id": id, "prefect.resource.role": role}
	for i := 0; i+1 < len(labels); i += 2 {
		r[labels[i]] = labels[i+1]
	}
	return r
}

// eventWindow is a filter whose occurred window holds every test event.
func eventWindow() store.EventFilter {
	return store.EventFilter{Occurred: store.EventOccurredFilter{
		Since: openapi.Time{Time: eventBase.Add(-time.Hour)},
		Until: openapi.Time{Time: eventBase.Add(24 * time.Hour)},
	}, Order: "ASC"}
}

func mustInsertEvents(t *testing.T, s store.Store, evs []events.ReceivedEvent, want int) {
	t.Helper()
	n, err := s.InsertEvents(ctxT(t), evs)
	if err != nil {
		t.Fatalf("InsertEvents(%d): %v", len(evs), err)
	}
	if n != want {
		t.Fatalf("InsertEvents(%d) inserted %d, want %d", len(evs), n, want)
	}
}

func readEventNames(t *testing.T, s store.Store, f store.EventFilter) []string {
	t.Helper()
	evs, err := s.ReadEvents(ctxT(t), store.EventQuery{Filter: f})
	if err != nil {
		t.Fatalf("ReadEvents: %v", err)
	}
	out := []string{}
	for _, e := range evs {
		out = append(out, e.Event.Event)
	}
	n, err := s.CountEvents(ctxT(t), f)
	if err != nil {
		t.Fatalf("CountEvents: %v", err)
	}
	if int(n) != len(out) {
		t.Errorf("CountEvents = %d, ReadEvents found %d", n, len(out))
	}
	return out
}

func testEventsRoundTrip(t *testing.T, s store.Store) {
	follows := uuid.New()
	e := newEvent("prefect.flow-run.Completed", "prefect.flow-run.1", eventBase.Add(123456*time.Microsecond),
		related("prefect.flow.9", "flow", "prefect.resource.name", "etl"),
		related("prefect.tag.nightly", "tag"))
	e.Follows = &follows
	mustInsertEvents(t, s, []events.ReceivedEvent{e}, 1)

	got, err := s.ReadEvents(ctxT(t), store.EventQuery{Filter: eventWindow()})
	if err != nil || len(got) != 1 {
		t.Fatalf("ReadEvents = %v, %v", got, err)
	}
	g := got[0]
	eq(t, "id", g.ID, e.ID)
	eq(t, "occurred", g.Occurred.Time, e.Occurred.Time)
	eq(t, "received", g.Received.Time, e.Received.Time)
	eq(t, "resource", g.Resource, e.Resource)
	eq(t, "related", g.Related, e.Related)
	eq(t, "follows", *g.Follows, follows)
	var payload map[string]any
	if err := json.Unmarshal(g.Payload, &payload); err != nil || payload["validated_state"] == nil {
		t.Errorf("payload = %s (%v)", g.Payload, err)
	}

	// One resource row for the primary resource (role "") and one per
	// related resource, labels stored without id and role.
	eq(t, "resource rows", QueryInt(t, s, "SELECT count(*) FROM event_resources WHERE event_id = ?", e.ID), int64(3))
	eq(t, "primary row", QueryInt(t, s, "SELECT count(*) FROM event_resources WHERE event_id = ? AND resource_role = '' AND resource_id = 'prefect.flow-run.1'", e.ID), int64(1))
	eq(t, "related row", QueryInt(t, s, "SELECT count(*) FROM event_resources WHERE event_id = ? AND resource_role = 'flow' AND resource_id = 'prefect.flow.9'", e.ID), int64(1))
	eq(t, "events row", QueryInt(t, s, "SELECT count(*) FROM events WHERE id = ? AND resource_id = 'prefect.flow-run.1'", e.ID), int64(1))
}

func testEventsDedup(t *testing.T, s store.Store) {
	a := newEvent("a", "r.1", eventBase, related("r.2", "x"))
	b := newEvent("b", "r.1", eventBase.Add(time.Second))
	mustInsertEvents(t, s, []events.ReceivedEvent{a}, 1)
	// a again (stored before), b twice in the same batch: only b is new,
	// written once, and a's resource rows are not duplicated.
	changed := a
	changed.Event.Event = "a-changed"
	mustInsertEvents(t, s, []events.ReceivedEvent{changed, b, b}, 1)
	eq(t, "names", readEventNames(t, s, eventWindow()), []string{"a", "b"})
	eq(t, "resource rows", QueryInt(t, s, "SELECT count(*) FROM event_resources"), int64(3))
	mustInsertEvents(t, s, nil, 0)
}

func testEventsBatchSizes(t *testing.T, s store.Store) {
	mustInsertEvents(t, s, []events.ReceivedEvent{newEvent("single", "r.single", eventBase)}, 1)
	// More rows than one SQLite statement carries, each with related
	// resources, so both inserts are chunked.
	const n = 2600
	evs := make([]events.ReceivedEvent, n)
	for i := range evs {
		evs[i] = newEvent("bulk", fmt.Sprintf("r.%d", i), eventBase.Add(time.Duration(i)*time.Millisecond),
			related("prefect.flow.1", "flow"), related("prefect.tag.a", "tag"), related("prefect.tag.b", "tag"), related("prefect.tag.c", "tag"))
	}
	mustInsertEvents(t, s, evs, n)
	eq(t, "events", QueryInt(t, s, "SELECT count(*) FROM events"), int64(n+1))
	eq(t, "resource rows", QueryInt(t, s, "SELECT count(*) FROM event_resources"), int64(n*5+1))
	// The same batch again is all duplicates.
	mustInsertEvents(t, s, evs, 0)
	eq(t, "resource rows after replay", QueryInt(t, s, "SELECT count(*) FROM event_resources"), int64(n*5+1))
	f := eventWindow()
	f.Event = &store.EventNameFilter{Name: []string{"bulk"}}
	page, err := s.ReadEvents(ctxT(t), store.EventQuery{Filter: f, Limit: 50, Offset: 2550})
	if err != nil || len(page) != 50 || page[49].Resource.ID() != "r.2599" {
		t.Fatalf("last page: %d events, err %v", len(page), err)
	}
}

func testEventsFilters(t *testing.T, s store.Store) {
	mustInsertEvents(t, s, []events.ReceivedEvent{
		newEvent("prefect.flow-run.Pending", "prefect.flow-run.1", eventBase,
			related("prefect.flow.9", "flow", "prefect.resource.name", "etl"), related("prefect.tag.nightly", "tag")),
		newEvent("prefect.flow-run.Running", "prefect.flow-run.1", eventBase.Add(time.Second),
			related("prefect.flow.9", "flow", "prefect.resource.name", "etl")),
		newEvent("prefect.task-run.Completed", "prefect.task-run.5", eventBase.Add(2*time.Second),
			related("prefect.flow-run.1", "flow-run")),
		newEvent("prefect.flow-run.Completed", "prefect.flow-run.2", eventBase.Add(3*time.Second),
			related("prefect.flow.7", "flow", "prefect.resource.name", "report_100%")),
		newEvent("custom.heartbeat", "my.worker", eventBase.Add(48*time.Hour)),
	}, 5)
	w := eventWindow
	with := func(mod func(f *store.EventFilter)) store.EventFilter {
		f := w()
		mod(&f)
		return f
	}
	all := []string{"prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.task-run.Completed", "prefect.flow-run.Completed"}
	cases := []struct {
		name string
		f    store.EventFilter
		want []string
	}{
		{"window", w(), all},
		{"occurred", with(func(f *store.EventFilter) {
			f.Occurred.Since = openapi.Time{Time: eventBase.Add(time.Second)}
			f.Occurred.Until = openapi.Time{Time: eventBase.Add(2 * time.Second)}
		}), []string{"prefect.flow-run.Running", "prefect.task-run.Completed"}},
		{"prefix", with(func(f *store.EventFilter) { f.Event = &store.EventNameFilter{Prefix: []string{"prefect.flow-run."}} }),
			[]string{"prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.flow-run.Completed"}},
		{"exclude prefix", with(func(f *store.EventFilter) {
			f.Event = &store.EventNameFilter{ExcludePrefix: []string{"prefect.flow-run."}}
		}),
			[]string{"prefect.task-run.Completed"}},
		{"name", with(func(f *store.EventFilter) {
			f.Event = &store.EventNameFilter{Name: []string{"prefect.flow-run.Running", "nope"}}
		}), []string{"prefect.flow-run.Running"}},
		{"exclude name", with(func(f *store.EventFilter) {
			f.Event = &store.EventNameFilter{ExcludeName: []string{"prefect.flow-run.Running", "prefect.flow-run.Pending"}}
		}), []string{"prefect.task-run.Completed", "prefect.flow-run.Completed"}},
		{"resource id", with(func(f *store.EventFilter) {
			f.Resource = &store.EventResourceFilter{ID: []string{"prefect.flow-run.2"}}
		}),
			[]string{"prefect.flow-run.Completed"}},
		{"resource id prefix", with(func(f *store.EventFilter) {
			f.Resource = &store.EventResourceFilter{IDPrefix: []string{"prefect.task-run."}}
		}), []string{"prefect.task-run.Completed"}},
		{"resource labels glob", with(func(f *store.EventFilter) {
			f.Resource = &store.EventResourceFilter{Labels: store.ResourceSpecification{"prefect.resource.id": {"prefect.flow-run.*"}}}
		}), []string{"prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.flow-run.Completed"}},
		{"resource label value", with(func(f *store.EventFilter) {
			f.Resource = &store.EventResourceFilter{Labels: store.ResourceSpecification{"prefect.resource.name": {"res-prefect.task-run.5"}}}
		}), []string{"prefect.task-run.Completed"}},
		{"resource label negated", with(func(f *store.EventFilter) {
			f.Resource = &store.EventResourceFilter{Labels: store.ResourceSpecification{"prefect.resource.id": {"!prefect.flow-run.*"}}}
		}), []string{"prefect.task-run.Completed"}},
		{"resource empty label list", with(func(f *store.EventFilter) {
			f.Resource = &store.EventResourceFilter{Labels: store.ResourceSpecification{"prefect.resource.name": {}}}
		}), []string{}},
		{"related id", with(func(f *store.EventFilter) { f.Related = store.EventRelatedFilters{{ID: []string{"prefect.flow.9"}}} }),
			[]string{"prefect.flow-run.Pending", "prefect.flow-run.Running"}},
		{"related excludes primary", with(func(f *store.EventFilter) {
			f.Related = store.EventRelatedFilters{{ID: []string{"prefect.flow-run.1"}}}
		}),
			[]string{"prefect.task-run.Completed"}},
		{"related role", with(func(f *store.EventFilter) { f.Related = store.EventRelatedFilters{{Role: []string{"tag"}}} }),
			[]string{"prefect.flow-run.Pending"}},
		{"related in roles", with(func(f *store.EventFilter) {
			f.Related = store.EventRelatedFilters{{ResourcesInRoles: [][2]string{{"prefect.flow.7", "flow"}, {"prefect.flow.9", "tag"}}}}
		}), []string{"prefect.flow-run.Completed"}},
		{"related labels", with(func(f *store.EventFilter) {
			f.Related = store.EventRelatedFilters{{Labels: store.ResourceSpecification{"prefect.resource.role": {"flow"}, "prefect.resource.name": {"report_1??%"}}}}
		}), []string{"prefect.flow-run.Completed"}},
		{"related list is AND", with(func(f *store.EventFilter) {
			f.Related = store.EventRelatedFilters{{ID: []string{"prefect.flow.9"}}, {Role: []string{"tag"}}}
		}), []string{"prefect.flow-run.Pending"}},
		{"any resource primary or related", with(func(f *store.EventFilter) {
			f.AnyResource = store.EventAnyResourceFilters{{ID: []string{"prefect.flow-run.1"}}}
		}), []string{"prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.task-run.Completed"}},
		{"any resource prefix", with(func(f *store.EventFilter) {
			f.AnyResource = store.EventAnyResourceFilters{{IDPrefix: []string{"prefect.tag."}}}
		}), []string{"prefect.flow-run.Pending"}},
		{"any resource labels", with(func(f *store.EventFilter) {
			f.AnyResource = store.EventAnyResourceFilters{{Labels: store.ResourceSpecification{"prefect.resource.id": {"prefect.flow.*"}, "prefect.resource.name": {"etl"}}}}
		}), []string{"prefect.flow-run.Pending", "prefect.flow-run.Running"}},
		{"text include", with(func(f *store.EventFilter) { f.Text = &store.EventTextFilter{Query: "NIGHTLY"} }),
			[]string{"prefect.flow-run.Pending"}},
		{"text exclude and required", with(func(f *store.EventFilter) {
			f.Text = &store.EventTextFilter{Query: "+completed -task-run"}
		}), []string{"prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.flow-run.Completed"}},
	}
	for _, c := range cases {
		eq(t, c.name, readEventNames(t, s, c.f), c.want)
	}
	// Filter by id.
	evs, err := s.ReadEvents(ctxT(t), store.EventQuery{Filter: w()})
	if err != nil {
		t.Fatal(err)
	}
	byID := w()
	byID.ID = &store.EventIDFilter{ID: []uuid.UUID{evs[2].ID}}
	eq(t, "id", readEventNames(t, s, byID), []string{"prefect.task-run.Completed"})
}

func testEventsDistinct(t *testing.T, s store.Store) {
	mustInsertEvents(t, s, []events.ReceivedEvent{
		newEvent("e1", "r.a", eventBase),
		newEvent("e2", "r.b", eventBase.Add(time.Second)),
		newEvent("e3", "r.a", eventBase.Add(2*time.Second)),
		newEvent("e4", "r.b", eventBase.Add(3*time.Second)),
		newEvent("e5", "r.c", eventBase.Add(4*time.Second)),
	}, 5)
	f := eventWindow()
	f.Order = "DESC"
	eq(t, "DESC", readEventNames(t, s, f), []string{"e5", "e4", "e3", "e2", "e1"})
	f.Resource = &store.EventResourceFilter{Distinct: true}
	eq(t, "distinct DESC", readEventNames(t, s, f), []string{"e5", "e4", "e3"})
	f.Order = "ASC"
	eq(t, "distinct ASC", readEventNames(t, s, f), []string{"e1", "e2", "e5"})
	page, err := s.ReadEvents(ctxT(t), store.EventQuery{Filter: f, Limit: 1, Offset: 1})
	if err != nil || len(page) != 1 || page[0].Event.Event != "e2" {
		t.Fatalf("distinct page = %v, %v", page, err)
	}
}

func testEventsBadInput(t *testing.T, s store.Store) {
	// A filter without its defaults is a programming error, not a query.
	if _, err := s.ReadEvents(ctxT(t), store.EventQuery{}); !errors.Is(err, filter.ErrInvalid) {
		t.Errorf("no window: err = %v, want filter.ErrInvalid", err)
	}
	e := newEvent("bad", "r.1", eventBase)
	e.Payload = json.RawMessage(`{not json`)
	if _, err := s.InsertEvents(ctxT(t), []events.ReceivedEvent{e}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("bad payload: err = %v, want ErrInvalid", err)
	}
	// Hostile text in filters is bound, never pasted.
	f := eventWindow()
	f.Resource = &store.EventResourceFilter{Labels: store.ResourceSpecification{`x'); DROP TABLE events; --`: {"*"}, `a"b`: {"*"}}}
	eq(t, "hostile", readEventNames(t, s, f), []string{})
	eq(t, "table intact", QueryInt(t, s, "SELECT count(*) FROM events"), int64(0))
}

func testEventsCountBy(t *testing.T, s store.Store) {
	pivot := time.Date(2024, 4, 1, 0, 0, 0, 0, time.UTC)
	named := func(name, resource, label string, at time.Time) events.ReceivedEvent {
		e := newEvent(name, resource, at)
		if label == "" {
			delete(e.Resource, "prefect.resource.name")
		} else {
			e.Resource["prefect.resource.name"] = label
		}
		return e
	}
	mustInsertEvents(t, s, []events.ReceivedEvent{
		named("a", "r.1", "old name", eventBase),
		named("a", "r.1", "new name", eventBase.Add(90*time.Minute)),
		named("b", "r.2", "", eventBase.Add(30*time.Minute)),
		// Before the pivot: a negative bucket index.
		named("b", "r.2", "", pivot.Add(-90*time.Minute)),
	}, 4)
	f := eventWindow()
	f.Occurred.Since = openapi.Time{Time: pivot.Add(-24 * time.Hour)}
	count := func(q store.EventCountQuery) map[string]store.EventGroup {
		t.Helper()
		gs, err := s.CountEventsBy(ctxT(t), q)
		if err != nil {
			t.Fatalf("CountEventsBy(%s): %v", q.By, err)
		}
		out := map[string]store.EventGroup{}
		for _, g := range gs {
			out[g.Value+"/"+g.Label] = g
		}
		return out
	}
	byEvent := count(store.EventCountQuery{Filter: f, By: "event"})
	eq(t, "by event a", byEvent["a/a"].Count, int64(2))
	eq(t, "by event a span", []time.Time{byEvent["a/a"].Oldest, byEvent["a/a"].Latest}, []time.Time{eventBase, eventBase.Add(90 * time.Minute)})
	eq(t, "by event b", byEvent["b/b"].Count, int64(2))
	eq(t, "by event groups", len(byEvent), 2)

	byResource := count(store.EventCountQuery{Filter: f, By: "resource"})
	eq(t, "by resource", len(byResource), 3)
	eq(t, "old label", byResource["r.1/old name"].Count, int64(1))
	eq(t, "new label", byResource["r.1/new name"].Count, int64(1))
	eq(t, "id as label", byResource["r.2/r.2"].Count, int64(2))

	byHour := count(store.EventCountQuery{Filter: f, By: "time", Pivot: pivot, Bucket: time.Hour})
	base := int64(eventBase.Sub(pivot) / time.Hour)
	eq(t, "bucket of base", byHour[fmt.Sprint(base)+"/"].Count, int64(2)) // base and base+30m
	eq(t, "bucket of base+90m", byHour[fmt.Sprint(base+1)+"/"].Count, int64(1))
	eq(t, "negative bucket", byHour["-2/"].Count, int64(1))

	for _, bad := range []store.EventCountQuery{{Filter: f, By: "color"}, {Filter: f, By: "time", Bucket: 0}} {
		if _, err := s.CountEventsBy(ctxT(t), bad); !errors.Is(err, filter.ErrInvalid) {
			t.Errorf("CountEventsBy(%+v): err = %v, want filter.ErrInvalid", bad, err)
		}
	}
}

// A batch mixing new events, events stored before and an event repeated
// within the batch stores each new event once with exactly its own
// resource rows, across the adapters' chunk boundaries (SQLite: 256-row statements and
// the powers of two below) and the ids RETURNING names (PostgreSQL).
func testEventsPartlyKnown(t *testing.T, s store.Store) {
	ctx := context.Background()
	at := time.Now()
	mk := func(i int) events.ReceivedEvent {
		return events.ReceivedEvent{Event: events.Event{
			ID: uuid.Must(uuid.NewV7()), Occurred: openapi.Time{Time: at}, Event: "partly.known",
			Resource: events.Resource{"prefect.resource.id": fmt.Sprint("r.", i)},
			Related: []events.Resource{
				{"prefect.resource.id": "prefect.flow.1", "prefect.resource.role": "flow"},
				{"prefect.resource.id": fmt.Sprint("prefect.tag.", i), "prefect.resource.role": "tag"},
			},
			Payload: json.RawMessage(`{}`),
		}, Received: openapi.Time{Time: at}}
	}
	known := make([]events.ReceivedEvent, 300)
	for i := range known {
		known[i] = mk(i)
	}
	if n, err := s.InsertEvents(ctx, known); err != nil || n != 300 {
		t.Fatalf("first batch: %d, %v", n, err)
	}
	var batch []events.ReceivedEvent
	for i := range 900 {
		if i%3 == 0 {
			batch = append(batch, known[i/3])
		} else {
			batch = append(batch, mk(1000+i))
		}
	}
	batch = append(batch, batch[1])
	if n, err := s.InsertEvents(ctx, batch); err != nil || n != 600 {
		t.Fatalf("mixed batch: %d new, %v; want 600", n, err)
	}
	// Whole chunks of new events, then one that holds known ones.
	var tail []events.ReceivedEvent
	for i := range 600 {
		tail = append(tail, mk(5000+i))
	}
	tail = append(tail, known[:10]...)
	if n, err := s.InsertEvents(ctx, tail); err != nil || n != 600 {
		t.Fatalf("batch with known events at its end: %d new, %v; want 600", n, err)
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM events"); n != 1500 {
		t.Fatalf("%d events stored, want 1500", n)
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM event_resources"); n != 1500*3 {
		t.Fatalf("%d resource rows, want %d", n, 1500*3)
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM (SELECT event_id FROM event_resources GROUP BY event_id HAVING count(*) <> 3) AS odd"); n != 0 {
		t.Fatalf("%d events without exactly three resource rows", n)
	}
	if n := QueryInt(t, s, "SELECT count(*) FROM event_resources r JOIN events e ON e.id = r.event_id WHERE r.occurred = e.occurred AND (r.resource_role <> '' OR r.resource_id = e.resource_id)"); n != 1500*3 {
		t.Fatalf("%d resource rows agree with their event, want %d", n, 1500*3)
	}
}
