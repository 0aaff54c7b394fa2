// Package events holds Prefect's event model and the broker that carries
// events from the API to the services that consume them (persister, task run
// recorder, stream distributors, triggers).
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/openapi"
)

// Resource is a set of labels naming an object; prefect.resource.id is
// required.
type Resource map[string]string

// ID is the resource's prefect.resource.id label.
func (r Resource) ID() string { return r["prefect.resource.id"] }

// Event is what clients send: something that happened to a resource.
type Event struct {
	Occurred openapi.Time    `json:"occurred"`
	Event    string          `json:"event"`
	Resource Resource        `json:"resource"`
	Related  []Resource      `json:"related"`
	Payload  json.RawMessage `json:"payload"`
	ID       uuid.UUID       `json:"id"`
	Follows  *uuid.UUID      `json:"follows"`
}

// ReceivedEvent is an event as the server saw it arrive.
type ReceivedEvent struct {
	Event
	Received openapi.Time `json:"received"`
}

// Limits are Prefect's server.events settings that bound one event.
type Limits struct {
	MaxNameLength        int // PREFECT_SERVER_EVENTS_MAXIMUM_EVENT_NAME_LENGTH (1024)
	MaxLabelsPerResource int // PREFECT_SERVER_EVENTS_MAXIMUM_LABELS_PER_RESOURCE (500)
	MaxRelatedResources  int // PREFECT_SERVER_EVENTS_MAXIMUM_RELATED_RESOURCES (100)
	MaxSizeBytes         int // PREFECT_EVENTS_MAXIMUM_SIZE_BYTES (1,500,000)
}

// DefaultLimits are Prefect 3.9.1's defaults.
var DefaultLimits = Limits{MaxNameLength: 1024, MaxLabelsPerResource: 500, MaxRelatedResources: 100, MaxSizeBytes: 1_500_000}

// ErrInvalid marks an event that fails Prefect's validation.
var ErrInvalid = errors.New("invalid event")

// Decode parses and validates one event as Prefect's Event model does.
// Frames of the client's usual shape take a fast path (see decodeFast);
// the result is the same as encoding/json's, which decides everything else.
func Decode(data []byte, lim Limits) (Event, error) {
	if lim.MaxSizeBytes > 0 && len(data) > lim.MaxSizeBytes {
		return Event{}, fmt.Errorf("%w: %d bytes exceeds the maximum event size", ErrInvalid, len(data))
	}
	e, ok := decodeFast(data)
	if !ok {
		e = Event{}
		if err := json.Unmarshal(data, &e); err != nil {
			return e, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	return e, e.Validate(lim)
}

// Validate applies the model validators of Prefect's Event.
func (e *Event) Validate(lim Limits) error {
	switch {
	case e.Occurred.IsZero():
		return fmt.Errorf("%w: occurred is required", ErrInvalid)
	case e.Event == "":
		return fmt.Errorf("%w: event is required", ErrInvalid)
	case lim.MaxNameLength > 0 && len(e.Event) > lim.MaxNameLength:
		return fmt.Errorf("%w: Event name must be at most %d characters", ErrInvalid, lim.MaxNameLength)
	case e.ID == uuid.Nil:
		return fmt.Errorf("%w: id is required", ErrInvalid)
	case e.Resource.ID() == "":
		return fmt.Errorf("%w: Resources must include the prefect.resource.id label", ErrInvalid)
	case lim.MaxLabelsPerResource > 0 && len(e.Resource) > lim.MaxLabelsPerResource:
		return fmt.Errorf("%w: The maximum number of labels per resource is %d", ErrInvalid, lim.MaxLabelsPerResource)
	case lim.MaxRelatedResources > 0 && len(e.Related) > lim.MaxRelatedResources:
		return fmt.Errorf("%w: The maximum number of related resources is %d", ErrInvalid, lim.MaxRelatedResources)
	}
	for _, r := range e.Related {
		if r.ID() == "" {
			return fmt.Errorf("%w: Resources must include the prefect.resource.id label", ErrInvalid)
		}
		if r["prefect.resource.role"] == "" {
			return fmt.Errorf("%w: Related Resources must include the prefect.resource.role label", ErrInvalid)
		}
		if lim.MaxLabelsPerResource > 0 && len(r) > lim.MaxLabelsPerResource {
			return fmt.Errorf("%w: The maximum number of labels per resource is %d", ErrInvalid, lim.MaxLabelsPerResource)
		}
	}
	if e.Related == nil {
		e.Related = []Resource{}
	}
	if len(e.Payload) == 0 || string(e.Payload) == "null" {
		e.Payload = json.RawMessage("{}")
	}
	return nil
}

// Receive stamps the event with the server's receipt time.
func (e Event) Receive(now time.Time) ReceivedEvent {
	return ReceivedEvent{Event: e, Received: openapi.Time{Time: now.UTC().Truncate(time.Microsecond)}}
}

// NewMessage makes the events-topic message for e: the id (Prefect's
// deduplication key) and name as attributes, and e itself, which Bytes
// encodes only if a broker needs the JSON.
func NewMessage(e *ReceivedEvent) Message {
	return Message{Attributes: map[string]string{"id": e.ID.String(), "event": e.Event.Event}, Decoded: e}
}

// FromMessage returns the event an events-topic message carries: the
// publisher's own value when it is in this process, else Data decoded. The
// result may be shared with other consumers: read it, do not modify it.
func FromMessage(m Message) (*ReceivedEvent, error) {
	if e, ok := m.Decoded.(*ReceivedEvent); ok && e != nil {
		return e, nil
	}
	e := new(ReceivedEvent)
	if err := json.Unmarshal(m.Data, e); err != nil {
		return nil, err
	}
	return e, nil
}
