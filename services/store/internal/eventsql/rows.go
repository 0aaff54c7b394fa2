package eventsql

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/openapi"
	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store"
)

// Row is an events row as both adapters write it (Prefect's
// ReceivedEvent.as_database_row).
type Row struct {
	ID                 uuid.UUID
	Occurred           time.Time
	Event              string
	ResourceID         string
	Resource           string // JSON object: every label, id included
	RelatedResourceIDs string // JSON array of the related resources' ids
	Related            string // JSON array of the related resources
	Payload            string // JSON
	Received           time.Time
	Follows            *uuid.UUID
}

// ResourceRow is an event_resources row (as_database_resource_rows): one
// for the primary resource (role "") and one per related resource.
type ResourceRow struct {
	ID         uuid.UUID
	Occurred   time.Time
	ResourceID string
	Role       string
	Resource   string // JSON object of the labels without id and role
	EventID    uuid.UUID
}

// Encode turns a batch into rows. Events repeating an id seen earlier in
// the batch are dropped here, so the database only has to skip ids stored
// before; resources maps each event id to its resource rows.
func Encode(evs []events.ReceivedEvent) (rows []Row, resources map[uuid.UUID][]ResourceRow, err error) {
	rows = make([]Row, 0, len(evs))
	resources = make(map[uuid.UUID][]ResourceRow, len(evs))
	for _, e := range evs {
		if _, dup := resources[e.ID]; dup {
			continue
		}
		occurred := store.Truncate(e.Occurred.Time)
		related := e.Related
		if related == nil {
			related = []events.Resource{}
		}
		relatedIDs := make([]string, len(related))
		for i, r := range related {
			relatedIDs[i] = r.ID()
		}
		payload := string(e.Payload)
		if len(e.Payload) == 0 || payload == "null" {
			payload = "{}"
		}
		row := Row{
			ID:                 e.ID,
			Occurred:           occurred,
			Event:              e.Event.Event,
			ResourceID:         e.Resource.ID(),
			Resource:           mustJSON(e.Resource),
			RelatedResourceIDs: mustJSON(relatedIDs),
			Related:            mustJSON(related),
			Payload:            payload,
			Received:           store.Truncate(e.Received.Time),
			Follows:            e.Follows,
		}
		if !json.Valid([]byte(payload)) {
			return nil, nil, fmt.Errorf("%w: event %s: payload is not JSON", store.ErrInvalid, e.ID)
		}
		rows = append(rows, row)
		res := make([]ResourceRow, 0, 1+len(related))
		res = append(res, resourceRow(e.ID, occurred, e.Resource, ""))
		for _, r := range related {
			res = append(res, resourceRow(e.ID, occurred, r, r["prefect.resource.role"]))
		}
		resources[e.ID] = res
	}
	return rows, resources, nil
}

func resourceRow(eventID uuid.UUID, occurred time.Time, r events.Resource, role string) ResourceRow {
	labels := make(map[string]string, len(r))
	for k, v := range r {
		if k != "prefect.resource.id" && k != "prefect.resource.role" {
			labels[k] = v
		}
	}
	return ResourceRow{ID: uuid.Must(uuid.NewV7()), Occurred: occurred, ResourceID: r.ID(), Role: role, Resource: mustJSON(labels), EventID: eventID}
}

// mustJSON marshals maps and slices of strings, which cannot fail.
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("eventsql: marshal %T: %v", v, err))
	}
	return string(b)
}

// Decode rebuilds an event from the columns Columns selects.
func Decode(id uuid.UUID, occurred time.Time, event string, resource, related, payload []byte, received time.Time, follows *uuid.UUID) (events.ReceivedEvent, error) {
	e := events.ReceivedEvent{
		Event: events.Event{
			ID:       id,
			Occurred: openapi.Time{Time: store.Truncate(occurred)},
			Event:    event,
			Follows:  follows,
			Payload:  json.RawMessage(append([]byte(nil), payload...)),
		},
		Received: openapi.Time{Time: store.Truncate(received)},
	}
	if err := json.Unmarshal(resource, &e.Resource); err != nil {
		return e, fmt.Errorf("event %s: stored resource: %w", id, err)
	}
	if err := json.Unmarshal(related, &e.Related); err != nil {
		return e, fmt.Errorf("event %s: stored related: %w", id, err)
	}
	if e.Related == nil {
		e.Related = []events.Resource{}
	}
	return e, nil
}
