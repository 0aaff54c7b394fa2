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
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
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

	jobs     chan writeJob // see write
	bgJobs   chan writeJob // see writeBackground
	closed   chan struct{}
	loopDone chan struct{}
	closeMu  sync.Once
	ckptDone chan struct{}
	commits  atomic.Uint64 // committed write transactions, for checkpointLoop
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path, or a private
// in-memory database for Memory, and applies pending migrations.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	mem := path == Memory
	var writerDSN, readerDSN, base string
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
		base = "file:" + escapePath(path) + "?_busy_timeout=" + fmt.Sprint(busyTimeout.Milliseconds()) + "&_foreign_keys=on&_synchronous=NORMAL"
		writerDSN = base + "&_journal_mode=WAL&_txlock=immediate"
		readerDSN = base + "&_query_only=true"
	}
	writer := sql.OpenDB(writerConnector{dsn: writerDSN, mem: mem})
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
	s.jobs = make(chan writeJob, 4*maxGroup)
	s.bgJobs = make(chan writeJob, 4)
	s.closed = make(chan struct{})
	s.loopDone = make(chan struct{})
	s.ckptDone = make(chan struct{})
	go s.writeLoop()
	if mem {
		close(s.ckptDone)
	} else {
		ckpt, err := sql.Open("sqlite3", base)
		if err != nil {
			close(s.ckptDone)
			s.Close()
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		ckpt.SetMaxOpenConns(1)
		go s.checkpointLoop(ckpt)
	}
	return s, nil
}

// walAutocheckpoint is the WAL size, in pages, at which the writer itself
// checkpoints; checkpointLoop normally keeps the WAL far smaller.
const walAutocheckpoint = 20000

// checkpointInterval is how often checkpointLoop copies the WAL back.
const checkpointInterval = 100 * time.Millisecond

// writerConnector opens the writer's connection. SQLite's default is for the
// committing writer to checkpoint every 1,000 WAL pages, inside the commit
// that every queued write waits for; the writer here checkpoints only as a
// last resort and checkpointLoop does it on its own connection, beside the
// writes (a PASSIVE checkpoint does not block the writer).
type writerConnector struct {
	dsn string
	mem bool
}

var writerDriver = &sqlite3.SQLiteDriver{}

func (c writerConnector) Connect(context.Context) (driver.Conn, error) {
	conn, err := writerDriver.Open(c.dsn)
	if err != nil || c.mem {
		return conn, err
	}
	if _, err := conn.(*sqlite3.SQLiteConn).Exec(fmt.Sprintf("PRAGMA wal_autocheckpoint = %d", walAutocheckpoint), nil); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func (c writerConnector) Driver() driver.Driver { return writerDriver }

// checkpointLoop checkpoints the WAL after writes, until Close.
func (s *Store) checkpointLoop(db *sql.DB) {
	defer close(s.ckptDone)
	defer db.Close()
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	var done uint64
	for {
		select {
		case <-s.closed:
			return
		case <-t.C:
		}
		if n := s.commits.Load(); n != done {
			// Errors (a busy file shared with another process) leave the
			// WAL to the writer's own checkpoint.
			if _, err := db.Exec("PRAGMA wal_checkpoint(PASSIVE)"); err == nil {
				done = n
			}
		}
	}
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
	s.closeMu.Do(func() { close(s.closed) })
	<-s.loopDone
	<-s.ckptDone
	errs := []error{s.wc.close()}
	if s.reader != s.writer {
		errs = append(errs, s.rc.close(), s.reader.Close())
	}
	return errors.Join(append(errs, s.writer.Close())...)
}

// Dialect implements store.Store.
func (s *Store) Dialect() filter.Dialect { return filter.SQLite }

// writeFunc is the body of one write. ctx is the caller's context without
// its cancellation: inside a shared transaction an interrupted statement
// would make SQLite roll back every job of the group, so a job, once
// started, runs to its end.
type writeFunc func(ctx context.Context, q *sqlitedb.Queries, tx *sql.Tx) error

type writeJob struct {
	ctx  context.Context
	fn   writeFunc
	done chan error
}

// maxGroup bounds how many queued writes share one transaction, and so how
// long the last of them waits for the commit.
const maxGroup = 64

// write runs fn in a writer transaction and returns once it is durable (or
// rolled back). Writes that queue while another transaction runs are
// committed together (group commit): each runs in its own SAVEPOINT, so one
// job's error undoes only its own changes, and the pages they share (index
// pages of the run tables above all) are written to the WAL once per group
// instead of once per write. A lone write pays nothing for this.
func (s *Store) write(ctx context.Context, fn writeFunc) error {
	return s.enqueue(ctx, fn, s.jobs)
}

// writeBackground is write for the background services' batches (event
// persister, task run recorder): a group takes at most one of them, and
// only after the queued request writes, so that a large batch adds its own
// duration, not a queue of them, to the latency of requests. Their
// batches should stay short: the persister's and recorder's MaxBatch
// bound them (a 2,000-event batch holds the writer for tens of ms).
func (s *Store) writeBackground(ctx context.Context, fn writeFunc) error {
	return s.enqueue(ctx, fn, s.bgJobs)
}

func (s *Store) enqueue(ctx context.Context, fn writeFunc, queue chan writeJob) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	job := writeJob{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case queue <- job:
	case <-s.closed:
		return fmt.Errorf("sqlite: store closed: %w", store.ErrUnavailable)
	}
	// Wait for the outcome even if ctx ends meanwhile: a job that started
	// commits with its group, and its caller must not report a failure for
	// a write that happened.
	select {
	case err := <-job.done:
		return err
	case <-s.loopDone:
		// Queued just after the loop drained on Close.
		select {
		case err := <-job.done:
			return err
		default:
			return fmt.Errorf("sqlite: store closed: %w", store.ErrUnavailable)
		}
	}
}

