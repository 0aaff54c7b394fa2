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
// ReceivedEvent.as_database_row), with the event_resources rows that go
// with it.
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
	Resources          []ResourceRow
}

// ResourceRow is an event_resources row (as_database_resource_rows): one
// for the primary resource (role "") and one per related resource. Its
// occurred and event id are those of its Row.
type ResourceRow struct {
	ID         uuid.UUID
	ResourceID string
	Role       string
	Resource   string // JSON object of the labels without id and role
}

// Encode turns a batch into rows. Events repeating an id seen earlier in
// the batch are dropped here, so the database only has to skip ids stored
// before.
func Encode(evs []events.ReceivedEvent) ([]Row, error) {
	rows := make([]Row, 0, len(evs))
	seen := make(map[uuid.UUID]struct{}, len(evs))
	// One backing array for every event's resource rows.
	nres := 0
	for i := range evs {
		nres += 1 + len(evs[i].Related)
	}
	resources := make([]ResourceRow, 0, nres)
	var buf []byte
	for i := range evs {
		e := &evs[i]
		if _, dup := seen[e.ID]; dup {
			continue
		}
		seen[e.ID] = struct{}{}
		payload := string(e.Payload)
		if len(e.Payload) == 0 || payload == "null" {
			payload = "{}"
		} else if !json.Valid(e.Payload) {
			return nil, fmt.Errorf("%w: event %s: payload is not JSON", store.ErrInvalid, e.ID)
		}
		row := Row{
			ID:         e.ID,
			Occurred:   store.Truncate(e.Occurred.Time),
			Event:      e.Event.Event,
			ResourceID: e.Resource.ID(),
			Payload:    payload,
			Received:   store.Truncate(e.Received.Time),
			Follows:    e.Follows,
		}
		buf = appendResource(buf[:0], e.Resource, false)
		row.Resource = string(buf)
		buf = append(buf[:0], '[')
		for j, r := range e.Related {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = appendString(buf, r.ID())
		}
		row.RelatedResourceIDs = string(append(buf, ']'))
		buf = append(buf[:0], '[')
		for j, r := range e.Related {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = appendResource(buf, r, false)
		}
		row.Related = string(append(buf, ']'))

		first := len(resources)
		buf = appendResource(buf[:0], e.Resource, true)
		resources = append(resources, ResourceRow{ID: uuid.Must(uuid.NewV7()), ResourceID: row.ResourceID, Resource: string(buf)})
		for _, r := range e.Related {
			buf = appendResource(buf[:0], r, true)
			resources = append(resources, ResourceRow{ID: uuid.Must(uuid.NewV7()), ResourceID: r.ID(), Role: r["prefect.resource.role"], Resource: string(buf)})
		}
		row.Resources = resources[first:len(resources):len(resources)]
		rows = append(rows, row)
	}
	return rows, nil
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
