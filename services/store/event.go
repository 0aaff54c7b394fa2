package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/openapi"
	"github.com/prefect-go/prefect-server/services/events"
)

// EventFilter is Prefect's EventFilter (server/events/filters.py), the body
// of POST /events/filter and of the events websocket's filter message. Its
// JSON form is the wire form, so a page token can carry it.
type EventFilter struct {
	Occurred    EventOccurredFilter     `json:"occurred"`
	Event       *EventNameFilter        `json:"event,omitempty"`
	Resource    *EventResourceFilter    `json:"resource,omitempty"`
	Related     EventRelatedFilters     `json:"related,omitempty"`
	AnyResource EventAnyResourceFilters `json:"any_resource,omitempty"`
	ID          *EventIDFilter          `json:"id,omitempty"`
	Text        *EventTextFilter        `json:"text,omitempty"`
	// Order is "ASC" or "DESC"; "" means DESC, Prefect's default.
	Order string `json:"order,omitempty"`
}

// EventOccurredFilter bounds events.occurred, both ends inclusive. Zero
// bounds stand for Prefect's defaults, which depend on the clock: see
// WithDefaults.
type EventOccurredFilter struct {
	Since openapi.Time `json:"since,omitzero"`
	Until openapi.Time `json:"until,omitzero"`
}

// EventNameFilter filters by the event name.
type EventNameFilter struct {
	Prefix        []string `json:"prefix,omitempty"`
	ExcludePrefix []string `json:"exclude_prefix,omitempty"`
	Name          []string `json:"name,omitempty"`
	ExcludeName   []string `json:"exclude_name,omitempty"`
}

// EventResourceFilter filters by the primary resource.
type EventResourceFilter struct {
	ID       []string              `json:"id,omitempty"`
	IDPrefix []string              `json:"id_prefix,omitempty"`
	Labels   ResourceSpecification `json:"labels,omitempty"`
	// Distinct keeps one event per resource id: the first in the order.
	Distinct bool `json:"distinct,omitempty"`
}

// EventRelatedFilter filters by the related resources.
type EventRelatedFilter struct {
	ID               []string              `json:"id,omitempty"`
	Role             []string              `json:"role,omitempty"`
	ResourcesInRoles [][2]string           `json:"resources_in_roles,omitempty"`
	Labels           ResourceSpecification `json:"labels,omitempty"`
}

// EventAnyResourceFilter filters by any resource, primary or related.
type EventAnyResourceFilter struct {
	ID       []string              `json:"id,omitempty"`
	IDPrefix []string              `json:"id_prefix,omitempty"`
	Labels   ResourceSpecification `json:"labels,omitempty"`
}

// EventIDFilter filters by event id.
type EventIDFilter struct {
	ID []uuid.UUID `json:"id,omitempty"`
}

// EventTextFilter is the text search over the event name, resources and
// payload (the log search syntax: terms OR-ed, -term excluded, +term
// required, "quoted phrases").
type EventTextFilter struct {
	Query string `json:"query"`
}

// EventRelatedFilters is "one filter or a list of them" on the wire; every
// member must match.
type EventRelatedFilters []EventRelatedFilter

// UnmarshalJSON accepts an object or an array of objects.
func (f *EventRelatedFilters) UnmarshalJSON(b []byte) error {
	return oneOrMany(b, (*[]EventRelatedFilter)(f))
}

// EventAnyResourceFilters is "one filter or a list of them" on the wire;
// every member must match.
type EventAnyResourceFilters []EventAnyResourceFilter

// UnmarshalJSON accepts an object or an array of objects.
func (f *EventAnyResourceFilters) UnmarshalJSON(b []byte) error {
	return oneOrMany(b, (*[]EventAnyResourceFilter)(f))
}

func oneOrMany[T any](b []byte, out *[]T) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*out = nil
		return nil
	case len(b) > 0 && b[0] == '[':
		return strictDecode(b, out)
	}
	var one T
	if err := strictDecode(b, &one); err != nil {
		return err
	}
	*out = []T{one}
	return nil
}

