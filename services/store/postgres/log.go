package postgres

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/gen/db/pgdb"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
	"github.com/prefect-go/prefect-server/services/store/internal/rowcodec"
)

const logColumns = "log.id, log.created, log.updated, log.name, log.level, log.flow_run_id, log.task_run_id, log.message, log.timestamp"

// CreateLogs implements store.Store.
func (s *Store) CreateLogs(ctx context.Context, in []store.LogCreate) ([]store.Log, error) {
	if len(in) == 0 {
		return []store.Log{}, nil
	}
	now := store.Now()
	out := make([]store.Log, len(in))
	arg := pgdb.InsertLogsParams{
		Created:    now,
		Ids:        make([]uuid.UUID, len(in)),
		Names:      make([]string, len(in)),
		Levels:     make([]int16, len(in)),
		FlowRunIds: make([]string, len(in)),
		TaskRunIds: make([]string, len(in)),
		Messages:   make([]string, len(in)),
		Timestamps: make([]time.Time, len(in)),
	}
	for i, l := range in {
		if l.Level < math.MinInt16 || l.Level > math.MaxInt16 {
			return nil, fmt.Errorf("%w: log level %d is out of range", store.ErrInvalid, l.Level)
		}
		// PostgreSQL text cannot hold NUL; Prefect strips it rather than
		// losing the line.
		name := strings.ReplaceAll(l.Name, "\x00", "")
		msg := strings.ReplaceAll(l.Message, "\x00", "")
		// Time-ordered ids, as Prefect 3.9 gives logs, keep the primary key
		// index appending rather than splitting pages.
		id := uuid.Must(uuid.NewV7())
		arg.Ids[i] = id
		arg.Names[i] = name
		arg.Levels[i] = int16(l.Level)
		arg.FlowRunIds[i] = uuidText(l.FlowRunID)
		arg.TaskRunIds[i] = uuidText(l.TaskRunID)
		arg.Messages[i] = msg
		arg.Timestamps[i] = store.Truncate(l.Timestamp)
		out[i] = store.Log{
			ID: id, Created: now, Updated: now, Name: name, Level: l.Level, Message: msg,
			Timestamp: arg.Timestamps[i], FlowRunID: l.FlowRunID, TaskRunID: l.TaskRunID,
		}
	}
	// One statement is one implicit transaction: the batch is all or nothing.
	if err := s.q.InsertLogs(ctx, arg); err != nil {
		return nil, mapErr(err)
	}
	return out, nil
}

func uuidText(u *uuid.UUID) string {
	if u == nil {
		return ""
	}
	return u.String()
}

// ReadLogs implements store.Store.
func (s *Store) ReadLogs(ctx context.Context, q store.LogQuery) ([]store.Log, error) {
	b := filter.NewBuilder(filter.Postgres)
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
	rows, err := s.pool.Query(ctx, sb.String(), b.Args()...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	out := []store.Log{}
	for rows.Next() {
		var l store.Log
		var level int16
		var flowRunID, taskRunID uuid.NullUUID
		if err := rows.Scan(&l.ID, &l.Created, &l.Updated, &l.Name, &level, &flowRunID, &taskRunID, &l.Message, &l.Timestamp); err != nil {
			return nil, mapErr(err)
		}
		l.Level = int(level)
		l.Created, l.Updated, l.Timestamp = store.Truncate(l.Created), store.Truncate(l.Updated), store.Truncate(l.Timestamp)
		if flowRunID.Valid {
			l.FlowRunID = &flowRunID.UUID
		}
		if taskRunID.Valid {
			l.TaskRunID = &taskRunID.UUID
		}
		out = append(out, l)
	}
	return out, mapErr(rows.Err())
}

// LogFlowRunName implements store.Store.
func (s *Store) LogFlowRunName(ctx context.Context, flowRunID uuid.UUID) (string, error) {
	name, err := s.q.GetLogFlowRunName(ctx, flowRunID)
	if err != nil {
		return "", notFound(err, "flow run")
	}
	return name, nil
}
