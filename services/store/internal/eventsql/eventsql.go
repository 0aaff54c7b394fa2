// Package eventsql builds the dynamic statements that read the events table
// for an EventFilter, for both engines. The only dialect differences are
// placeholders, timestamp binding and JSON label extraction; everything else
// is shared so the two adapters cannot drift apart.
package eventsql

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
)

// Columns is the column list event reads select, in the order the adapters
// scan.
const Columns = "events.id, events.occurred, events.event, events.resource, events.related, events.payload, events.received, events.follows"

// Select builds the statement for one page of events.
func Select(d filter.Dialect, q store.EventQuery) (string, []any, error) {
	w := newWhere(d)
	cond := w.filter(q.Filter)
	if err := w.done(); err != nil {
		return "", nil, err
	}
	dir := "DESC"
	if q.Filter.Order == "ASC" {
		dir = "ASC"
	}
	order := "events.occurred " + dir + ", events.id " + dir
	var sb strings.Builder
	if q.Filter.Resource != nil && q.Filter.Resource.Distinct {
		// One event per resource: the first in the requested order, as
		// Prefect's row_number() window does.
		sb.WriteString("SELECT " + Columns + " FROM (SELECT events.*, row_number() OVER (PARTITION BY events.resource_id ORDER BY " + order + ") AS rn FROM events WHERE " + cond + ") AS events WHERE events.rn = 1")
	} else {
		sb.WriteString("SELECT " + Columns + " FROM events WHERE " + cond)
	}
	sb.WriteString(" ORDER BY " + order)
	switch {
	case q.Limit > 0:
		sb.WriteString(" LIMIT " + w.b.Bind(int64(q.Limit)))
	case q.Offset > 0 && d == filter.SQLite:
		sb.WriteString(" LIMIT -1")
	}
	if q.Offset > 0 {
		sb.WriteString(" OFFSET " + w.b.Bind(int64(q.Offset)))
	}
	return sb.String(), w.b.Args(), nil
}

// Count builds the statement counting the events Select would return.
func Count(d filter.Dialect, f store.EventFilter) (string, []any, error) {
	w := newWhere(d)
	cond := w.filter(f)
	if err := w.done(); err != nil {
		return "", nil, err
	}
	what := "count(*)"
	if f.Resource != nil && f.Resource.Distinct {
		what = "count(DISTINCT events.resource_id)"
	}
	return "SELECT " + what + " FROM events WHERE " + cond, w.b.Args(), nil
}

// CountBy builds the grouping statement of store.CountEventsBy; it selects
// value, label (both text), count, min(occurred) and max(occurred).
func CountBy(d filter.Dialect, q store.EventCountQuery) (string, []any, error) {
	w := newWhere(d)
	var value, label string
	switch q.By {
	case "event":
		value, label = "events.event", "events.event"
	case "resource":
		value = "events.resource_id"
		if d == filter.Postgres {
			label = "COALESCE(events.resource ->> 'prefect.resource.name', events.resource ->> 'prefect.name', events.resource_id)"
		} else {
			label = `COALESCE(json_extract(events.resource, '$."prefect.resource.name"'), json_extract(events.resource, '$."prefect.name"'), events.resource_id)`
		}
	case "time":
		if q.Bucket <= 0 {
			return "", nil, &invalid{"the bucket length must be positive"}
		}
		value, label = w.bucket(q.Pivot, q.Bucket), "''"
	default:
		return "", nil, &invalid{fmt.Sprintf("cannot count events by %q", q.By)}
	}
	// The value's parameters come first in the text, so they are bound
	// before the filter's.
	cond := w.filter(q.Filter)
	if err := w.done(); err != nil {
		return "", nil, err
	}
	return "SELECT " + value + " AS value, " + label + " AS label, count(*), min(events.occurred), max(events.occurred) FROM events WHERE " + cond + " GROUP BY 1, 2", w.b.Args(), nil
}

