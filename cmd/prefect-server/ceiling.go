package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	_ "github.com/mattn/go-sqlite3" // the same driver and build as the server's store

	"github.com/prefect-go/prefect-server/migrations"
	"github.com/prefect-go/prefect-server/services/store/filter"
)

// ceilingReport is what `prefect-server sqlite-ceiling -json` prints; the
// benchmark compare tool reads it.
type ceilingReport struct {
	// TransitionsPerS: serial flow-run transition transactions (read the
	// run, insert a state, update the run), one commit each.
	TransitionsPerS float64 `json:"transitions_per_s"`
	// RowsPerS: log rows inserted in transactions of ceilingRowsPerTx.
	RowsPerS float64 `json:"batched_rows_per_s"`
	// LifecyclesPerS: the transactions of one benchmark lifecycle (create
	// plus three transitions, serial, a commit each) with its task runs,
	// task run states, events, event resources and logs committed in
	// groups of Batch lifecycles.
	LifecyclesPerS float64 `json:"lifecycles_per_s"`
	// GroupedPerS: the same work with Batch lifecycles' transactions
	// committed together step by step (all creates, then all PENDING, ...),
	// as a server with group commit and Batch concurrent clients can.
	GroupedPerS float64 `json:"lifecycles_grouped_per_s"`
	RowsPerLife int     `json:"batched_rows_per_lifecycle"`
	Batch       int     `json:"batch"`
	SQLite      string  `json:"sqlite_version"`
}

const ceilingRowsPerTx = 1000

// runCeiling measures the raw rate of this machine's SQLite, configured as
// the server configures it (WAL, synchronous=NORMAL, foreign keys, the
// server's schema and indexes), for the transactions a flow run's lifecycle
// needs, with no HTTP and no Go server code in between: the bound any
// server on this database can approach.
func runCeiling(ctx context.Context, args, _ []string, _ string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sqlite-ceiling", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dur := fs.Duration("d", 3*time.Second, "measured duration of each of the three measurements")
	batch := fs.Int("batch", 16, "lifecycles whose batched rows are committed together")
	dir := fs.String("dir", "", "directory for the scratch database (default: a temporary one)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *batch < 1 || *dur <= 0 {
		fmt.Fprintln(stderr, "sqlite-ceiling: -batch and -d must be positive")
		return 2
	}
	rep, err := measureCeiling(ctx, *dir, *dur, *batch)
	if err != nil {
		fmt.Fprintln(stderr, "sqlite-ceiling:", err)
		return 1
	}
	if *asJSON {
		_ = json.NewEncoder(stdout).Encode(rep)
		return 0
	}
	fmt.Fprintf(stdout, "SQLite %s, WAL, synchronous=NORMAL, server schema\n", rep.SQLite)
	fmt.Fprintf(stdout, "serial transition transactions: %.0f/s\n", rep.TransitionsPerS)
	fmt.Fprintf(stdout, "batched inserts (%d rows per transaction): %.0f rows/s\n", ceilingRowsPerTx, rep.RowsPerS)
	fmt.Fprintf(stdout, "lifecycle transactions (4 serial + %d batched rows, batches of %d): %.0f flow runs/s\n", rep.RowsPerLife, rep.Batch, rep.LifecyclesPerS)
	fmt.Fprintf(stdout, "the same, each step of %d lifecycles in one commit: %.0f flow runs/s\n", rep.Batch, rep.GroupedPerS)
	return 0
}

