package storetest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
	"github.com/prefect-go/prefect-server/services/store/postgres"
	"github.com/prefect-go/prefect-server/services/store/sqlite"
	"github.com/prefect-go/prefect-server/services/store/storetest"
)

// Each gives every backend a fresh store of the right dialect.
func TestEach(t *testing.T) {
	seen := map[filter.Dialect]bool{}
	storetest.Each(t, func(t *testing.T, s store.Store) {
		seen[s.Dialect()] = true
		n, err := s.CountFlows(context.Background(), filter.FlowFilterSet{})
		if err != nil || n != 0 {
			t.Fatalf("fresh store has %d flows (err %v)", n, err)
		}
		storetest.Exec(t, s, "INSERT INTO flow (name) VALUES (?)", "raw")
		if n := storetest.QueryInt(t, s, "SELECT count(*) FROM flow WHERE name = ?", "raw"); n != 1 {
			t.Fatalf("raw insert not visible: %d", n)
		}
	})
	if !seen[filter.SQLite] {
		t.Error("Each did not run the sqlite backend")
	}
}

// The two engines' migrations must define the same tables and columns, or
// a query written for one would fail on the other.
func TestSchemaParity(t *testing.T) {
	ctx := context.Background()
	lite := storetest.OpenSQLite(t).(*sqlite.Store)
	pg := storetest.OpenPostgres(t).(*postgres.Store)

	want := map[string]bool{}
	rows, err := lite.Writer().QueryContext(ctx, `SELECT m.name || '.' || p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		want[c] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	prows, err := pg.Pool().Query(ctx, `SELECT table_name || '.' || column_name FROM information_schema.columns WHERE table_schema = current_schema()`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(prows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range got {
		if !want[c] {
			t.Errorf("column %s exists only on PostgreSQL", c)
		}
		delete(want, c)
	}
	for c := range want {
		t.Errorf("column %s exists only on SQLite", c)
	}
	if len(got) < 300 {
		t.Errorf("only %d PostgreSQL columns: migrations incomplete?", len(got))
	}
}
