package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prefect-go/prefect-server/gen/db/sqlitedb"
)

// Writes that queue together share a transaction; one's failure must undo
// only its own statements, and each caller must get its own outcome.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.writer.ExecContext(ctx, "CREATE TABLE g (k TEXT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	errBoom := errors.New("boom")
	// Hold the writer so that every job below queues and they run as
	// groups rather than one by one.
	hold := make(chan struct{})
	started := make(chan struct{})
	go s.write(ctx, func(context.Context, *sqlitedb.Queries, *sql.Tx) error {
		close(started)
		<-hold
		return nil
	})
	<-started
	const n = 200
	results := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.write(ctx, func(ctx context.Context, _ *sqlitedb.Queries, tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, "INSERT INTO g VALUES (?)", fmt.Sprint("a", i)); err != nil {
					return err
				}
				switch i % 3 {
				case 1: // fails after a write of its own
					return errBoom
				case 2: // a failing statement after a successful one
					if _, err := tx.ExecContext(ctx, "INSERT INTO g VALUES (?)", fmt.Sprint("a", i)); err != nil {
						return err
					}
				}
				_, err := tx.ExecContext(ctx, "INSERT INTO g VALUES (?)", fmt.Sprint("b", i))
				return err
			})
		}()
	}
	// Background batches queue beside them; each runs in some group.
	const nbg = 5
	bgErrs := make([]error, nbg)
	for i := range nbg {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bgErrs[i] = s.writeBackground(ctx, func(ctx context.Context, _ *sqlitedb.Queries, tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, "INSERT INTO g VALUES (?)", fmt.Sprint("c", i))
				return err
			})
		}()
	}
	// Cancelled before it runs: it must not run, and must say so.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	ran := false
	cerr := s.write(cctx, func(context.Context, *sqlitedb.Queries, *sql.Tx) error { ran = true; return nil })
	close(hold)
	wg.Wait()
	if !errors.Is(cerr, context.Canceled) || ran {
		t.Errorf("cancelled write: err %v, ran %v", cerr, ran)
	}
	for i, err := range bgErrs {
		if err != nil {
			t.Errorf("background job %d: %v", i, err)
		}
	}
	for i, err := range results {
		var want error
		switch i % 3 {
		case 1:
			want = errBoom
		}
		if i%3 == 2 {
			if err == nil {
				t.Errorf("job %d: duplicate insert succeeded", i)
			}
			continue
		}
		if !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Errorf("job %d: err %v, want %v", i, err, want)
		}
	}
	var got int
	if err := s.writer.QueryRowContext(ctx, "SELECT count(*) FROM g").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := 2*((n+2)/3) + nbg; got != want {
		t.Errorf("rows = %d, want %d (only the successful jobs' two rows each)", got, want)
	}
}

// The WAL is copied back into the database file by the background
// checkpoint, long before the writer's own threshold.
func TestBackgroundCheckpoint(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var pages int
	if err := s.writer.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&pages); err != nil || pages != walAutocheckpoint {
		t.Fatalf("writer wal_autocheckpoint = %d, %v; want %d", pages, err, walAutocheckpoint)
	}
	before := fileSize(t, path)
	err = s.write(ctx, func(ctx context.Context, _ *sqlitedb.Queries, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "CREATE TABLE blob (b BLOB)"); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO blob VALUES (zeroblob(1 << 20))")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for fileSize(t, path) < before+1<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes (was %d): the WAL was not checkpointed", fileSize(t, path), before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