// bucket is the index of the bucket an event falls in, as text: Prefect's
// floor((occurred - pivot) / length) over epoch seconds.
func (w *where) bucket(pivot time.Time, length time.Duration) string {
	p, l := float64(pivot.UnixMicro())/1e6, length.Seconds()
	if w.d == filter.Postgres {
		return "CAST(floor((extract(epoch FROM events.occurred)::float8 - " + w.b.Bind(p) + "::float8) / " + w.b.Bind(l) + "::float8) AS bigint)::text"
	}
	// SQLite has no floor() unless built with the math functions:
	// floor(x) = trunc(x) - (x < trunc(x)).
	x := func() string {
		return "((unixepoch(events.occurred, 'subsec') - " + w.b.Bind(p) + ") / " + w.b.Bind(l) + ")"
	}
	return "CAST(CAST(" + x() + " AS INTEGER) - (" + x() + " < CAST(" + x() + " AS INTEGER)) AS TEXT)"
}

const (
	sqlTrue  = "1=1"
	sqlFalse = "1=0"
)

type where struct {
	d   filter.Dialect
	b   *filter.Builder
	err error
}

func newWhere(d filter.Dialect) *where { return &where{d: d, b: filter.NewBuilder(d)} }

func (w *where) fail(msg string) {
	if w.err == nil {
		w.err = &invalid{msg}
	}
}

type invalid struct{ msg string }

func (e *invalid) Error() string { return filter.ErrInvalid.Error() + ": " + e.msg }
func (e *invalid) Unwrap() error { return filter.ErrInvalid }

// maxArgs keeps statements under SQLite's bound-parameter limit (32766);
// PostgreSQL's is higher. A filter needing more is refused (422), not sent.
const maxArgs = 30000

// done reports the first error met while building, or a filter too large
// to bind.
func (w *where) done() error {
	if w.err == nil && len(w.b.Args()) > maxArgs {
		w.fail(fmt.Sprintf("too many values (%d parameters, at most %d)", len(w.b.Args()), maxArgs))
	}
	return w.err
}

func (w *where) str(s string) string {
	if w.d == filter.Postgres && strings.IndexByte(s, 0) >= 0 {
		w.fail("strings must not contain NUL characters")
	}
	return w.b.Bind(s)
}

func (w *where) time(t time.Time) string {
	if w.d == filter.SQLite {
		return w.b.Bind(filter.SQLiteTime(t))
	}
	return w.b.Bind(t.UTC())
}

func (w *where) uuid(u uuid.UUID) string {
	if w.d == filter.SQLite {
		return w.b.Bind(u.String())
	}
	return w.b.Bind(u)
}

func and(parts []string) string {
	switch len(parts) {
	case 0:
		return sqlTrue
	case 1:
		return parts[0]
	}
	return "(" + strings.Join(parts, " AND ") + ")"
}

func or(parts []string) string {
	switch len(parts) {
	case 0:
		return sqlFalse
	case 1:
		return parts[0]
	}
	return "(" + strings.Join(parts, " OR ") + ")"
}

