package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"
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

// insertChunk is the most rows one INSERT carries. A batch goes out in
// chunks of insertChunk rows and then of the powers of two below it, so
// that a few statement texts, prepared once (see stmtCache), serve every
// batch size: compiling a multi-row INSERT for each batch cost more than
// running it.
const (
	insertChunkLog = 8
	insertChunk    = 1 << insertChunkLog
)

// eventInsertTexts[i] and resourceInsertTexts[i] insert 1<<i rows.
var eventInsertTexts, resourceInsertTexts = func() (ev, res [insertChunkLog + 1]string) {
	for i := range ev {
		ev[i] = multiRowInsert(eventInsertHead, eventInsertCols, 1<<i) + " ON CONFLICT (id) DO NOTHING RETURNING id"
		res[i] = multiRowInsert(resourceInsertHead, resourceInsertCols, 1<<i)
	}
	return ev, res
}()

func multiRowInsert(head string, cols, rows int) string {
	tuple := "(?" + strings.Repeat(", ?", cols-1) + ")"
	return head + tuple + strings.Repeat(", "+tuple, rows-1)
}

// chunk returns how many of n remaining rows the next statement takes and
// the index of its text.
func chunk(n int) (rows, text int) {
	text = min(bits.Len(uint(n))-1, insertChunkLog)
	return 1 << text, text
}

// InsertEvents implements store.Store. ON CONFLICT DO NOTHING with
// RETURNING tells which events were new (Prefect selects the existing ids
// first; inside the single writer transaction both are equivalent), and
// only those get their event_resources rows. The statements go through the
// writer's statement cache, which suits them: each one's rows are read to
// the end before it runs again.
func (s *Store) InsertEvents(ctx context.Context, evs []events.ReceivedEvent) (int, error) {
	rows, err := eventsql.Encode(evs)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	// Every argument is made before the writer is taken: the writer is
	// the one resource all writes wait for.
	now := formatTime(store.Now())
	ids := make([]string, len(rows))
	evArgs := make([]any, 0, len(rows)*eventInsertCols)
	var resArgs []any
	resStart := make([]int, len(rows)+1) // event i's resource rows are resArgs[resStart[i]:resStart[i+1]]
	for i := range rows {
		r := &rows[i]
		ids[i] = r.ID.String()
		occurred := formatTime(r.Occurred)
		evArgs = append(evArgs, ids[i], occurred, r.Event, r.ResourceID, r.Resource,
			r.RelatedResourceIDs, r.Related, r.Payload, formatTime(r.Received), now, nullUUID(r.Follows), now, now)
		resStart[i] = len(resArgs)
		for _, rr := range r.Resources {
			resArgs = append(resArgs, rr.ID.String(), occurred, rr.ResourceID, rr.Role, rr.Resource, ids[i], now, now)
		}
	}
	resStart[len(rows)] = len(resArgs)

	inserted := 0
	// The persister's batches yield to the API's writes (writeBackground).
	err = s.writeBackground(ctx, func(ctx context.Context, _ *sqlitedb.Queries, tx *sql.Tx) error {
		exec := cachedTx{c: s.wc, tx: tx}
		// The resource rows of the events that were new; all of them
		// unless some events were stored before.
		res := resArgs
		var isNew map[string]bool
		for done := 0; done < len(rows); {
			n, text := chunk(len(rows) - done)
			got, err := queryStrings(ctx, exec, eventInsertTexts[text], evArgs[done*eventInsertCols:(done+n)*eventInsertCols])
			if err != nil {
				return err
			}
			inserted += len(got)
			if len(got) < n {
				if isNew == nil {
					isNew = make(map[string]bool, len(rows))
					// Keep the rows of the chunks before, all new.
					res = append(make([]any, 0, len(resArgs)), resArgs[:resStart[done]]...)
				}
				for _, id := range got {
					isNew[id] = true
				}
				for i := done; i < done+n; i++ {
					if isNew[ids[i]] {
						res = append(res, resArgs[resStart[i]:resStart[i+1]]...)
					}
				}
			} else if isNew != nil {
				res = append(res, resArgs[resStart[done]:resStart[done+n]]...)
			}
			done += n
		}
		for len(res) > 0 {
			n, text := chunk(len(res) / resourceInsertCols)
			if _, err := exec.ExecContext(ctx, resourceInsertTexts[text], res[:n*resourceInsertCols]...); err != nil {
				return err
			}
			res = res[n*resourceInsertCols:]
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return inserted, nil
}

// queryStrings runs query and reads its one text column to the end.
func queryStrings(ctx context.Context, q cachedTx, query string, args []any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
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
