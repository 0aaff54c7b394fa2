// Package sqlite is the SQLite adapter of store.Store (mattn/go-sqlite3).
//
// Python Prefect's best-known failure on SQLite is "database is locked" under
// concurrent writers. This adapter cannot produce it: every write goes
// through ONE writer connection (a *sql.DB capped at one connection, so
// writers queue in Go, not in SQLite's busy handler), each in one short
// BEGIN IMMEDIATE transaction; reads use a separate query_only pool that WAL
// lets run beside the writer. The busy timeout remains for other processes
// sharing the file.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/mattn/go-sqlite3"

	"github.com/prefect-go/prefect-server/gen/db/sqlitedb"
	"github.com/prefect-go/prefect-server/migrations"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
)

// TimeLayout is the stored timestamp format (see migrations/sqlite).
const TimeLayout = filter.SQLiteTimeLayout

// Memory is the path that selects a private in-memory database.
const Memory = ":memory:"

// busyTimeout bounds how long a statement waits for another process's lock
// before failing with ErrUnavailable (HTTP 503, which the client retries).
const busyTimeout = 10 * time.Second

// Store implements store.Store on SQLite.
type Store struct {
	writer *sql.DB // exactly one connection
	reader *sql.DB // query_only pool; the writer itself for :memory:
	wq     *sqlitedb.Queries
	rq     *sqlitedb.Queries
	// wc and rc hold the prepared sqlc statements of writer and reader
	// (the same cache for :memory:, where they are one pool).
	wc *stmtCache
	rc *stmtCache
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path, or a private
// in-memory database for Memory, and applies pending migrations.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	mem := path == Memory
	var writerDSN, readerDSN string
	if mem {
		// A private in-memory database per Open, served by the one writer
		// connection for reads too: a shared cache would let readers meet
		// table locks (SQLITE_LOCKED) that no busy timeout waits out.
		writerDSN = "file:memdb-" + uuid.NewString() + "?mode=memory&_foreign_keys=on&_txlock=immediate"
	} else {
		// Like Prefect, which creates PREFECT_HOME, so that the default
		// ~/.prefect/prefect.db works on a fresh machine.
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		base := "file:" + escapePath(path) + "?_busy_timeout=" + fmt.Sprint(busyTimeout.Milliseconds()) + "&_foreign_keys=on&_synchronous=NORMAL"
		writerDSN = base + "&_journal_mode=WAL&_txlock=immediate"
		readerDSN = base + "&_query_only=true"
	}
	writer, err := sql.Open("sqlite3", writerDSN)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	// Never recycle the writer: for :memory: the database lives only as
	// long as its connection.
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	if err := writer.PingContext(ctx); err != nil {
		writer.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, mapErr(err))
	}
	if err := migrations.ApplySQLite(ctx, writer); err != nil {
		writer.Close()
		return nil, mapErr(err)
	}
	s := &Store{writer: writer, reader: writer}
	if !mem {
		// Opened after the migrations so the file exists in WAL mode.
		reader, err := sql.Open("sqlite3", readerDSN)
		if err != nil {
			writer.Close()
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		n := max(4, runtime.NumCPU())
		reader.SetMaxOpenConns(n)
		reader.SetMaxIdleConns(n)
		s.reader = reader
	}
	s.wc = newStmtCache(s.writer)
	s.rc = s.wc
	if s.reader != s.writer {
		s.rc = newStmtCache(s.reader)
	}
	s.wq = s.wc.queries()
	s.rq = s.rc.queries()
	return s, nil
}

// escapePath quotes the characters an SQLite URI filename gives meaning to.
func escapePath(p string) string {
	r := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	return r.Replace(p)
}

// Writer exposes the writer connection to code that needs statements the
// Store does not offer (tests inserting fixtures). Keep its transactions
// short: every other write waits for them.
func (s *Store) Writer() *sql.DB { return s.writer }

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return mapErr(s.reader.QueryRowContext(ctx, "SELECT 1").Scan(&one))
}

// Close implements store.Store.
func (s *Store) Close() error {
	errs := []error{s.wc.close()}
	if s.reader != s.writer {
		errs = append(errs, s.rc.close(), s.reader.Close())
	}
	return errors.Join(append(errs, s.writer.Close())...)
}

// Dialect implements store.Store.
func (s *Store) Dialect() filter.Dialect { return filter.SQLite }

// write runs fn in one writer transaction, committing when it returns nil.
func (s *Store) write(ctx context.Context, fn func(q *sqlitedb.Queries, tx *sql.Tx) error) (err error) {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return mapErr(err)
	}
	defer func() {
		if err != nil {
			if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
				err = errors.Join(err, rbErr)
			}
			err = mapErr(err)
		}
	}()
	if err := fn(s.wc.txQueries(tx), tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	// The writer's connection is free again: prepare what this
	// transaction ran as text, so the next one finds it.
	s.wc.preparePending(ctx)
	return nil
}

func formatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// parseTime reads the stored format; RFC 3339 is accepted too so rows
// written by hand (or older tools) still load.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(TimeLayout, s)
	if err != nil {
		if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return time.Time{}, fmt.Errorf("stored timestamp %q: %w", s, err)
		}
	}
	return store.Truncate(t), nil
}

func nullString(b []byte) sql.NullString {
	if b == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: string(b), Valid: true}
}

func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return mapErr(err)
}

// mapErr classifies SQLite errors into the store's sentinels so that the
// HTTP layer can answer 409 or 503 instead of 500.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrConstraint:
			return fmt.Errorf("%w: %v", store.ErrConflict, err)
		case sqlite3.ErrBusy, sqlite3.ErrLocked:
			return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
		case sqlite3.ErrTooBig, sqlite3.ErrRange, sqlite3.ErrMismatch:
			return fmt.Errorf("%w: %v", store.ErrInvalid, err)
		}
	}
	return err
}
