package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/gen/db/sqlitedb"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
	"github.com/prefect-go/prefect-server/services/store/internal/rowcodec"
)

const logColumns = "log.id, log.created, log.updated, log.name, log.level, log.flow_run_id, log.task_run_id, log.message, log.timestamp"

// maxParams keeps multi-row statements under SQLite's bound-parameter limit
// (32766 since 3.32) with room to spare.
const maxParams = 30000

// CreateLogs implements store.Store. sqlc cannot express a multi-row VALUES
// list, so the statement is built here; one statement carries as many rows
// as the parameter limit allows, all in one writer transaction.
func (s *Store) CreateLogs(ctx context.Context, in []store.LogCreate) ([]store.Log, error) {
	if len(in) == 0 {
		return []store.Log{}, nil
	}
	now := store.Now()
	nowText := formatTime(now)
	out := make([]store.Log, len(in))
	for i, l := range in {
		if l.Level < math.MinInt16 || l.Level > math.MaxInt16 {
			return nil, fmt.Errorf("%w: log level %d is out of range", store.ErrInvalid, l.Level)
		}
		// Stripped as Prefect does, so a line reads the same on both engines;
		// time-ordered ids (as Prefect 3.9 gives logs) keep the key index
		// appending.
		out[i] = store.Log{
			ID: uuid.Must(uuid.NewV7()), Created: now, Updated: now,
			Name:      strings.ReplaceAll(l.Name, "\x00", ""),
			Level:     l.Level,
			Message:   strings.ReplaceAll(l.Message, "\x00", ""),
			Timestamp: store.Truncate(l.Timestamp),
			FlowRunID: l.FlowRunID,
			TaskRunID: l.TaskRunID,
		}
	}
	const cols = 9
	const head = "INSERT INTO log (id, created, updated, name, level, flow_run_id, task_run_id, message, timestamp) VALUES "
	err := s.write(ctx, func(ctx context.Context, _ *sqlitedb.Queries, tx *sql.Tx) error {
		for rest := out; len(rest) > 0; {
			batch := rest[:min(len(rest), maxParams/cols)]
			rest = rest[len(batch):]
			var sb strings.Builder
			sb.WriteString(head)
			args := make([]any, 0, len(batch)*cols)
			for i, l := range batch {
				if i > 0 {
					sb.WriteString(", ")
				}
				sb.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?)")
				args = append(args, l.ID.String(), nowText, nowText, l.Name, l.Level,
					nullUUID(l.FlowRunID), nullUUID(l.TaskRunID), l.Message, formatTime(l.Timestamp))
			}
			if _, err := tx.ExecContext(ctx, sb.String(), args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func nullUUID(u *uuid.UUID) sql.NullString {
	if u == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: u.String(), Valid: true}
}

func parseNullUUID(s sql.NullString) (*uuid.UUID, error) {
	if !s.Valid {
		return nil, nil
	}
	u, err := uuid.Parse(s.String)
	if err != nil {
		return nil, fmt.Errorf("stored uuid %q: %w", s.String, err)
	}
	return &u, nil
}

// ReadLogs implements store.Store.
func (s *Store) ReadLogs(ctx context.Context, q store.LogQuery) ([]store.Log, error) {
	b := filter.NewBuilder(filter.SQLite)
	where, err := b.LogWhere(q.Filter)
	if err != nil {
		return nil, err
	}
	order, err := filter.LogOrderBy(q.Sort)
	if err != nil {
		return nil, err
	}
	var sb strings.Builder
	sb.WriteString("SELECT " + logColumns + " FROM log WHERE " + where)
	rowcodec.Page(&sb, b, order, q.Limit, q.Offset)
	rows, err := s.reader.QueryContext(ctx, sb.String(), b.Args()...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	out := []store.Log{}
	for rows.Next() {
		var (
			l                        store.Log
			id, created, updated, ts string
			flowRunID, taskRunID     sql.NullString
		)
		if err := rows.Scan(&id, &created, &updated, &l.Name, &l.Level, &flowRunID, &taskRunID, &l.Message, &ts); err != nil {
			return nil, mapErr(err)
		}
		if l.ID, err = uuid.Parse(id); err != nil {
			return nil, fmt.Errorf("log id %q: %w", id, err)
		}
		if l.Created, err = parseTime(created); err != nil {
			return nil, err
		}
		if l.Updated, err = parseTime(updated); err != nil {
			return nil, err
		}
		if l.Timestamp, err = parseTime(ts); err != nil {
			return nil, err
		}
		if l.FlowRunID, err = parseNullUUID(flowRunID); err != nil {
			return nil, err
		}
		if l.TaskRunID, err = parseNullUUID(taskRunID); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, mapErr(rows.Err())
}

// LogFlowRunName implements store.Store.
func (s *Store) LogFlowRunName(ctx context.Context, flowRunID uuid.UUID) (string, error) {
	name, err := s.rq.GetLogFlowRunName(ctx, flowRunID.String())
	if err != nil {
		return "", notFound(err, "flow run")
	}
	return name, nil
}
