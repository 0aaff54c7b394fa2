package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// `bench compare` starts the Python 3.9.1 server and ours on the same kind
// of database, runs every workload against both (alternating which goes
// first), then runs the real 3.9.1 client against both, and writes the
// side-by-side figures as Markdown (BENCHMARKS.md).

//go:embed clientflow.py
var clientFlowScript []byte

type compareOptions struct {
	dbs          []string
	workloads    []string
	concurrency  int
	duration     time.Duration
	warmup       time.Duration
	prefill      float64
	clientRuns   int
	clientTasks  int
	venv         string
	serverBin    string
	pgAdminDSN   string
	out          string
	spec         string
	validate     bool
	startTimeout time.Duration
	keep         bool
	goPrefill    float64
	ceilingDur   time.Duration
	args         []string
}

func parseCompareFlags(args []string, stderr io.Writer) (compareOptions, error) {
	o := compareOptions{args: args}
	fs := flag.NewFlagSet("bench compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbs := fs.String("db", "sqlite,postgres", "database kinds to compare on: sqlite, postgres")
	wl := fs.String("w", "lifecycle,transitions,reads,events", "workloads to run against both servers")
	fs.IntVar(&o.concurrency, "c", 16, "concurrent workers")
	fs.DurationVar(&o.duration, "d", 8*time.Second, "measured duration per workload and server")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured warm-up per workload and server")
	fs.Float64Var(&o.prefill, "prefill-scale", defaultPrefillScale, "reads prefill size: 1 = 100,000 flow runs and 1,000,000 task runs")
	fs.IntVar(&o.clientRuns, "client-runs", 20, "real-client mode: flow runs per server (0 skips the mode)")
	fs.IntVar(&o.clientTasks, "client-tasks", 50, "real-client mode: tasks per flow run")
	fs.StringVar(&o.venv, "venv", "../.venv", "virtualenv with prefect==3.9.1 (server and client)")
	fs.StringVar(&o.serverBin, "server", "../bin/prefect-server", "our server binary")
	fs.StringVar(&o.pgAdminDSN, "pg", envOr("PREFECT_TEST_POSTGRES_DSN", "postgres://postgres:postgres@127.0.0.1:5432/postgres"), "PostgreSQL DSN used to create and drop the per-run databases")
	fs.StringVar(&o.out, "out", "../BENCHMARKS.md", "Markdown report to write (empty: stdout only)")
	fs.StringVar(&o.spec, "spec", "", "OpenAPI document to validate responses against")
	fs.BoolVar(&o.validate, "validate", true, "validate response bodies against the OpenAPI document")
	fs.DurationVar(&o.startTimeout, "start-timeout", 3*time.Minute, "how long a server may take to answer /api/health")
	fs.Float64Var(&o.goPrefill, "go-prefill-scale", 1, "also run reads against our server alone at this prefill scale, for the target at 1,000,000 task runs (0 skips; the Python server would take hours to prefill scale 1)")
	fs.DurationVar(&o.ceilingDur, "ceiling-d", 2*time.Second, "duration of each SQLite ceiling measurement (0 skips)")
	fs.BoolVar(&o.keep, "keep", false, "keep the scratch directory (server and client logs, SQLite files)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	for _, d := range strings.Split(*dbs, ",") {
		d = strings.TrimSpace(d)
		if d != "sqlite" && d != "postgres" {
			return o, fmt.Errorf("-db: unknown database kind %q", d)
		}
		o.dbs = append(o.dbs, d)
	}
	for _, n := range strings.Split(*wl, ",") {
		n = strings.TrimSpace(n)
		if _, ok := workloads[n]; !ok {
			return o, fmt.Errorf("unknown workload %q (have %s)", n, workloadNames())
		}
		o.workloads = append(o.workloads, n)
	}
	if o.concurrency < 1 || o.duration <= 0 || o.warmup < 0 || o.clientRuns < 0 || o.clientTasks < 1 {
		return o, errors.New("-c, -d, -client-tasks must be positive; -warmup and -client-runs not negative")
	}
	if o.prefill <= 0 || o.prefill > 10 || o.goPrefill < 0 || o.goPrefill > 10 {
		return o, errors.New("-prefill-scale must be in (0, 10], -go-prefill-scale in [0, 10]")
	}
	return o, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// serverKind is one implementation under comparison.
type serverKind struct {
	label string
	start func(port int, home, dbURL string) *exec.Cmd
}

// serverProc is a started server.
type serverProc struct {
	kind    serverKind
	cmd     *exec.Cmd
	url     string
	home    string
	logPath string
	done    chan struct{}
}

// clientRun is one flow run of the real-client mode.
type clientRun struct {
	ID      string  `json:"id"`
	Seconds float64 `json:"seconds"`
}

// clientResult is the real-client mode against one server.
type clientResult struct {
	Runs    []clientRun
	Problem string
}

// dbComparison is everything measured on one database kind.
type dbComparison struct {
	DB       string
	Servers  []string                             // labels, Python first
	Idle     map[string]int64                     // kB before the first workload
	IdleAnon map[string]int64                     // its anonymous part, kB
	Results  map[string]map[string]WorkloadResult // workload -> server -> result
	Errors   map[string]map[string]string         // workload -> server -> run failure
	Client   map[string]clientResult
	Order    []string // workloads in run order
	// GoReads is the reads workload against our server alone at
	// -go-prefill-scale; GoReadsErr says why it is missing.
	GoReads    *WorkloadResult
	GoReadsErr string
	// Ceiling is `prefect-server sqlite-ceiling` measured in the same run.
	Ceiling    *ceilingReport
	CeilingErr string
}

// ceilingReport mirrors the JSON of `prefect-server sqlite-ceiling -json`.
type ceilingReport struct {
	TransitionsPerS float64 `json:"transitions_per_s"`
	RowsPerS        float64 `json:"batched_rows_per_s"`
	LifecyclesPerS  float64 `json:"lifecycles_per_s"`
	GroupedPerS     float64 `json:"lifecycles_grouped_per_s"`
	RowsPerLife     int     `json:"batched_rows_per_lifecycle"`
	Batch           int     `json:"batch"`
	SQLite          string  `json:"sqlite_version"`
}

// best is the higher of the two lifecycle ceilings: the bound for a server
// that commits one transaction per request or groups them.
func (c *ceilingReport) best() float64 { return max(c.LifecyclesPerS, c.GroupedPerS) }

func measureCeiling(ctx context.Context, o compareOptions, scratch string) (*ceilingReport, error) {
	dir, err := os.MkdirTemp(scratch, "ceiling-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(ctx, o.serverBin, "sqlite-ceiling", "-json", "-d", o.ceilingDur.String(), "-batch", fmt.Sprint(o.concurrency), "-dir", dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s sqlite-ceiling: %w: %s", o.serverBin, err, strings.TrimSpace(stderr.String()))
	}
	var c ceilingReport
	if err := json.Unmarshal(out, &c); err != nil {
		return nil, fmt.Errorf("sqlite-ceiling output: %w", err)
	}
	return &c, nil
}

func runCompare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseCompareFlags(args, stderr)
	if err != nil {
		return err
	}
	venv, err := filepath.Abs(o.venv)
	if err != nil {
		return err
	}
	serverBin, err := filepath.Abs(o.serverBin)
	if err != nil {
		return err
	}
	o.serverBin = serverBin
	for _, p := range []string{filepath.Join(venv, "bin", "prefect"), serverBin} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	python := serverKind{label: "Python 3.9.1", start: func(port int, home, dbURL string) *exec.Cmd {
		return exec.Command(filepath.Join(venv, "bin", "prefect"), "server", "start",
			"--host", "127.0.0.1", "--port", fmt.Sprint(port))
	}}
	ours := serverKind{label: "Go", start: func(port int, home, dbURL string) *exec.Cmd {
		return exec.Command(serverBin, "start")
	}}

	scratch, err := os.MkdirTemp("", "bench-compare-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(stderr, "keeping logs and databases in %s\n", scratch)
	} else {
		defer os.RemoveAll(scratch)
	}
	scriptPath := filepath.Join(scratch, "clientflow.py")
	if err := os.WriteFile(scriptPath, clientFlowScript, 0o644); err != nil {
		return err
	}

	started := time.Now()
	var all []dbComparison
	for _, db := range o.dbs {
		fmt.Fprintf(stderr, "== %s\n", db)
		cmp, err := compareOnDB(ctx, o, db, []serverKind{python, ours}, venv, scratch, scriptPath, stderr)
		if err != nil {
			return fmt.Errorf("%s: %w", db, err)
		}
		all = append(all, cmp)
	}
	report := renderMarkdown(ctx, o, venv, serverBin, all, time.Since(started))
	fmt.Fprint(stdout, report)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s\n", o.out)
	}
	return nil
}

