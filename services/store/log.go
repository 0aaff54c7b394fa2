package store

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/services/store/filter"
)

// Log is a row of table log.
type Log struct {
	ID        uuid.UUID
	Created   time.Time
	Updated   time.Time
	Name      string
	Level     int
	Message   string
	Timestamp time.Time
	FlowRunID *uuid.UUID
	TaskRunID *uuid.UUID
}

// LogCreate is one log line CreateLogs writes.
type LogCreate struct {
	Name      string
	Level     int
	Message   string
	Timestamp time.Time
	FlowRunID *uuid.UUID
	TaskRunID *uuid.UUID
}

// LogQuery selects a page of logs.
type LogQuery struct {
	Filter *filter.LogFilter // nil: every log
	Sort   string            // a LogSort enum value; "" means TIMESTAMP_ASC
	Limit  int               // <= 0: no limit
	Offset int               // <= 0: from the first row
}

// LogStore is the log half of Store (table log).
type LogStore interface {
	// CreateLogs inserts the lines in one transaction with as few
	// statements as the engine allows (the client batches its logs, so this
	// is a hot path) and returns them as stored, in input order. NUL
	// characters are removed from name and message, as Prefect does, rather
	// than failing the batch; a level outside the column's smallint range
	// is ErrInvalid. There are no foreign keys: logs may name runs the
	// server has not seen (yet).
	CreateLogs(ctx context.Context, in []LogCreate) ([]Log, error)
	// ReadLogs returns one page; filter.ErrInvalid-wrapped errors mean a bad
	// filter or sort.
	ReadLogs(ctx context.Context, q LogQuery) ([]Log, error)
	// LogFlowRunName is the name of the flow run whose logs are downloaded
	// (GET /flow_runs/{id}/logs/download names the file after it);
	// ErrNotFound when no flow run has the id.
	LogFlowRunName(ctx context.Context, flowRunID uuid.UUID) (string, error)
}
