package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/openapi"
	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store/storetest"
)

// A batch mixing new events, events stored before and an event repeated
// within the batch stores each new event once with exactly its own
// resource rows, across chunk boundaries (256-row statements and the powers of two below).
func TestInsertEventsPartlyKnown(t *testing.T) {
	s := storetest.OpenSQLite(t)
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
	if n := storetest.QueryInt(t, s, "SELECT count(*) FROM events"); n != 1500 {
		t.Fatalf("%d events stored, want 1500", n)
	}
	if n := storetest.QueryInt(t, s, "SELECT count(*) FROM event_resources"); n != 1500*3 {
		t.Fatalf("%d resource rows, want %d", n, 1500*3)
	}
	if n := storetest.QueryInt(t, s, "SELECT count(*) FROM (SELECT event_id FROM event_resources GROUP BY event_id HAVING count(*) <> 3) AS odd"); n != 0 {
		t.Fatalf("%d events without exactly three resource rows", n)
	}
	if n := storetest.QueryInt(t, s, "SELECT count(*) FROM event_resources r JOIN events e ON e.id = r.event_id WHERE r.occurred = e.occurred AND (r.resource_role <> '' OR r.resource_id = e.resource_id)"); n != 1500*3 {
		t.Fatalf("%d resource rows agree with their event, want %d", n, 1500*3)
	}
}