// strictDecode refuses unknown fields, as Prefect's filter models
// (extra="forbid") do.
func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// ResourceSpecification maps a label to the patterns it may match: "*"
// and "?" are wildcards and a leading "!" negates. On the wire a value is a
// string or a list of strings.
type ResourceSpecification map[string][]string

// UnmarshalJSON accepts string or list values.
func (r *ResourceSpecification) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if raw == nil {
		*r = nil
		return nil
	}
	out := make(ResourceSpecification, len(raw))
	for k, v := range raw {
		var s string
		if err := json.Unmarshal(v, &s); err == nil {
			out[k] = []string{s}
			continue
		}
		var l []string
		if err := json.Unmarshal(v, &l); err != nil {
			return fmt.Errorf("label %q: must be a string or a list of strings", k)
		}
		out[k] = l
	}
	*r = out
	return nil
}

// UnmarshalJSON decodes strictly: unknown fields and a bad order are errors.
func (f *EventFilter) UnmarshalJSON(b []byte) error {
	type plain EventFilter
	var p plain
	if err := strictDecode(b, &p); err != nil {
		return err
	}
	switch p.Order {
	case "", "ASC", "DESC":
	default:
		return fmt.Errorf("order must be ASC or DESC, got %q", p.Order)
	}
	*f = EventFilter(p)
	return nil
}

// WithDefaults fills Prefect's clock-dependent defaults: occurred.since is
// the start of the UTC day 180 days ago, occurred.until is now, order DESC.
func (f EventFilter) WithDefaults(now time.Time) EventFilter {
	now = Truncate(now)
	if f.Occurred.Since.IsZero() {
		y, m, d := now.Date()
		f.Occurred.Since = openapi.Time{Time: time.Date(y, m, d, 0, 0, 0, 0, time.UTC).AddDate(0, 0, -180)}
	}
	if f.Occurred.Until.IsZero() {
		f.Occurred.Until = openapi.Time{Time: now}
	}
	if f.Order == "" {
		f.Order = "DESC"
	}
	return f
}

// EventQuery selects a page of events.
type EventQuery struct {
	// Filter must have its defaults filled (WithDefaults): the store does
	// not read the clock.
	Filter EventFilter
	Limit  int // <= 0: no limit
	Offset int // <= 0: from the first row
}

// EventCountQuery groups the events a filter matches, for
// POST /events/count-by/{countable}.
type EventCountQuery struct {
	// Filter must have its defaults filled (WithDefaults).
	Filter EventFilter
	// By is "event" (the event name), "resource" (the primary resource id)
	// or "time" (buckets of Bucket length counted from Pivot).
	By     string
	Pivot  time.Time
	Bucket time.Duration
}

// EventGroup is one group of CountEventsBy.
type EventGroup struct {
	// Value is the event name, the resource id, or the bucket's index
	// (floor((occurred - Pivot) / Bucket)) in decimal.
	Value string
	// Label is the event name, or the resource's display label (its
	// prefect.resource.name, else prefect.name, else its id); "" for time.
	// A resource whose name changed yields one group per label.
	Label          string
	Count          int64
	Oldest, Latest time.Time // of the group's occurred
}

// EventStore is the events half of Store (tables events and
// event_resources).
type EventStore interface {
	// InsertEvents writes the events and one event_resources row for the
	// primary and each related resource, as Prefect's write_events does, in
	// one transaction. Events whose id is already stored (or repeated in
	// the batch) are skipped with their resource rows. It returns how many
	// events were new.
	InsertEvents(ctx context.Context, evs []events.ReceivedEvent) (int, error)
	// ReadEvents returns one page ordered by occurred (then id) in the
	// filter's order; with resource.distinct only the first event of each
	// resource id.
	ReadEvents(ctx context.Context, q EventQuery) ([]events.ReceivedEvent, error)
	// CountEvents counts what ReadEvents would return without a limit.
	CountEvents(ctx context.Context, f EventFilter) (int64, error)
	// CountEventsBy groups the matching events by (value, label), in no
	// particular order; filter.ErrInvalid for an unknown By or a
	// non-positive Bucket.
	CountEventsBy(ctx context.Context, q EventCountQuery) ([]EventGroup, error)
}
