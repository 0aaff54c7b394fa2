package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/gen/db/sqlitedb"
	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
	"github.com/prefect-go/prefect-server/services/store/internal/eventsql"
)

const (
	eventInsertHead    = "INSERT INTO events (id, occurred, event, resource_id, resource, related_resource_ids, related, payload, received, recorded, follows, created, updated) VALUES "
	eventInsertCols    = 13
	resourceInsertHead = "INSERT INTO event_resources (id, occurred, resource_id, resource_role, resource, event_id, created, updated) VALUES "
	resourceInsertCols = 8
)

// InsertEvents implements store.Store. The statements are built here
// because sqlc cannot express multi-row VALUES lists; ON CONFLICT DO NOTHING
// with RETURNING tells which events were new (Prefect selects the existing
// ids first; inside the single writer transaction both are equivalent).
func (s *Store) InsertEvents(ctx context.Context, evs []events.ReceivedEvent) (int, error) {
	rows, resources, err := eventsql.Encode(evs)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	now := formatTime(store.Now())
	inserted := 0
	err = s.write(ctx, func(ctx context.Context, _ *sqlitedb.Queries, tx *sql.Tx) error {
		var res []eventsql.ResourceRow
		for rest := rows; len(rest) > 0; {
			batch := rest[:min(len(rest), maxParams/eventInsertCols)]
			rest = rest[len(batch):]
			var sb strings.Builder
			sb.WriteString(eventInsertHead)
			args := make([]any, 0, len(batch)*eventInsertCols)
			for i, r := range batch {
				if i > 0 {
					sb.WriteString(", ")
				}
				sb.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
				args = append(args, r.ID.String(), formatTime(r.Occurred), r.Event, r.ResourceID, r.Resource,
					r.RelatedResourceIDs, r.Related, r.Payload, formatTime(r.Received), now, nullUUID(r.Follows), now, now)
			}
			sb.WriteString(" ON CONFLICT (id) DO NOTHING RETURNING id")
			ids, err := queryStrings(ctx, tx, sb.String(), args)
			if err != nil {
				return err
			}
			for _, id := range ids {
				u, err := uuid.Parse(id)
				if err != nil {
					return fmt.Errorf("event id %q: %w", id, err)
				}
				res = append(res, resources[u]...)
			}
			inserted += len(ids)
		}
		for len(res) > 0 {
			batch := res[:min(len(res), maxParams/resourceInsertCols)]
			res = res[len(batch):]
			var sb strings.Builder
			sb.WriteString(resourceInsertHead)
			args := make([]any, 0, len(batch)*resourceInsertCols)
			for i, r := range batch {
				if i > 0 {
					sb.WriteString(", ")
				}
				sb.WriteString("(?, ?, ?, ?, ?, ?, ?, ?)")
				args = append(args, r.ID.String(), formatTime(r.Occurred), r.ResourceID, r.Role, r.Resource, r.EventID.String(), now, now)
			}
			if _, err := tx.ExecContext(ctx, sb.String(), args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return inserted, nil
}

func queryStrings(ctx context.Context, tx *sql.Tx, query string, args []any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, s)
	}
	return out, errors.Join(rows.Err(), rows.Close())
}

// ReadEvents implements store.Store.
func (s *Store) ReadEvents(ctx context.Context, q store.EventQuery) ([]events.ReceivedEvent, error) {
	query, args, err := eventsql.Select(filter.SQLite, q)
	if err != nil {
		return nil, err
	}
	rows, err := s.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	out := []events.ReceivedEvent{}
	for rows.Next() {
		var (
			id, occurred, name, received string
			resource, related, payload   string
			follows                      sql.NullString
		)
		if err := rows.Scan(&id, &occurred, &name, &resource, &related, &payload, &received, &follows); err != nil {
			return nil, mapErr(err)
		}
		u, err := uuid.Parse(id)
		if err != nil {
			return nil, fmt.Errorf("event id %q: %w", id, err)
		}
		occ, err := parseTime(occurred)
		if err != nil {
			return nil, err
		}
		rec, err := parseTime(received)
		if err != nil {
			return nil, err
		}
		f, err := parseNullUUID(follows)
		if err != nil {
			return nil, err
		}
		e, err := eventsql.Decode(u, occ, name, []byte(resource), []byte(related), []byte(payload), rec, f)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, mapErr(rows.Err())
}

// CountEvents implements store.Store.
func (s *Store) CountEvents(ctx context.Context, f store.EventFilter) (int64, error) {
	query, args, err := eventsql.Count(filter.SQLite, f)
	if err != nil {
		return 0, err
	}
	var n int64
	return n, mapErr(s.reader.QueryRowContext(ctx, query, args...).Scan(&n))
}

// CountEventsBy implements store.Store.
func (s *Store) CountEventsBy(ctx context.Context, q store.EventCountQuery) ([]store.EventGroup, error) {
	query, args, err := eventsql.CountBy(filter.SQLite, q)
	if err != nil {
		return nil, err
	}
	rows, err := s.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	out := []store.EventGroup{}
	for rows.Next() {
		var g store.EventGroup
		var oldest, latest string
		if err := rows.Scan(&g.Value, &g.Label, &g.Count, &oldest, &latest); err != nil {
			return nil, mapErr(err)
		}
		if g.Oldest, err = parseTime(oldest); err != nil {
			return nil, err
		}
		if g.Latest, err = parseTime(latest); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, mapErr(rows.Err())
}