func compareOnDB(ctx context.Context, o compareOptions, db string, kinds []serverKind, venv, scratch, script string, logw io.Writer) (dbComparison, error) {
	cmp := dbComparison{
		DB: db, Idle: map[string]int64{}, IdleAnon: map[string]int64{}, Order: o.workloads,
		Results: map[string]map[string]WorkloadResult{}, Errors: map[string]map[string]string{},
		Client: map[string]clientResult{},
	}
	var procs []*serverProc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	var dropDBs []string
	defer func() {
		for _, name := range dropDBs {
			if err := dropDatabase(o.pgAdminDSN, name); err != nil {
				fmt.Fprintf(logw, "drop database %s: %v\n", name, err)
			}
		}
	}()
	for _, k := range kinds {
		home, err := os.MkdirTemp(scratch, "home-")
		if err != nil {
			return cmp, err
		}
		dbURL := ""
		if db == "postgres" {
			name := "bench_" + strings.ToLower(strings.NewReplacer(" ", "_", ".", "_").Replace(k.label)) + "_" + randHex(4)
			if err := createDatabase(ctx, o.pgAdminDSN, name); err != nil {
				return cmp, fmt.Errorf("create database: %w", err)
			}
			dropDBs = append(dropDBs, name)
			dbURL, err = asyncpgURL(o.pgAdminDSN, name)
			if err != nil {
				return cmp, err
			}
		}
		p, err := startServer(ctx, k, home, dbURL, o.startTimeout)
		if p != nil {
			procs = append(procs, p)
		}
		if err != nil {
			return cmp, err
		}
		cmp.Servers = append(cmp.Servers, k.label)
		fmt.Fprintf(logw, "%s serving at %s (pid %d, log %s)\n", k.label, p.url, p.cmd.Process.Pid, p.logPath)
	}
	for _, p := range procs {
		cmp.Idle[p.kind.label], _ = treeRSS(p.cmd.Process.Pid)
		cmp.IdleAnon[p.kind.label], _ = treeAnon(p.cmd.Process.Pid)
	}

	runID := randHex(4)
	for i, name := range o.workloads {
		order := slices.Clone(procs)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		cmp.Results[name] = map[string]WorkloadResult{}
		cmp.Errors[name] = map[string]string{}
		for _, p := range order {
			if err := ctx.Err(); err != nil {
				return cmp, err
			}
			fmt.Fprintf(logw, "  %s on %s ...\n", name, p.kind.label)
			res, err := runOne(ctx, o, p, name, runID)
			if err != nil {
				cmp.Errors[name][p.kind.label] = err.Error()
				fmt.Fprintf(logw, "    failed: %v\n", err)
				continue
			}
			cmp.Results[name][p.kind.label] = res
			hs := res.HeadlineSummary()
			fmt.Fprintf(logw, "    %.1f %s, p50 %.1f ms, p99 %.1f ms, %d errors\n", res.Headline.Value, res.Headline.Unit, hs.P50Ms, hs.P99Ms, res.Total.Errors)
		}
	}

	if db == "sqlite" && o.ceilingDur > 0 {
		fmt.Fprintf(logw, "  SQLite ceiling (no HTTP) ...\n")
		if c, err := measureCeiling(ctx, o, scratch); err != nil {
			cmp.CeilingErr = err.Error()
			fmt.Fprintf(logw, "    failed: %v\n", err)
		} else {
			cmp.Ceiling = c
			fmt.Fprintf(logw, "    %.0f flow runs/s (one commit per step), %.0f grouped\n", c.LifecyclesPerS, c.GroupedPerS)
		}
	}
	if o.goPrefill > 0 && slices.Contains(o.workloads, "reads") {
		p := procs[len(procs)-1] // ours
		fmt.Fprintf(logw, "  reads at prefill scale %g on %s only ...\n", o.goPrefill, p.kind.label)
		big := o
		big.prefill = o.goPrefill
		if res, err := runOne(ctx, big, p, "reads", randHex(4)); err != nil {
			cmp.GoReadsErr = err.Error()
			fmt.Fprintf(logw, "    failed: %v\n", err)
		} else {
			cmp.GoReads = &res
			hs := res.HeadlineSummary()
			fmt.Fprintf(logw, "    %.1f %s, p50 %.1f ms, p95 %.1f ms, %d errors\n", res.Headline.Value, res.Headline.Unit, hs.P50Ms, hs.P95Ms, res.Total.Errors)
		}
	}

	if o.clientRuns > 0 {
		for _, p := range procs {
			if err := ctx.Err(); err != nil {
				return cmp, err
			}
			fmt.Fprintf(logw, "  real client (%d runs x %d tasks) on %s ...\n", o.clientRuns, o.clientTasks, p.kind.label)
			cr := runRealClient(ctx, o, p, venv, scratch, script)
			if cr.Problem != "" {
				fmt.Fprintf(logw, "    problem: %s\n", cr.Problem)
			}
			cmp.Client[p.kind.label] = cr
		}
	}
	return cmp, nil
}