// writeLoop is the one goroutine that runs write jobs, a group at a time.
func (s *Store) writeLoop() {
	defer close(s.loopDone)
	group := make([]writeJob, 0, maxGroup+1)
	for {
		var first writeJob
		tookBg := false
		select {
		case first = <-s.jobs:
		default:
			select {
			case first = <-s.jobs:
			case first = <-s.bgJobs:
				tookBg = true
			case <-s.closed:
				s.drainOnClose()
				return
			}
		}
		group = append(group[:0], first)
	drain:
		for len(group) < maxGroup {
			select {
			case j := <-s.jobs:
				group = append(group, j)
			default:
				break drain
			}
		}
		if !tookBg {
			select {
			case j := <-s.bgJobs:
				group = append(group, j)
			default:
			}
		}
		s.runGroup(group)
	}
}

// drainOnClose runs the jobs queued when Close was called: their callers
// are waiting for them.
func (s *Store) drainOnClose() {
	for {
		select {
		case j := <-s.jobs:
			s.runGroup([]writeJob{j})
		case j := <-s.bgJobs:
			s.runGroup([]writeJob{j})
		default:
			return
		}
	}
}

func (s *Store) runGroup(group []writeJob) {
	live := group[:0]
	for _, j := range group {
		if err := j.ctx.Err(); err != nil {
			j.done <- err
			continue
		}
		live = append(live, j)
	}
	switch len(live) {
	case 0:
		return
	case 1:
		live[0].done <- s.runAlone(live[0])
		return
	}
	errs := make([]error, len(live))
	err := s.runShared(live, errs)
	for i, j := range live {
		if err != nil && errs[i] == nil {
			errs[i] = err
		}
		j.done <- mapErr(errs[i])
	}
}

// runAlone runs one job in its own transaction. Its context ends the
// transaction if it is cancelled before the commit; the statements
// themselves run without it, as in a group.
func (s *Store) runAlone(j writeJob) error {
	return mapErr(s.inTx(j.ctx, func(tx *sql.Tx) error {
		return j.fn(context.WithoutCancel(j.ctx), s.wc.txQueries(tx), tx)
	}))
}

// runShared runs the jobs in one transaction, each in a savepoint, and
// records each job's own error in errs. The returned error, when not nil,
// failed the transaction itself and so every job that had succeeded.
func (s *Store) runShared(jobs []writeJob, errs []error) error {
	ctx := context.Background()
	return s.inTx(ctx, func(tx *sql.Tx) error {
		q := s.wc.txQueries(tx)
		exec := cachedTx{c: s.wc, tx: tx}
		for i, j := range jobs {
			if _, err := exec.ExecContext(ctx, "SAVEPOINT job"); err != nil {
				return err
			}
			if errs[i] = j.fn(context.WithoutCancel(j.ctx), q, tx); errs[i] != nil {
				// A failed statement undoes itself; the savepoint undoes the
				// job's earlier ones. Should SQLite have ended the whole
				// transaction (an I/O error), this fails and so does the group.
				if _, err := exec.ExecContext(ctx, "ROLLBACK TO job"); err != nil {
					return fmt.Errorf("sqlite: group transaction lost after %w: %w", errs[i], err)
				}
			}
			if _, err := exec.ExecContext(ctx, "RELEASE job"); err != nil {
				return err
			}
		}
		return nil
	})
}

// inTx runs body in one writer transaction and commits it, or rolls it
// back when body or the commit fails.
func (s *Store) inTx(ctx context.Context, body func(tx *sql.Tx) error) (err error) {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err = body(tx); err == nil {
		err = tx.Commit()
	}
	if err != nil {
		if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
			err = errors.Join(err, rbErr)
		}
		return err
	}
	s.commits.Add(1)
	// The writer's connection is free again: prepare what the transaction
	// ran as text, so the next one finds it.
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
