package postgres

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/prefect-go/prefect-server/gen/db/pgdb"
	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
	"github.com/prefect-go/prefect-server/services/store/internal/eventsql"
)

// InsertEvents implements store.Store.
func (s *Store) InsertEvents(ctx context.Context, evs []events.ReceivedEvent) (int, error) {
	rows, resources, err := eventsql.Encode(evs)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	for _, r := range rows {
		if err := checkText(r.Event + r.ResourceID); err != nil {
			return 0, err
		}
	}
	now := store.Now()
	ev := pgdb.InsertEventsParams{Recorded: now}
	for _, r := range rows {
		ev.Ids = append(ev.Ids, r.ID)
		ev.Occurred = append(ev.Occurred, r.Occurred)
		ev.Events = append(ev.Events, r.Event)
		ev.ResourceIds = append(ev.ResourceIds, r.ResourceID)
		ev.Resources = append(ev.Resources, r.Resource)
		ev.RelatedResourceIds = append(ev.RelatedResourceIds, r.RelatedResourceIDs)
		ev.Related = append(ev.Related, r.Related)
		ev.Payloads = append(ev.Payloads, r.Payload)
		ev.Received = append(ev.Received, r.Received)
		ev.Follows = append(ev.Follows, uuidText(r.Follows))
	}
	var inserted []uuid.UUID
	err = s.inTx(ctx, func(q *pgdb.Queries, _ pgx.Tx) error {
		var err error
		if inserted, err = q.InsertEvents(ctx, ev); err != nil || len(inserted) == 0 {
			return err
		}
		res := pgdb.InsertEventResourcesParams{Created: now}
		for _, id := range inserted {
			for _, r := range resources[id] {
				res.Ids = append(res.Ids, r.ID)
				res.Occurred = append(res.Occurred, r.Occurred)
				res.ResourceIds = append(res.ResourceIds, r.ResourceID)
				res.ResourceRoles = append(res.ResourceRoles, r.Role)
				res.Resources = append(res.Resources, r.Resource)
				res.EventIds = append(res.EventIds, r.EventID)
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
