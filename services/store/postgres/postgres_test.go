package postgres_test

import (
	"context"
	"sync"
	"testing"

	"github.com/prefect-go/prefect-server/migrations"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/postgres"
	"github.com/prefect-go/prefect-server/services/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.RunSuite(t, func(t *testing.T) store.Store { return storetest.OpenPostgres(t) })
}

// Replicas starting together on one schema: the advisory lock lets exactly
// one apply each migration and the others see it applied.
func TestConcurrentMigrations(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	ctx := context.Background()
	const n = 5
	stores := make([]*postgres.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = postgres.Open(ctx, dsn) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Open #%d: %v", i, errs[i])
		}
		defer stores[i].Close()
	}
	if got, want := storetest.QueryInt(t, stores[0], "SELECT count(*) FROM schema_migrations"), storetest.MigrationCount(t, migrations.Postgres, "postgres"); got != want {
		t.Errorf("schema_migrations rows = %d, want %d (each applied once)", got, want)
	}
	if _, _, err := stores[n-1].CreateFlow(ctx, store.FlowCreate{Name: "after-race"}); err != nil {
		t.Fatal(err)
	}
}
