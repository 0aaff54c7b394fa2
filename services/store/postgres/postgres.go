// Package postgres is the PostgreSQL adapter of store.Store: pgxpool for
// connections, sqlc's pgdb for static statements, services/store/filter for
// the dynamic WHERE clauses of the /filter endpoints.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prefect-go/prefect-server/gen/db/pgdb"
	"github.com/prefect-go/prefect-server/migrations"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
)

// Store implements store.Store on PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
	q    *pgdb.Queries
}

var _ store.Store = (*Store)(nil)

// Open connects with a libpq-style URL or keyword DSN (postgres://...;
// query options such as sslmode or search_path are honoured) and applies
// pending migrations.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return OpenConfig(ctx, cfg)
}

// OpenConfig is Open for a prepared pool configuration.
func OpenConfig(ctx context.Context, cfg *pgxpool.Config) (*Store, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := migrations.ApplyPostgres(ctx, pool); err != nil {
		pool.Close()
		return nil, mapErr(err)
	}
	return &Store{pool: pool, q: pgdb.New(pool)}, nil
}

// Pool exposes the connection pool to code that needs statements the Store
// does not offer (tests inserting fixtures, services with their own SQL).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return mapErr(s.pool.QueryRow(ctx, "SELECT 1").Scan(&one))
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Dialect implements store.Store.
func (s *Store) Dialect() filter.Dialect { return filter.Postgres }

// inTx runs fn in one transaction, committing when it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(q *pgdb.Queries, tx pgx.Tx) error) error {
	return mapErr(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return fn(s.q.WithTx(tx), tx)
	}))
}

// checkText refuses NUL, which PostgreSQL text cannot hold: the driver
// error would otherwise surface as a 500 rather than a 422.
func checkText(s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%w: text must not contain NUL characters", store.ErrInvalid)
	}
	return nil
}

func notFound(err error, what string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return mapErr(err)
}

// mapErr classifies driver errors into the store's sentinels so that the
// HTTP layer can answer 409, 422 or 503 instead of 500.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505": // unique_violation
			return fmt.Errorf("%w: %s", store.ErrConflict, pgErr.Message)
		case pgErr.Code == "23503": // foreign_key_violation
			return fmt.Errorf("%w: %s", store.ErrConflict, pgErr.Message)
		case strings.HasPrefix(pgErr.Code, "22"): // data exception: bad text, JSON, numbers
			return fmt.Errorf("%w: %s", store.ErrInvalid, pgErr.Message)
		case pgErr.Code == "40001", pgErr.Code == "40P01", // serialization failure, deadlock
			pgErr.Code == "53300", pgErr.Code == "57P03", // too many connections, cannot connect now
			pgErr.Code == "55P03": // lock not available
			return fmt.Errorf("%w: %s", store.ErrUnavailable, pgErr.Message)
		}
		return err
	}
	var netErr net.Error
	if errors.As(err, &netErr) || pgconn.SafeToRetry(err) {
		return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
	}
	return err
}
