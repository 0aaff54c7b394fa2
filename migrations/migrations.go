// Package migrations holds the database schema for both engines as numbered
// SQL files (NNNN_name.up.sql) and applies the pending ones at start. The same
// files are sqlc's schema input, so generated code and the live schema cannot
// drift apart. Applied versions are recorded in schema_migrations.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres holds the PostgreSQL migrations under postgres/.
//
//go:embed postgres/*.sql
var Postgres embed.FS

// SQLite holds the SQLite migrations under sqlite/.
//
//go:embed sqlite/*.sql
var SQLite embed.FS

// Migration is one numbered schema step.
type Migration struct {
	Version int
	Name    string // file name, e.g. 0001_initial.up.sql
	SQL     string
}

// Load reads the *.up.sql files of dir in fsys, ordered by version. Versions
// must be unique: two files claiming one number would make the applied
// schema depend on directory order.
func Load(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var out []Migration
	seen := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".up.sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		if !ok {
			return nil, fmt.Errorf("migrations: %s: name must be NNNN_description.up.sql", name)
		}
		v, err := strconv.Atoi(num)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migrations: %s: bad version %q", name, num)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations: %s and %s share version %d", prev, name, v)
		}
		seen[v] = name
		body, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

const createVersionTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version integer PRIMARY KEY,
	name text NOT NULL,
	applied_at text NOT NULL
)`

// lockNamespace is the first key of the advisory lock; the second is derived
// from the current schema so that servers (and tests) using different schemas
// of one database do not wait for each other.
const lockNamespace = 0x70726566 // "pref"

// ApplyPostgres applies the pending PostgreSQL migrations, each in its own
// transaction. It holds a session advisory lock meanwhile, so replicas
// starting together apply every migration exactly once.
func ApplyPostgres(ctx context.Context, pool *pgxpool.Pool) error {
	migs, err := Load(Postgres, "postgres")
	if err != nil {
		return err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, hashtext(current_schema()))`, lockNamespace); err != nil {
		return fmt.Errorf("migrations: lock: %w", err)
	}
	defer func() {
		// A fresh context: the unlock must happen even when ctx is done,
		// or the pooled session would keep the lock.
		uctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1, hashtext(current_schema()))`, lockNamespace); err != nil {
			conn.Conn().Close(uctx) //nolint:errcheck // the lock dies with the session
		}
	}()
	if _, err := conn.Exec(ctx, createVersionTable); err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	applied := map[int]bool{}
	rows, err := conn.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	for _, v := range versions {
		applied[int(v)] = true
	}
	for _, m := range migs {
		if applied[m.Version] {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.Version, m.Name, time.Now().UTC().Format(time.RFC3339Nano))
			return err
		})
		if err != nil {
			return fmt.Errorf("migrations: %s: %w", m.Name, err)
		}
	}
	return nil
}

// ApplySQLite applies the pending SQLite migrations, each in its own
// transaction. db must be the single writer connection, which serialises
// concurrent starters in one process; across processes SQLite's write lock
// (taken by BEGIN IMMEDIATE on the writer DSN) does.
func ApplySQLite(ctx context.Context, db *sql.DB) error {
	migs, err := Load(SQLite, "sqlite")
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, createVersionTable); err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	for _, m := range migs {
		if err := applySQLiteOne(ctx, db, m); err != nil {
			return fmt.Errorf("migrations: %s: %w", m.Name, err)
		}
	}
	return nil
}

func applySQLiteOne(ctx context.Context, db *sql.DB, m Migration) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, ignoreDone(tx.Rollback()))
		}
	}()
	// Checked inside the transaction: another process may have applied it
	// between our start and the write lock.
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, m.Version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return tx.Rollback()
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.Version, m.Name, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
		return err
	}
	return tx.Commit()
}

func ignoreDone(err error) error {
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}
