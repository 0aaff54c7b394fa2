// Package store is the server's persistence boundary: domain types and one
// Store interface, implemented by the PostgreSQL adapter
// (services/store/postgres) and the SQLite adapter (services/store/sqlite).
// Both adapters pass the same conformance suite (services/store/storetest);
// services/store/open picks one from a Prefect database URL.
//
// Conventions every method follows:
//   - timestamps are UTC, truncated to microseconds before they are written, so
//     what a caller reads back equals what it wrote;
//   - missing rows are ErrNotFound, input the database cannot hold is
//     ErrInvalid, a database that is busy or unreachable is ErrUnavailable;
//     callers map these to 404, 422 and 503 (never 500);
//   - JSON arrays (tags) are never nil in results; JSON objects that may be
//     SQL NULL (labels) are nil exactly when the column is NULL.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/prefect-go/prefect-server/services/store/filter"
)

// Sentinel errors; adapters wrap them with detail, so test with errors.Is.
var (
	ErrNotFound    = errors.New("not found")
	ErrConflict    = errors.New("conflict")
	ErrInvalid     = errors.New("invalid input")
	ErrUnavailable = errors.New("database unavailable")
)

// Store is the persistence interface the services and HTTP handlers use:
// connection housekeeping plus one embedded interface per resource, so
// that each table's methods live (and grow) in their own file.
type Store interface {
	// Ping runs a trivial query (readiness).
	Ping(ctx context.Context) error
	// Close releases the connections; the Store is unusable afterwards.
	Close() error
	// Dialect tells which SQL flavour the filter builder must emit.
	Dialect() filter.Dialect

	FlowStore
	FlowRunStore
	TaskRunStore
	LogStore
	EventStore
}

// Now is the write timestamp: UTC at the microsecond precision both engines
// keep.
func Now() time.Time { return Truncate(time.Now()) }

// Truncate brings t to the stored precision and zone.
func Truncate(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