func (w *where) in(col string, vals []string) string {
	if len(vals) == 0 {
		return sqlFalse
	}
	ph := make([]string, len(vals))
	for i, v := range vals {
		ph[i] = w.str(v)
	}
	return col + " IN (" + strings.Join(ph, ", ") + ")"
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// globEscaper is Prefect's translation of label patterns to LIKE: * and ?
// are the wildcards, LIKE's own are literal.
var globEscaper = strings.NewReplacer("*", "%", "?", "_", `\`, `\\`, `%`, `\%`, `_`, `\_`)

func (w *where) like(col, pattern string) string {
	return col + " LIKE " + w.str(pattern) + ` ESCAPE '\'`
}

func (w *where) startsWith(col, prefix string) string {
	return w.like(col, likeEscaper.Replace(prefix)+"%")
}

// glob matches a label pattern; a leading "!" negates it.
func (w *where) glob(col, pattern string) string {
	if rest, ok := strings.CutPrefix(pattern, "!"); ok {
		return "NOT (" + w.like(col, globEscaper.Replace(rest)) + ")"
	}
	return w.like(col, globEscaper.Replace(pattern))
}

// label is the text of one label of event_resources.resource, which holds
// a resource's labels without its id and role. It binds the label name, so
// call it once per use: SQLite's ? placeholders are consumed in text order.
func (w *where) label(name string) string {
	if w.d == filter.Postgres {
		return "(event_resources.resource ->> " + w.str(name) + ")"
	}
	if strings.ContainsAny(name, `"\`) {
		// Not expressible as an SQLite JSON path; no stored label can be
		// found this way, so the pattern matches nothing.
		return "NULL"
	}
	return "json_extract(event_resources.resource, " + w.str(`$."`+name+`"`) + ")"
}

// labels renders a ResourceSpecification over event_resources. The id and,
// when roles is set, the role are columns there rather than labels.
func (w *where) labels(spec store.ResourceSpecification, roles bool) []string {
	var parts []string
	// Sorted keys give the same statement (and plan cache entry) for the
	// same filter.
	keys := make([]string, 0, len(spec))
	for k := range spec {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		vals := spec[k]
		switch {
		case k == "prefect.resource.id":
			if len(vals) == 0 {
				continue
			}
			p := make([]string, len(vals))
			for i, v := range vals {
				p[i] = w.glob("event_resources.resource_id", v)
			}
			parts = append(parts, or(p))
		case k == "prefect.resource.role" && roles:
			if len(vals) == 0 {
				continue
			}
			parts = append(parts, w.in("event_resources.resource_role", vals))
		default:
			if len(vals) == 0 {
				// An empty list of values matches nothing, as in Prefect.
				parts = append(parts, sqlFalse)
				continue
			}
			p := make([]string, len(vals))
			for i, v := range vals {
				p[i] = w.glob(w.label(k), v)
			}
			parts = append(parts, or(p))
		}
	}
	return parts
}

// scoped selects events whose event_resources rows (limited to the
// filter's occurred window, which keeps the index on occurred useful) meet
// the conditions conds builds. The window is bound first because it comes
// first in the text.
func (w *where) scoped(f store.EventFilter, conds func() []string) string {
	window := []string{
		"event_resources.occurred >= " + w.time(f.Occurred.Since.Time),
		"event_resources.occurred <= " + w.time(f.Occurred.Until.Time),
	}
	return "events.id IN (SELECT event_resources.event_id FROM event_resources WHERE " + strings.Join(append(window, conds()...), " AND ") + ")"
}

func (w *where) filter(f store.EventFilter) string {
	var parts []string
	if !f.Occurred.Since.IsZero() {
		parts = append(parts, "events.occurred >= "+w.time(f.Occurred.Since.Time))
	}
	if !f.Occurred.Until.IsZero() {
		parts = append(parts, "events.occurred <= "+w.time(f.Occurred.Until.Time))
	}
	if f.Occurred.Since.IsZero() || f.Occurred.Until.IsZero() {
		w.fail("occurred.since and occurred.until must be set (EventFilter.WithDefaults)")
		return sqlFalse
	}
	if e := f.Event; e != nil {
		if len(e.Prefix) > 0 {
			p := make([]string, len(e.Prefix))
			for i, v := range e.Prefix {
				p[i] = w.startsWith("events.event", v)
			}
			parts = append(parts, or(p))
		}
		for _, v := range e.ExcludePrefix {
			parts = append(parts, "NOT ("+w.startsWith("events.event", v)+")")
		}
		if len(e.Name) > 0 {
			parts = append(parts, w.in("events.event", e.Name))
		}
		if len(e.ExcludeName) > 0 {
			parts = append(parts, "NOT ("+w.in("events.event", e.ExcludeName)+")")
		}
	}
	if r := f.Resource; r != nil {
		if len(r.ID) > 0 {
			parts = append(parts, w.in("events.resource_id", r.ID))
		}
		if len(r.IDPrefix) > 0 {
			p := make([]string, len(r.IDPrefix))
			for i, v := range r.IDPrefix {
				p[i] = w.startsWith("events.resource_id", v)
			}
			parts = append(parts, or(p))
		}
		if len(r.Labels) > 0 {
			// The primary resource is the event_resources row without a role;
			// a role label is looked up among its (role-less) labels and so
			// never matches, as in Prefect.
			parts = append(parts, w.scoped(f, func() []string {
				return append([]string{"event_resources.resource_role = ''"}, w.labels(r.Labels, false)...)
			}))
		}
	}
	for _, r := range f.Related {
		if len(r.ID) == 0 && len(r.Role) == 0 && len(r.ResourcesInRoles) == 0 && len(r.Labels) == 0 {
			continue
		}
		parts = append(parts, w.scoped(f, func() []string {
			var conds []string
			if len(r.ID) > 0 {
				conds = append(conds, w.in("event_resources.resource_id", r.ID))
			}
			if len(r.Role) > 0 {
				conds = append(conds, w.in("event_resources.resource_role", r.Role))
			}
			if len(r.ResourcesInRoles) > 0 {
				p := make([]string, len(r.ResourcesInRoles))
				for i, pair := range r.ResourcesInRoles {
					p[i] = "(event_resources.resource_id = " + w.str(pair[0]) + " AND event_resources.resource_role = " + w.str(pair[1]) + ")"
				}
				conds = append(conds, or(p))
			}
			if len(r.Labels) > 0 {
				conds = append(conds, and(w.labels(r.Labels, true)))
			}
			if len(r.Role) == 0 {
				// Searching related resources: leave out the primary one.
				conds = append(conds, "event_resources.resource_role <> ''")
			}
			return conds
		}))
	}
	for _, r := range f.AnyResource {
		if len(r.ID) == 0 && len(r.IDPrefix) == 0 && len(r.Labels) == 0 {
			continue
		}
		parts = append(parts, w.scoped(f, func() []string {
			var conds []string
			if len(r.ID) > 0 {
				conds = append(conds, w.in("event_resources.resource_id", r.ID))
			}
			if len(r.IDPrefix) > 0 {
				p := make([]string, len(r.IDPrefix))
				for i, v := range r.IDPrefix {
					p[i] = w.startsWith("event_resources.resource_id", v)
				}
				conds = append(conds, or(p))
			}
			if len(r.Labels) > 0 {
				conds = append(conds, and(w.labels(r.Labels, true)))
			}
			return conds
		}))
	}
	if f.ID != nil && len(f.ID.ID) > 0 {
		ph := make([]string, len(f.ID.ID))
		for i, id := range f.ID.ID {
			ph[i] = w.uuid(id)
		}
		parts = append(parts, "events.id IN ("+strings.Join(ph, ", ")+")")
	}
	if f.Text != nil {
		parts = append(parts, w.text(f.Text.Query)...)
	}
	return and(parts)
}

// text is Prefect's event text search: the terms are looked for,
// case-insensitively, in the name, the resource and related JSON and the
// payload JSON.
func (w *where) text(query string) []string {
	if strings.TrimSpace(query) == "" {
		return nil
	}
	field := "lower(events.event || ' ' || events.resource || ' ' || events.related || ' ' || events.payload)"
	if w.d == filter.Postgres {
		field = "lower(concat(events.event, ' ', events.resource::text, ' ', events.related::text, ' ', events.payload::text))"
	}
	match := func(term string) string {
		return field + " LIKE " + w.str("%"+likeEscaper.Replace(strings.ToLower(term))+"%") + ` ESCAPE '\'`
	}
	q := filter.ParseTextSearch(query)
	var parts []string
	if len(q.Include) > 0 {
		p := make([]string, len(q.Include))
		for i, t := range q.Include {
			p[i] = match(t)
		}
		parts = append(parts, or(p))
	}
	for _, t := range q.Exclude {
		parts = append(parts, "NOT ("+match(t)+")")
	}
	for _, t := range q.Required {
		parts = append(parts, match(t))
	}
	return parts
}