// runOne runs one workload against one server with a fresh client.
func runOne(ctx context.Context, o compareOptions, p *serverProc, name, runID string) (WorkloadResult, error) {
	var v *Validator
	if o.validate {
		spec, err := findSpec(o.spec)
		if err != nil {
			return WorkloadResult{}, err
		}
		if v, err = NewValidator(ctx, spec, p.url); err != nil {
			return WorkloadResult{}, err
		}
	}
	c := NewClient(p.url, o.concurrency, v)
	defer c.http.CloseIdleConnections()
	sampler := startRSSSampler(p.cmd.Process.Pid)
	defer sampler.close()
	w := workloads[name](WorkloadOptions{RunID: runID, PrefillScale: o.prefill})
	return runWorkload(ctx, c, w, RunConfig{Concurrency: o.concurrency, Warmup: o.warmup, Duration: o.duration}, sampler)
}

// runRealClient runs the embedded flow script with the 3.9.1 client against
// one server, then checks that the server recorded all task runs.
func runRealClient(ctx context.Context, o compareOptions, p *serverProc, venv, scratch, script string) clientResult {
	home, err := os.MkdirTemp(scratch, "client-")
	if err != nil {
		return clientResult{Problem: err.Error()}
	}
	out := filepath.Join(home, "runs.json")
	logPath := filepath.Join(home, "client.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return clientResult{Problem: err.Error()}
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, filepath.Join(venv, "bin", "python"), script,
		fmt.Sprint(o.clientTasks), fmt.Sprint(o.clientRuns), out)
	cmd.Env = append(cleanEnv(),
		"PREFECT_HOME="+home,
		"PREFECT_PROFILES_PATH="+filepath.Join(home, "profiles.toml"),
		"PREFECT_API_URL="+p.url,
		"PREFECT_SERVER_ALLOW_EPHEMERAL_MODE=false",
		"PREFECT_LOGGING_LEVEL=WARNING",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		return clientResult{Problem: fmt.Sprintf("client exited: %v (log %s): %s", err, logPath, tail(logPath, 800))}
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		return clientResult{Problem: err.Error()}
	}
	var got struct {
		Runs []clientRun `json:"runs"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		return clientResult{Problem: err.Error()}
	}
	res := clientResult{Runs: got.Runs}
	ids := make([]string, 0, len(got.Runs))
	for _, r := range got.Runs {
		ids = append(ids, r.ID)
	}
	c := NewClient(p.url, 1, nil)
	want := len(ids) * o.clientTasks
	var n int
	if _, err := pollUntil(ctx, 60*time.Second, func() (bool, error) {
		var err error
		n, err = countTaskRuns(ctx, c, map[string]any{
			"flow_runs": map[string]any{"id": map[string]any{"any_": ids}},
			"task_runs": map[string]any{"state": map[string]any{"type": map[string]any{"any_": []string{"COMPLETED"}}}},
		})
		return err == nil && n >= want, err
	}); err != nil {
		res.Problem = fmt.Sprintf("%d of %d task runs recorded as COMPLETED: %v", n, want, err)
	}
	return res
}

func tail(path string, n int) string {
	raw, _ := os.ReadFile(path)
	if len(raw) > n {
		raw = raw[len(raw)-n:]
	}
	return strings.TrimSpace(string(raw))
}

// cleanEnv is the environment without PREFECT_* settings, so that a
// developer's profile or API URL never leaks into a server or client.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PREFECT_") {
			env = append(env, kv)
		}
	}
	return env
}

func startServer(ctx context.Context, k serverKind, home, dbURL string, timeout time.Duration) (*serverProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := k.start(port, home, dbURL)
	cmd.Env = append(cleanEnv(),
		"PREFECT_HOME="+home,
		"PREFECT_PROFILES_PATH="+filepath.Join(home, "profiles.toml"),
		"PREFECT_SERVER_API_HOST=127.0.0.1",
		fmt.Sprintf("PREFECT_SERVER_API_PORT=%d", port),
		"PREFECT_SERVER_ANALYTICS_ENABLED=false",
		"PREFECT_SERVER_LOGGING_LEVEL=WARNING",
	)
	if dbURL != "" {
		cmd.Env = append(cmd.Env, "PREFECT_SERVER_DATABASE_CONNECTION_URL="+dbURL)
	}
	cmd.Dir = home
	// Its own process group, so stop reaches the workers a server forks.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logPath := filepath.Join(home, "server.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", k.label, err)
	}
	p := &serverProc{kind: k, cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d/api", port), home: home, logPath: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	hc := &http.Client{Timeout: 2 * time.Second}
	_, err = pollUntil(ctx, timeout, func() (bool, error) {
		select {
		case <-p.done:
			return false, fmt.Errorf("exited: %s", tail(logPath, 800))
		default:
		}
		resp, err := hc.Get(p.url + "/health")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("health answered %d", resp.StatusCode)
	})
	if err != nil {
		return p, fmt.Errorf("%s did not become healthy: %w", k.label, err)
	}
	return p, nil
}

// stop asks the server's process group to exit and kills it after a grace
// period.
func (p *serverProc) stop() {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Children that outlived their parent are in the same group.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func createDatabase(ctx context.Context, dsn, name string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return err
}

func dropDatabase(dsn, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

// asyncpgURL is the SQLAlchemy-style URL both servers take, for database
// name on the server of the admin DSN.
func asyncpgURL(adminDSN, name string) (string, error) {
	cfg, err := pgx.ParseConfig(adminDSN)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("postgresql+asyncpg://%s:%s@%s:%d/%s", cfg.User, cfg.Password, cfg.Host, cfg.Port, name), nil
}

// ---- report ----

func renderMarkdown(ctx context.Context, o compareOptions, venv, serverBin string, all []dbComparison, took time.Duration) string {
	var b strings.Builder
	now := time.Now().UTC()
	fmt.Fprintf(&b, "# Benchmarks: Go server vs Python Prefect 3.9.1 server\n\n")
	fmt.Fprintf(&b, "Generated %s by `make bench-compare` (`cd tools && go run ./bench compare %s`), in %s.\n",
		now.Format("2006-01-02 15:04 MST"), strings.Join(o.args, " "), took.Round(time.Second))
	fmt.Fprintf(&b, "Regenerate with the same command; it rewrites this file.\n\n")
	fmt.Fprintf(&b, "## Machine and versions\n\n")
	fmt.Fprintf(&b, "- CPU: %d cores (`nproc`), %s\n", runtime.NumCPU(), cpuModel())
	fmt.Fprintf(&b, "- Memory: %s\n", memTotal())
	fmt.Fprintf(&b, "- Go server: %s, built with %s, commit %s\n", cmdOut(serverBin, "version"), runtime.Version(), cmdOut("git", "rev-parse", "--short", "HEAD"))
	fmt.Fprintf(&b, "- Python server and client: prefect %s on %s\n",
		cmdOut(filepath.Join(venv, "bin", "python"), "-c", "import prefect; print(prefect.__version__)"),
		cmdOut(filepath.Join(venv, "bin", "python"), "--version"))
	if slices.Contains(o.dbs, "postgres") {
		fmt.Fprintf(&b, "- PostgreSQL: %s (local, fresh database per server)\n", pgVersion(ctx, o.pgAdminDSN))
	}
	fmt.Fprintf(&b, "- SQLite: each server's default file in a fresh PREFECT_HOME\n")
	fmt.Fprintf(&b, "- Load: %d concurrent workers, %s warm-up + %s measured per workload and server; reads prefill scale %g (%d flow runs, %d task runs); the two servers run side by side and take turns, alternating which goes first\n",
		o.concurrency, o.warmup, o.duration, o.prefill, int(readsFlowRunsAtScale1*o.prefill+0.5), int(readsFlowRunsAtScale1*o.prefill+0.5)*readsTasksPerFlowRun)
	fmt.Fprintf(&b, "- Checks: every response's status and body (and for reads its rows, count and order); schema validation against the OpenAPI document for every response except the 200-row read pages (one in %d: validating one costs ~100 ms of client CPU); asynchronous work (task runs from events, persisted events) is polled until complete and a shortfall is an error\n\n", readsValidateOneIn)
	fmt.Fprintf(&b, "Ratios are Go / Python: above 1 is better for throughput, below 1 is better for latency and memory.\n")
	fmt.Fprintf(&b, "Throughput counts successful operations only; `errors` counts every failed request or check (a 503 \"database is locked\" included, although the Prefect client would retry it).\n")
	fmt.Fprintf(&b, "Latencies are of the workload's headline operation (the whole flow-run lifecycle for `lifecycle`, one request otherwise, one batch of 50 frames for `events`).\n")
	fmt.Fprintf(&b, "The full-scale reads prefill (100,000 flow runs, 1,000,000 task runs) is `cd tools && go run ./bench compare -prefill-scale 1` (slow on the Python server: flow runs are created one request at a time).\n")

	for _, cmp := range all {
		fmt.Fprintf(&b, "\n## %s\n\n", cmp.DB)
		py, gl := cmp.Servers[0], cmp.Servers[1]
		fmt.Fprintf(&b, "| workload | figure | %s | %s | Go/Python |\n|---|---|---:|---:|---:|\n", py, gl)
		row := func(wl, fig string, a, g float64, format string) {
			ratio := "-"
			if a > 0 {
				ratio = fmt.Sprintf("%.2f", g/a)
			}
			fmt.Fprintf(&b, "| %s | %s | "+format+" | "+format+" | %s |\n", wl, fig, a, g, ratio)
		}
		row("(idle)", "server RSS MiB", float64(cmp.Idle[py])/1024, float64(cmp.Idle[gl])/1024, "%.1f")
		row("(idle)", "of which anonymous (heap, stacks) MiB", float64(cmp.IdleAnon[py])/1024, float64(cmp.IdleAnon[gl])/1024, "%.1f")
		for _, name := range cmp.Order {
			rp, okP := cmp.Results[name][py]
			rg, okG := cmp.Results[name][gl]
			if !okP || !okG {
				fmt.Fprintf(&b, "| %s | run failed | %s | %s | - |\n", name, cellErr(cmp.Errors[name][py]), cellErr(cmp.Errors[name][gl]))
				continue
			}
			hp, hg := rp.HeadlineSummary(), rg.HeadlineSummary()
			row(name, "throughput, "+rp.Headline.Unit, rp.Headline.Value, rg.Headline.Value, "%.1f")
			row(name, "p50 ms", hp.P50Ms, hg.P50Ms, "%.1f")
			row(name, "p95 ms", hp.P95Ms, hg.P95Ms, "%.1f")
			row(name, "p99 ms", hp.P99Ms, hg.P99Ms, "%.1f")
			row(name, "errors", float64(rp.Total.Errors), float64(rg.Total.Errors), "%.0f")
			row(name, "peak RSS MiB", float64(rp.ServerPeakRSS)/1024, float64(rg.ServerPeakRSS)/1024, "%.1f")
			for _, m := range rp.Metrics {
				if mg, ok := rg.Metric(m.Name); ok {
					row(name, m.Name+", "+m.Unit, m.Value, mg.Value, "%.2f")
				}
			}
		}
		if r := cmp.GoReads; r != nil {
			h := r.HeadlineSummary()
			label := fmt.Sprintf("reads, Go only, prefill scale %g", o.goPrefill)
			fmt.Fprintf(&b, "| %s | throughput, %s | - | %.1f | - |\n", label, r.Headline.Unit, r.Headline.Value)
			fmt.Fprintf(&b, "| %s | p50 / p95 / p99 ms | - | %.1f / %.1f / %.1f | - |\n", label, h.P50Ms, h.P95Ms, h.P99Ms)
			fmt.Fprintf(&b, "| %s | errors | - | %d | - |\n", label, r.Total.Errors)
			for _, m := range r.Metrics {
				fmt.Fprintf(&b, "| %s | %s, %s | - | %.2f | - |\n", label, m.Name, m.Unit, m.Value)
			}
		} else if cmp.GoReadsErr != "" {
			fmt.Fprintf(&b, "| reads, Go only, prefill scale %g | run failed | - | %s | - |\n", o.goPrefill, cellErr(cmp.GoReadsErr))
		}
		if c := cmp.Ceiling; c != nil {
			label := "SQLite ceiling (no HTTP, SQLite " + c.SQLite + ")"
			fmt.Fprintf(&b, "| %s | serial transition transactions/s | - | %.0f | - |\n", label, c.TransitionsPerS)
			fmt.Fprintf(&b, "| %s | batched inserts, rows/s | - | %.0f | - |\n", label, c.RowsPerS)
			fmt.Fprintf(&b, "| %s | lifecycle transactions (4 commits + %d batched rows), flow runs/s | - | %.1f | - |\n", label, c.RowsPerLife, c.LifecyclesPerS)
			fmt.Fprintf(&b, "| %s | the same, %d lifecycles per commit, flow runs/s | - | %.1f | - |\n", label, c.Batch, c.GroupedPerS)
		} else if cmp.CeilingErr != "" {
			fmt.Fprintf(&b, "| SQLite ceiling | run failed | - | %s | - |\n", cellErr(cmp.CeilingErr))
		}
		if len(cmp.Client) > 0 {
			cp, cg := cmp.Client[py], cmp.Client[gl]
			label := fmt.Sprintf("real client, %d tasks", o.clientTasks)
			sp, sg := runStats(cp.Runs), runStats(cg.Runs)
			row(label, "flow runs completed", float64(len(cp.Runs)), float64(len(cg.Runs)), "%.0f")
			row(label, "median wall s per run", sp.median, sg.median, "%.2f")
			row(label, "mean wall s per run", sp.mean, sg.mean, "%.2f")
			row(label, "max wall s per run", sp.max, sg.max, "%.2f")
		}

		renderTargets(&b, o, cmp)

		fmt.Fprintf(&b, "\nPer-operation detail (%s):\n\n", cmp.DB)
		fmt.Fprintf(&b, "| workload | operation | server | count | req/s | p50 ms | p95 ms | p99 ms | errors |\n|---|---|---|---:|---:|---:|---:|---:|---:|\n")
		for _, name := range cmp.Order {
			for _, srv := range cmp.Servers {
				r, ok := cmp.Results[name][srv]
				if !ok {
					continue
				}
				for _, s := range r.Ops {
					fmt.Fprintf(&b, "| %s | %s | %s | %d | %.1f | %.1f | %.1f | %.1f | %d |\n", name, s.Op, srv, s.Count, s.RPS, s.P50Ms, s.P95Ms, s.P99Ms, s.Errors)
				}
			}
		}
		var notes []string
		for _, name := range cmp.Order {
			for _, srv := range cmp.Servers {
				r := cmp.Results[name][srv]
				for _, p := range r.Problems {
					notes = append(notes, fmt.Sprintf("%s on %s: %s", name, srv, p))
				}
				for _, s := range r.Ops {
					for _, e := range s.ErrorSamples {
						notes = append(notes, fmt.Sprintf("%s on %s, %s: %s", name, srv, s.Op, e))
					}
				}
				if e := cmp.Errors[name][srv]; e != "" {
					notes = append(notes, fmt.Sprintf("%s on %s failed: %s", name, srv, e))
				}
			}
		}
		for _, srv := range cmp.Servers {
			if p := cmp.Client[srv].Problem; p != "" {
				notes = append(notes, fmt.Sprintf("real client on %s: %s", srv, p))
			}
		}
		if len(notes) > 0 {
			fmt.Fprintf(&b, "\nErrors and problems (%s, samples):\n\n", cmp.DB)
			for _, n := range notes {
				fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(n, "\n", " "))
			}
		}
	}
	return b.String()
}

func cellErr(s string) string {
	if s == "" {
		return "ok"
	}
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strings.ReplaceAll(s, "|", "/")
}

type wallStats struct{ median, mean, max float64 }

func runStats(runs []clientRun) wallStats {
	if len(runs) == 0 {
		return wallStats{}
	}
	s := make([]float64, len(runs))
	var sum float64
	for i, r := range runs {
		s[i] = r.Seconds
		sum += r.Seconds
	}
	sort.Float64s(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return wallStats{median: med, mean: sum / float64(len(s)), max: s[len(s)-1]}
}

func cmdOut(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func cpuModel() string {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown model"
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown model"
}

func memTotal() string {
	raw, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb); err == nil {
				return fmt.Sprintf("%.1f GiB", float64(kb)/1024/1024)
			}
		}
	}
	return "unknown"
}

func pgVersion(ctx context.Context, dsn string) string {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "unreachable"
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&v); err != nil {
		return "unknown"
	}
	return v
}

// renderTargets checks the figures of one database kind against issue 4's
// targets. Each row says what was compared, so a miss is visible as such.
func renderTargets(b *strings.Builder, o compareOptions, cmp dbComparison) {
	py, gl := cmp.Servers[0], cmp.Servers[1]
	type target struct{ what, figure, status string }
	var ts []target
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	ratio := func(wl string, want float64) {
		rp, okP := cmp.Results[wl][py]
		rg, okG := cmp.Results[wl][gl]
		what := fmt.Sprintf("%s throughput at least %gx Python's", wl, want)
		if !okP || !okG || rp.Headline.Value <= 0 {
			ts = append(ts, target{what, "not measured", "**missed**"})
			return
		}
		r := rg.Headline.Value / rp.Headline.Value
		ts = append(ts, target{what, fmt.Sprintf("%.1f vs %.1f %s: %.1fx", rg.Headline.Value, rp.Headline.Value, rg.Headline.Unit, r), verdict(r >= want)})
	}
	if cmp.DB == "postgres" {
		ratio("lifecycle", 10)
	} else {
		ratio("lifecycle", 20)
		if rg, ok := cmp.Results["lifecycle"][gl]; ok {
			h := rg.HeadlineSummary()
			ts = append(ts, target{"lifecycle p99 under 25 ms, whole flow run (8 requests and a websocket write)", fmt.Sprintf("%.1f ms", h.P99Ms), verdict(h.P99Ms < 25)})
			var worst OpSummary
			for _, op := range rg.Ops {
				if op.Op != rg.HeadlineOp && !strings.HasPrefix(op.Op, "events_in") && op.P99Ms > worst.P99Ms {
					worst = op
				}
			}
			ts = append(ts, target{"lifecycle p99 under 25 ms, per request (the slowest request kind)", fmt.Sprintf("%.1f ms (%s)", worst.P99Ms, worst.Op), verdict(worst.P99Ms < 25)})
			if c := cmp.Ceiling; c != nil && c.best() > 0 {
				f := rg.Headline.Value / c.best()
				ts = append(ts, target{"lifecycle at least 50% of the SQLite ceiling (the better of its two figures)", fmt.Sprintf("%.1f of %.1f flow runs/s: %.0f%%", rg.Headline.Value, c.best(), 100*f), verdict(f >= 0.5)})
			}
		}
		ratio("transitions", 20)
		if r := cmp.GoReads; r != nil {
			h := r.HeadlineSummary()
			at := fmt.Sprintf("%d task runs", int(readsFlowRunsAtScale1*o.goPrefill+0.5)*readsTasksPerFlowRun)
			ts = append(ts, target{"filter reads p95 under 50 ms at 1,000,000 task runs", fmt.Sprintf("%.1f ms at %s", h.P95Ms, at), verdict(h.P95Ms < 50 && o.goPrefill >= 1 && r.Total.Errors == 0)})
		} else {
			ts = append(ts, target{"filter reads p95 under 50 ms at 1,000,000 task runs", "not measured (-go-prefill-scale 0 or the run failed)", "**missed**"})
		}
		if rg, ok := cmp.Results["events"][gl]; ok {
			m, _ := rg.Metric("events persisted")
			ts = append(ts, target{"events at least 20,000/s persisted", fmt.Sprintf("%.0f events/s", m.Value), verdict(m.Value >= 20000 && rg.Total.Errors == 0)})
		}
		idleG, idleP := cmp.Idle[gl], cmp.Idle[py]
		ts = append(ts, target{"idle RSS under 30 MB (30,000,000 bytes)", fmt.Sprintf("%.1f MB", float64(idleG)*1024/1e6), verdict(idleG > 0 && float64(idleG)*1024 < 30e6)})
		if idleG > 0 && idleP > 0 {
			ts = append(ts, target{"idle RSS at least 10x below Python's", fmt.Sprintf("%.1f vs %.1f MiB: %.1fx", float64(idleG)/1024, float64(idleP)/1024, float64(idleP)/float64(idleG)), verdict(idleP >= 10*idleG)})
		}
	}
	fmt.Fprintf(b, "\nTargets (%s):\n\n| target | figure | |\n|---|---|---|\n", cmp.DB)
	for _, t := range ts {
		fmt.Fprintf(b, "| %s | %s | %s |\n", t.what, t.figure, t.status)
	}
}
