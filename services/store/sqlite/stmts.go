package sqlite

import (
	"context"
	"database/sql"
	"sync"

	"github.com/prefect-go/prefect-server/gen/db/sqlitedb"
)

// maxCachedStmts bounds the cache: sqlc.slice queries expand to one text per
// list length, and those rare variants are not worth a statement each.
const maxCachedStmts = 256

// stmtCache keeps one prepared statement per sqlc query text on a pool.
// mattn/go-sqlite3 compiles every query it is handed; on the writer, which
// all writes queue for, compiling took about as long as running the
// statements of a state transition. database/sql prepares a cached *sql.Stmt
// once per connection and reuses it, inside transactions too (Tx.StmtContext
// finds the statement already prepared on the transaction's connection).
//
// Inside a transaction a missing statement cannot be prepared on the pool:
// the transaction holds the writer's only connection, so that would wait on
// itself. The text then runs unprepared and is queued; preparePending
// prepares the queue once the transaction has ended.
//
// Only sqlc's generated methods go through the cache: they never leave rows
// of one statement open while running it again, which a shared driver
// statement could not survive.
type stmtCache struct {
	db      *sql.DB
	mu      sync.Mutex
	m       map[string]*sql.Stmt
	pending map[string]struct{}
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}, pending: map[string]struct{}{}}
}

// lookup returns the cached statement for query; on a miss it queues the
// text for preparePending while there is room in the cache.
func (c *stmtCache) lookup(query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[query]; ok {
		return st
	}
	if len(c.m)+len(c.pending) < maxCachedStmts {
		c.pending[query] = struct{}{}
	}
	return nil
}

// get returns the statement for query, preparing it on the pool when
// missing, or nil when the cache is full and the caller should run the text
// directly. It must not be called while holding one of the pool's
// connections.
func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	if st := c.lookup(query); st != nil {
		return st, nil
	}
	return c.prepare(ctx, query)
}

func (c *stmtCache) prepare(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	_, queued := c.pending[query]
	delete(c.pending, query)
	c.mu.Unlock()
	if !queued {
		return nil, nil // cache full, or another caller is preparing it
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[query]; ok {
		st.Close()
		return old, nil
	}
	c.m[query] = st
	return st, nil
}

// preparePending prepares the statements transactions missed. Errors are
// dropped: the text keeps running unprepared, and reports its own error.
func (c *stmtCache) preparePending(ctx context.Context) {
	c.mu.Lock()
	if len(c.pending) == 0 {
		c.mu.Unlock()
		return
	}
	queries := make([]string, 0, len(c.pending))
	for q := range c.pending {
		queries = append(queries, q)
	}
	c.mu.Unlock()
	for _, q := range queries {
		_, _ = c.prepare(ctx, q)
	}
}

func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var first error
	for q, st := range c.m {
		if err := st.Close(); err != nil && first == nil {
			first = err
		}
		delete(c.m, q)
	}
	return first
}

// queries returns sqlc queries on the pool itself.
func (c *stmtCache) queries() *sqlitedb.Queries { return sqlitedb.New(cachedDB{c}) }

// txQueries returns sqlc queries inside tx, a transaction of c's pool.
func (c *stmtCache) txQueries(tx *sql.Tx) *sqlitedb.Queries {
	return sqlitedb.New(cachedTx{c: c, tx: tx})
}

// cachedDB is sqlitedb.DBTX on the pool through cached statements.
type cachedDB struct{ c *stmtCache }

func (d cachedDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := d.c.get(ctx, query)
	if err != nil || st == nil {
		return d.c.db.ExecContext(ctx, query, args...)
	}
	return st.ExecContext(ctx, args...)
}

func (d cachedDB) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return d.c.db.PrepareContext(ctx, query)
}

func (d cachedDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := d.c.get(ctx, query)
	if err != nil || st == nil {
		return d.c.db.QueryContext(ctx, query, args...)
	}
	return st.QueryContext(ctx, args...)
}

func (d cachedDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := d.c.get(ctx, query)
	if err != nil || st == nil {
		return d.c.db.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// cachedTx is sqlitedb.DBTX inside a transaction through cached statements.
// A statement not yet prepared runs as text, as it did without the cache.
type cachedTx struct {
	c  *stmtCache
	tx *sql.Tx
}

func (t cachedTx) stmt(ctx context.Context, query string) *sql.Stmt {
	st := t.c.lookup(query)
	if st == nil {
		return nil
	}
	return t.tx.StmtContext(ctx, st)
}

func (t cachedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, query, args...)
}

func (t cachedTx) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return t.tx.PrepareContext(ctx, query)
}

func (t cachedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, query, args...)
}

func (t cachedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}
