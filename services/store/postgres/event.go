package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/prefect-go/prefect-server/gen/db/pgdb"
	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
	"github.com/prefect-go/prefect-server/services/store/internal/eventsql"
)

// InsertEvents implements store.Store: two statements over parallel arrays
// in one transaction, whatever the batch size.
func (s *Store) InsertEvents(ctx context.Context, evs []events.ReceivedEvent) (int, error) {
	rows, err := eventsql.Encode(evs)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	for _, r := range rows {
		if err := checkText(r.Event + r.ResourceID); err != nil {
			return 0, err
		}
	}
	now := store.Now()
	n := len(rows)
	ev := pgdb.InsertEventsParams{
		Recorded:           now,
		Ids:                make([]string, n),
		Occurred:           make([]time.Time, n),
		Events:             make([]string, n),
		ResourceIds:        make([]string, n),
		Resources:          make([]string, n),
		RelatedResourceIds: make([]string, n),
		Related:            make([]string, n),
		Payloads:           make([]string, n),
		Received:           make([]time.Time, n),
		Follows:            make([]string, n),
	}
	byID := make(map[string]int, n)
	for i, r := range rows {
		id := r.ID.String()
		byID[id] = i
		ev.Ids[i], ev.Occurred[i], ev.Events[i], ev.ResourceIds[i] = id, r.Occurred, r.Event, r.ResourceID
		ev.Resources[i], ev.RelatedResourceIds[i], ev.Related[i] = r.Resource, r.RelatedResourceIDs, r.Related
		ev.Payloads[i], ev.Received[i], ev.Follows[i] = r.Payload, r.Received, uuidText(r.Follows)
	}
	var inserted []string
	err = s.inTx(ctx, func(q *pgdb.Queries, _ pgx.Tx) error {
		var err error
		if inserted, err = q.InsertEvents(ctx, ev); err != nil || len(inserted) == 0 {
			return err
		}
		var res pgdb.InsertEventResourcesParams
		res.Created = now
		for _, id := range inserted {
			i, ok := byID[id]
			if !ok {
				return fmt.Errorf("insert events: unexpected id %q returned", id)
			}
			r := &rows[i]
			for _, rr := range r.Resources {
				res.Ids = append(res.Ids, rr.ID.String())
				res.Occurred = append(res.Occurred, r.Occurred)
				res.ResourceIds = append(res.ResourceIds, rr.ResourceID)
				res.ResourceRoles = append(res.ResourceRoles, rr.Role)
				res.Resources = append(res.Resources, rr.Resource)
				res.EventIds = append(res.EventIds, ev.Ids[i])
			}
		}
		return q.InsertEventResources(ctx, res)
	})
	if err != nil {
		return 0, err
	}
	return len(inserted), nil
}

// ReadEvents implements store.Store.
func (s *Store) ReadEvents(ctx context.Context, q store.EventQuery) ([]events.ReceivedEvent, error) {
	query, args, err := eventsql.Select(filter.Postgres, q)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	out := []events.ReceivedEvent{}
	for rows.Next() {
		var (
			id                         uuid.UUID
			occurred, received         time.Time
			name                       string
			resource, related, payload []byte
			follows                    uuid.NullUUID
		)
		if err := rows.Scan(&id, &occurred, &name, &resource, &related, &payload, &received, &follows); err != nil {
			return nil, mapErr(err)
		}
		var f *uuid.UUID
		if follows.Valid {
			f = &follows.UUID
		}
		e, err := eventsql.Decode(id, occurred, name, resource, related, payload, received, f)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, mapErr(rows.Err())
}

// CountEvents implements store.Store.
func (s *Store) CountEvents(ctx context.Context, f store.EventFilter) (int64, error) {
	query, args, err := eventsql.Count(filter.Postgres, f)
	if err != nil {
		return 0, err
	}
	var n int64
	return n, mapErr(s.pool.QueryRow(ctx, query, args...).Scan(&n))
}

// CountEventsBy implements store.Store.
func (s *Store) CountEventsBy(ctx context.Context, q store.EventCountQuery) ([]store.EventGroup, error) {
	query, args, err := eventsql.CountBy(filter.Postgres, q)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	out := []store.EventGroup{}
	for rows.Next() {
		var g store.EventGroup
		if err := rows.Scan(&g.Value, &g.Label, &g.Count, &g.Oldest, &g.Latest); err != nil {
			return nil, mapErr(err)
		}
		g.Oldest, g.Latest = store.Truncate(g.Oldest), store.Truncate(g.Latest)
		out = append(out, g)
	}
	return out, mapErr(rows.Err())
}
