package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prefect-go/prefect-server/migrations"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/sqlite"
	"github.com/prefect-go/prefect-server/services/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.RunSuite(t, func(t *testing.T) store.Store { return storetest.OpenSQLite(t) })
}

func TestConformanceInMemory(t *testing.T) {
	storetest.RunSuite(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(context.Background(), sqlite.Memory)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// Two in-memory stores must not share data.
func TestInMemoryStoresArePrivate(t *testing.T) {
	ctx := context.Background()
	a, err := sqlite.Open(ctx, sqlite.Memory)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sqlite.Open(ctx, sqlite.Memory)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, _, err := a.CreateFlow(ctx, store.FlowCreate{Name: "only-in-a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ReadFlowByName(ctx, "only-in-a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("b sees a's flow: err = %v", err)
	}
}

// Reopening applies no migration twice and keeps the data; several stores on
// one file (as several server processes would be) all work.
func TestReopenAndSharedFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "odd?name#%.db")
	first, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := first.CreateFlow(ctx, store.FlowCreate{Name: "persisted"})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	var stores []*sqlite.Store
	for range 3 {
		s, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores = append(stores, s)
	}
	got, err := stores[0].ReadFlow(ctx, f.ID)
	if err != nil || got.Name != "persisted" {
		t.Fatalf("ReadFlow after reopen = %+v, %v", got, err)
	}
	if n, want := storetest.QueryInt(t, stores[0], "SELECT count(*) FROM schema_migrations"), storetest.MigrationCount(t, migrations.SQLite, "sqlite"); n != want {
		t.Errorf("schema_migrations rows = %d, want %d (each applied once)", n, want)
	}
	var mode string
	if err := stores[0].Writer().QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || !strings.EqualFold(mode, "wal") {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}

	// Writers in three "processes" at once: contention is waited out by the
	// busy timeout, never reported as "database is locked".
	var wg sync.WaitGroup
	errs := make(chan error, 3*50)
	for i, s := range stores {
		wg.Go(func() {
			for j := range 50 {
				if _, _, err := s.CreateFlow(ctx, store.FlowCreate{Name: "p" + string(rune('a'+i)) + "-" + string(rune('a'+j%26)) + string(rune('a'+j/26))}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent CreateFlow: %v", err)
	}
	if n := storetest.QueryInt(t, stores[1], "SELECT count(*) FROM flow"); n != 151 {
		t.Errorf("flows = %d, want 151", n)
	}
}