func measureCeiling(ctx context.Context, dir string, dur time.Duration, batch int) (rep ceilingReport, err error) {
	if dir == "" {
		if dir, err = os.MkdirTemp("", "sqlite-ceiling-"); err != nil {
			return rep, err
		}
		defer os.RemoveAll(dir)
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "ceiling.db")+"?_foreign_keys=on&_synchronous=NORMAL&_journal_mode=WAL&_txlock=immediate")
	if err != nil {
		return rep, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if err := migrations.ApplySQLite(ctx, db); err != nil {
		return rep, err
	}
	if err := db.QueryRowContext(ctx, "SELECT sqlite_version()").Scan(&rep.SQLite); err != nil {
		return rep, err
	}
	c, err := newCeilingConn(ctx, db)
	if err != nil {
		return rep, err
	}
	defer c.close()

	// Transitions on a pool of runs, each moved along as the benchmark's
	// transitions workload does.
	runs := make([]string, 256)
	for i := range runs {
		if runs[i], err = c.createRun(ctx); err != nil {
			return rep, err
		}
	}
	n, took, err := repeatFor(dur, func(i int) error { return c.transition(ctx, runs[i%len(runs)], "RUNNING") })
	if err != nil {
		return rep, err
	}
	rep.TransitionsPerS = float64(n) / took.Seconds()

	n, took, err = repeatFor(dur, func(int) error { return c.insertLogs(ctx, ceilingRowsPerTx) })
	if err != nil {
		return rep, err
	}
	rep.RowsPerS = float64(n*ceilingRowsPerTx) / took.Seconds()

	rep.Batch = batch
	var pending []string
	n, took, err = repeatFor(dur, func(int) error {
		id, err := c.createRun(ctx)
		if err != nil {
			return err
		}
		for _, st := range []string{"PENDING", "RUNNING", "COMPLETED"} {
			if err := c.transition(ctx, id, st); err != nil {
				return err
			}
		}
		pending = append(pending, id)
		if len(pending) == batch {
			rows, err := c.lifecycleRows(ctx, pending)
			rep.RowsPerLife = rows / len(pending)
			pending = pending[:0]
			return err
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	rep.LifecyclesPerS = float64(n) / took.Seconds()

	n, took, err = repeatFor(dur, func(int) error {
		ids, err := c.createRuns(ctx, batch)
		if err != nil {
			return err
		}
		for _, st := range []string{"PENDING", "RUNNING", "COMPLETED"} {
			if err := c.tx(ctx, func(stmt func(string) *sql.Stmt) error {
				for _, id := range ids {
					if err := c.transitionIn(ctx, stmt, id, st); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				return err
			}
		}
		_, err = c.lifecycleRows(ctx, ids)
		return err
	})
	if err != nil {
		return rep, err
	}
	rep.GroupedPerS = float64(n*batch) / took.Seconds()
	return rep, nil
}

// repeatFor runs fn until d has passed and says how often it ran.
func repeatFor(d time.Duration, fn func(i int) error) (int, time.Duration, error) {
	start := time.Now()
	i := 0
	for ; time.Since(start) < d; i++ {
		if err := fn(i); err != nil {
			return i, time.Since(start), err
		}
	}
	return i, time.Since(start), nil
}

// ceilingConn holds the prepared statements: a raw rate does not compile
// SQL per transaction.
type ceilingConn struct {
	db     *sql.DB
	flowID string
	stmts  map[string]*sql.Stmt
}

var ceilingSQL = map[string]string{
	"insert_run": `INSERT INTO flow_run (id, created, updated, flow_id, name, tags, parameters, empirical_policy, state_id, state_type, state_name, state_timestamp, expected_start_time, next_scheduled_start_time)
		VALUES (?1, ?2, ?2, ?3, ?4, '["bench","bench-ceiling"]', '{}', '{"retries":0,"retry_delay":0}', ?5, 'SCHEDULED', 'Scheduled', ?2, ?2, ?2)`,
	"lock_run":   `SELECT state_id, run_count, start_time FROM flow_run WHERE id = ?1`,
	"read_state": `SELECT type, name, timestamp, state_details FROM flow_run_state WHERE id = ?1`,
	"insert_state": `INSERT INTO flow_run_state (id, created, updated, flow_run_id, type, timestamp, name, message, state_details, data)
		VALUES (?1, ?2, ?2, ?3, ?4, ?2, ?5, NULL, '{"flow_run_id":null,"task_run_id":null,"scheduled_time":null,"cache_key":null,"untrackable_result":false,"pause_reschedule":false,"deferred":false}', NULL)`,
	"update_run": `UPDATE flow_run SET state_id = ?2, state_type = ?3, state_name = ?4, state_timestamp = ?5, run_count = run_count + 1,
		start_time = coalesce(start_time, ?5), end_time = ?6, total_run_time = 0.5, next_scheduled_start_time = NULL, updated = ?5 WHERE id = ?1`,
	"insert_task_run": `INSERT INTO task_run (id, created, updated, flow_run_id, task_key, dynamic_key, name, tags, empirical_policy, task_inputs, state_id, state_type, state_name, state_timestamp, expected_start_time, start_time, end_time, run_count, flow_run_run_count)
		VALUES (?1, ?2, ?2, ?3, ?4, '0', ?4, '["bench"]', '{}', '{}', ?5, 'COMPLETED', 'Completed', ?2, ?2, ?2, ?2, 1, 1)`,
	"insert_task_state": `INSERT INTO task_run_state (id, created, updated, task_run_id, type, timestamp, name, state_details)
		VALUES (?1, ?2, ?2, ?3, ?4, ?2, ?5, '{}')`,
	"insert_event": `INSERT INTO events (id, occurred, event, resource_id, resource, related_resource_ids, related, payload, received, recorded, follows, created, updated)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?2, ?2, NULL, ?2, ?2) ON CONFLICT (id) DO NOTHING`,
	"insert_event_resource": `INSERT INTO event_resources (id, occurred, resource_id, resource_role, resource, event_id, created, updated)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?2, ?2)`,
	"insert_log": `INSERT INTO log (id, created, updated, name, level, flow_run_id, task_run_id, message, timestamp)
		VALUES (?1, ?2, ?2, 'prefect.flow_runs', 20, ?3, NULL, ?4, ?2)`,
}

func newCeilingConn(ctx context.Context, db *sql.DB) (*ceilingConn, error) {
	c := &ceilingConn{db: db, flowID: uuid.NewString(), stmts: map[string]*sql.Stmt{}}
	now := ceilingNow()
	if _, err := db.ExecContext(ctx, `INSERT INTO flow (id, created, updated, name) VALUES (?1, ?2, ?2, 'bench-ceiling')`, c.flowID, now); err != nil {
		return nil, err
	}
	for name, q := range ceilingSQL {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		c.stmts[name] = st
	}
	return c, nil
}

func (c *ceilingConn) close() {
	for _, st := range c.stmts {
		st.Close()
	}
}

func ceilingNow() string { return time.Now().UTC().Format(filter.SQLiteTimeLayout) }

// tx runs fn in one BEGIN IMMEDIATE transaction, as the server's writer does.
func (c *ceilingConn) tx(ctx context.Context, fn func(st func(string) *sql.Stmt) error) error {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(func(name string) *sql.Stmt { return tx.StmtContext(ctx, c.stmts[name]) }); err != nil {
		return errors.Join(err, tx.Rollback())
	}
	return tx.Commit()
}

func (c *ceilingConn) createRun(ctx context.Context) (string, error) {
	ids, err := c.createRuns(ctx, 1)
	if err != nil {
		return "", err
	}
	return ids[0], nil
}

func (c *ceilingConn) createRuns(ctx context.Context, n int) ([]string, error) {
	ids := make([]string, n)
	now := ceilingNow()
	return ids, c.tx(ctx, func(st func(string) *sql.Stmt) error {
		for i := range ids {
			ids[i] = uuid.NewString()
			stateID := uuid.NewString()
			if _, err := st("insert_run").ExecContext(ctx, ids[i], now, c.flowID, "ceiling-"+ids[i][:8], stateID); err != nil {
				return err
			}
			if _, err := st("insert_state").ExecContext(ctx, stateID, now, ids[i], "SCHEDULED", "Scheduled"); err != nil {
				return err
			}
		}
		return nil
	})
}

func (c *ceilingConn) transition(ctx context.Context, runID, stateType string) error {
	return c.tx(ctx, func(st func(string) *sql.Stmt) error { return c.transitionIn(ctx, st, runID, stateType) })
}

func (c *ceilingConn) transitionIn(ctx context.Context, st func(string) *sql.Stmt, runID, stateType string) error {
	stateID, now := uuid.NewString(), ceilingNow()
	name := stateType[:1] + strings.ToLower(stateType[1:])
	var cur, start sql.NullString
	var runCount int
	if err := st("lock_run").QueryRowContext(ctx, runID).Scan(&cur, &runCount, &start); err != nil {
		return err
	}
	var typ, nm, ts, details string
	if err := st("read_state").QueryRowContext(ctx, cur.String).Scan(&typ, &nm, &ts, &details); err != nil {
		return err
	}
	if _, err := st("insert_state").ExecContext(ctx, stateID, now, runID, stateType, name); err != nil {
		return err
	}
	var end any
	if stateType == "COMPLETED" {
		end = now
	}
	_, err := st("update_run").ExecContext(ctx, runID, stateID, stateType, name, now, end)
	return err
}

func (c *ceilingConn) insertLogs(ctx context.Context, n int) error {
	now := ceilingNow()
	return c.tx(ctx, func(st func(string) *sql.Stmt) error {
		ins := st("insert_log")
		for i := range n {
			if _, err := ins.ExecContext(ctx, uuid.NewString(), now, nil, fmt.Sprintf("bench log line %d", i)); err != nil {
				return err
			}
		}
		return nil
	})
}

// lifecycleRows writes, in one transaction, what the benchmark lifecycle
// adds besides the flow run's own transactions, for each run: 3 task runs
// with 3 states each, 13 events (the task runs' 9 and the flow run's 4)
// with 4 resource rows each, and 10 log lines. It returns the row count.
func (c *ceilingConn) lifecycleRows(ctx context.Context, runIDs []string) (int, error) {
	rows := 0
	start := time.Now().UTC()
	now := start.Format(filter.SQLiteTimeLayout)
	resource := `{"prefect.resource.id":"prefect.task-run.00000000-0000-0000-0000-000000000000","prefect.resource.name":"bench_task-0","prefect.state-name":"Completed","prefect.state-type":"COMPLETED"}`
	related := `[{"prefect.resource.id":"prefect.flow-run.00000000-0000-0000-0000-000000000000","prefect.resource.role":"flow-run","prefect.resource.name":"bench"},{"prefect.resource.id":"prefect.flow.00000000-0000-0000-0000-000000000000","prefect.resource.role":"flow","prefect.resource.name":"bench"},{"prefect.resource.id":"prefect.tag.bench","prefect.resource.role":"tag"}]`
	relatedIDs := `["prefect.flow-run.00000000-0000-0000-0000-000000000000","prefect.flow.00000000-0000-0000-0000-000000000000","prefect.tag.bench"]`
	payload := `{"intended":{"from":"RUNNING","to":"COMPLETED"},"initial_state":{"type":"RUNNING","name":"Running"},"validated_state":{"type":"COMPLETED","name":"Completed"},"task_run":{"name":"bench_task-0","task_key":"bench_task","dynamic_key":"0","tags":["bench"]}}`
	err := c.tx(ctx, func(st func(string) *sql.Stmt) error {
		for _, runID := range runIDs {
			for t := range 3 {
				trID := uuid.NewString()
				states := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
				if _, err := st("insert_task_run").ExecContext(ctx, trID, now, runID, fmt.Sprintf("bench_task-%d", t), states[2]); err != nil {
					return err
				}
				rows++
				for i, s := range []string{"PENDING", "RUNNING", "COMPLETED"} {
					ts := start.Add(time.Duration(i) * time.Millisecond).Format(filter.SQLiteTimeLayout)
					if _, err := st("insert_task_state").ExecContext(ctx, states[i], ts, trID, s, s); err != nil {
						return err
					}
					rows++
				}
			}
			for range 13 {
				evID := uuid.NewString()
				if _, err := st("insert_event").ExecContext(ctx, evID, now, "prefect.task-run.Completed", "prefect.task-run."+runID, resource, relatedIDs, related, payload); err != nil {
					return err
				}
				rows++
				for r, role := range []string{"", "flow-run", "flow", "tag"} {
					if _, err := st("insert_event_resource").ExecContext(ctx, uuid.NewString(), now, fmt.Sprintf("prefect.resource.%d.%s", r, evID[:8]), role, resource, evID); err != nil {
						return err
					}
					rows++
				}
			}
			for i := range 10 {
				if _, err := st("insert_log").ExecContext(ctx, uuid.NewString(), now, runID, fmt.Sprintf("bench log line %d of flow run %s", i, runID)); err != nil {
					return err
				}
				rows++
			}
		}
		return nil
	})
	return rows, err
}
