// Package storetest is the conformance suite every store.Store adapter runs,
// plus helpers other packages' tests use to get a fresh, private store on
// each engine:
//
//	storetest.Each(t, func(t *testing.T, s store.Store) { ... })
//
// SQLite stores live in a file under t.TempDir(); PostgreSQL stores in a new
// schema (dropped at cleanup) of the database named by
// PREFECT_TEST_POSTGRES_DSN, default DefaultPostgresDSN. When that server is
// unreachable the PostgreSQL half skips, except with CI=true, where it fails.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prefect-go/prefect-server/migrations"

	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/postgres"
	"github.com/prefect-go/prefect-server/services/store/sqlite"
)

// DefaultPostgresDSN is used when PREFECT_TEST_POSTGRES_DSN is unset.
const DefaultPostgresDSN = "postgres://postgres:postgres@127.0.0.1:5432/prefect_test?sslmode=disable"

// SQLitePath returns a fresh database file path in t.TempDir().
func SQLitePath(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "prefect.db")
}

// OpenSQLite opens a store on a fresh SQLite file, closed at cleanup.
func OpenSQLite(t testing.TB) store.Store {
	t.Helper()
	return openSQLiteAt(t, SQLitePath(t))
}

func openSQLiteAt(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("open sqlite %s: %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close sqlite store: %v", err)
		}
	})
	return s
}

// PostgresDSN creates a fresh schema and returns a DSN whose search_path
// selects it; the schema is dropped at cleanup. It skips the test when the
// server is unreachable, or fails it when CI=true.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv("PREFECT_TEST_POSTGRES_DSN")
	if base == "" {
		base = DefaultPostgresDSN
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL unreachable at %s (CI=true requires it): %v", redact(base), err)
		}
		t.Skipf("PostgreSQL unreachable at %s: %v", redact(base), err)
	}
	defer admin.Close(context.Background())
	var buf [8]byte
	if _, err := rand.Read(buf[:]); err != nil {
		t.Fatal(err)
	}
	schema := "test_" + hex.EncodeToString(buf[:])
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return withSearchPath(base, schema)
}

func withSearchPath(dsn, schema string) string {
	if u, err := url.Parse(dsn); err == nil && strings.Contains(dsn, "://") {
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}

func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		return u.Redacted()
	}
	return dsn
}

// OpenPostgres opens a store on a fresh PostgreSQL schema, closed and
// dropped at cleanup; skip/fail rules as PostgresDSN.
func OpenPostgres(t testing.TB) store.Store {
	t.Helper()
	return openPostgresAt(t, PostgresDSN(t))
}

func openPostgresAt(t testing.TB, dsn string) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	// Registered after PostgresDSN's drop, so it runs first.
	t.Cleanup(func() { s.Close() })
	return s
}

// Each runs body as subtests "sqlite" and "postgres", each with a fresh store.
func Each(t *testing.T, body func(t *testing.T, s store.Store)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { body(t, OpenSQLite(t)) })
	t.Run("postgres", func(t *testing.T) { body(t, OpenPostgres(t)) })
}

var placeholder = regexp.MustCompile(`\?`)

// Exec runs a raw statement on the store's writer, for fixtures the Store
// API does not write yet. Write placeholders as ?, they become $n on
// PostgreSQL; uuid.UUID and time.Time arguments are converted to each
// engine's stored form.
func Exec(t testing.TB, s store.Store, query string, args ...any) {
	t.Helper()
	ctx := context.Background()
	var err error
	switch s := s.(type) {
	case *sqlite.Store:
		_, err = s.Writer().ExecContext(ctx, query, sqliteArgs(args)...)
	case *postgres.Store:
		_, err = s.Pool().Exec(ctx, pgQuery(query), args...)
	default:
		t.Fatalf("storetest.Exec: unsupported store %T", s)
	}
	if err != nil {
		t.Fatalf("exec %q: %v", query, err)
	}
}

// QueryInt runs a raw single-value query (e.g. a count) and returns it.
func QueryInt(t testing.TB, s store.Store, query string, args ...any) int64 {
	t.Helper()
	ctx := context.Background()
	var n int64
	var err error
	switch s := s.(type) {
	case *sqlite.Store:
		err = s.Writer().QueryRowContext(ctx, query, sqliteArgs(args)...).Scan(&n)
	case *postgres.Store:
		err = s.Pool().QueryRow(ctx, pgQuery(query), args...).Scan(&n)
	default:
		t.Fatalf("storetest.QueryInt: unsupported store %T", s)
	}
	if err != nil {
		t.Fatalf("query %q: %v", query, err)
	}
	return n
}

func pgQuery(q string) string {
	n := 0
	return placeholder.ReplaceAllStringFunc(q, func(string) string {
		n++
		return "$" + strconv.Itoa(n)
	})
}

func sqliteArgs(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case uuid.UUID:
			out[i] = v.String()
		case time.Time:
			out[i] = v.UTC().Format(sqlite.TimeLayout)
		default:
			out[i] = a
		}
	}
	return out
}

// Compile-time checks that the adapters expose what Exec needs.
var (
	_ interface{ Writer() *sql.DB }     = (*sqlite.Store)(nil)
	_ interface{ Pool() *pgxpool.Pool } = (*postgres.Store)(nil)
)

// MigrationCount is the number of migrations in dir of fsys: the rows
// schema_migrations holds once they are all applied.
func MigrationCount(t *testing.T, fsys fs.FS, dir string) int64 {
	t.Helper()
	ms, err := migrations.Load(fsys, dir)
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(ms))
}
