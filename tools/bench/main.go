// Command bench is a load generator for a Prefect API server: ours or the
// Python `prefect server start`. Each selected workload runs with a fixed
// number of workers for a warm-up and then a measured duration; every
// response is checked for its status and against the OpenAPI document, and
// failures stay in the figures.
//
//	cd tools && go run ./bench -url http://127.0.0.1:4200/api -w flows -d 10s
//	cd tools && go run ./bench compare   # Python 3.9.1 server vs ours, writes BENCHMARKS.md
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Report is the -json output, stable for a compare script.
type Report struct {
	URL         string           `json:"url"`
	Concurrency int              `json:"concurrency"`
	WarmupS     float64          `json:"warmup_s"`
	DurationS   float64          `json:"duration_s"`
	Validate    bool             `json:"validate"`
	Validation  string           `json:"validation"`
	GOMAXPROCS  int              `json:"client_gomaxprocs"`
	Server      *ServerMemory    `json:"server_memory,omitempty"`
	Workloads   []WorkloadResult `json:"workloads"`
}

// ServerMemory is the server's resident memory around the whole run, in kB.
type ServerMemory struct {
	PID        int   `json:"pid"`
	IdleRSS    int64 `json:"idle_rss_kb"`     // before the first request of the run
	RunPeak    int64 `json:"run_peak_rss_kb"` // sampled maximum while workloads ran
	AfterRSS   int64 `json:"after_rss_kb"`
	VmHWMAfter int64 `json:"vmhwm_after_kb"` // kernel high-water mark, includes start-up
}

type options struct {
	url         string
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	workloads   string
	spec        string
	jsonOut     bool
	validate    bool
	pid         int
	prefill     float64
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	runner := run
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "compare" {
		runner, args = runCompare, args[1:]
	}
	if err := runner(ctx, args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.url, "url", "http://127.0.0.1:4200/api", "Prefect API base URL")
	fs.IntVar(&o.concurrency, "c", 16, "concurrent workers")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "measured duration per workload")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured warm-up per workload")
	fs.StringVar(&o.workloads, "w", "flows", "comma-separated workloads: "+workloadNames())
	fs.StringVar(&o.spec, "spec", "", "OpenAPI document to validate responses against (default: ../openapi/prefect-api.json, then the 3.9.1 dump)")
	fs.BoolVar(&o.jsonOut, "json", false, "print a machine-readable JSON report instead of tables")
	fs.BoolVar(&o.validate, "validate", true, "validate response bodies against the OpenAPI document (costs client CPU)")
	fs.IntVar(&o.pid, "pid", 0, "server process id: report its RSS (with its child processes) from /proc (idle before, peak during and after)")
	fs.Float64Var(&o.prefill, "prefill-scale", defaultPrefillScale, "reads workload prefill size: 1 = 100,000 flow runs and 1,000,000 task runs")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if o.concurrency < 1 {
		return o, errors.New("-c must be at least 1")
	}
	if o.duration <= 0 {
		return o, errors.New("-d must be positive")
	}
	if o.warmup < 0 {
		return o, errors.New("-warmup must not be negative")
	}
	if o.prefill <= 0 || o.prefill > 10 {
		return o, errors.New("-prefill-scale must be in (0, 10]")
	}
	u, err := url.Parse(o.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return o, fmt.Errorf("-url %q is not an http(s) URL", o.url)
	}
	for _, n := range strings.Split(o.workloads, ",") {
		if _, ok := workloads[strings.TrimSpace(n)]; !ok {
			return o, fmt.Errorf("unknown workload %q (have %s)", n, workloadNames())
		}
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}

	var v *Validator
	if o.validate {
		spec, err := findSpec(o.spec)
		if err != nil {
			return err
		}
		if v, err = NewValidator(ctx, spec, o.url); err != nil {
			return err
		}
	}
	c := NewClient(o.url, o.concurrency, v)

	rep := Report{
		URL:         o.url,
		Concurrency: o.concurrency,
		WarmupS:     o.warmup.Seconds(),
		DurationS:   o.duration.Seconds(),
		Validate:    o.validate,
		Validation:  v.Mode(),
		GOMAXPROCS:  runtime.GOMAXPROCS(0),
	}
	if o.pid > 0 {
		idle, err := treeRSS(o.pid)
		if err != nil {
			return fmt.Errorf("-pid %d: %w", o.pid, err)
		}
		rep.Server = &ServerMemory{PID: o.pid, IdleRSS: idle}
	}
	sampler := startRSSSampler(o.pid)

	runID, err := newRunID()
	if err != nil {
		sampler.close()
		return err
	}
	cfg := RunConfig{Concurrency: o.concurrency, Warmup: o.warmup, Duration: o.duration}
	if !o.jsonOut {
		printHeader(stdout, rep)
	}
	var runErr error
	for _, name := range strings.Split(o.workloads, ",") {
		w := workloads[strings.TrimSpace(name)](WorkloadOptions{RunID: runID, PrefillScale: o.prefill})
		res, err := runWorkload(ctx, c, w, cfg, sampler)
		if err != nil {
			runErr = err
			break
		}
		rep.Workloads = append(rep.Workloads, res)
		if !o.jsonOut {
			printWorkload(stdout, res)
		}
	}
	sampler.close()

	if rep.Server != nil {
		for _, w := range rep.Workloads {
			rep.Server.RunPeak = max(rep.Server.RunPeak, w.ServerPeakRSS)
		}
		rep.Server.AfterRSS, _ = treeRSS(o.pid)
		_, rep.Server.VmHWMAfter, _ = procMemory(o.pid)
		if !o.jsonOut {
			s := rep.Server
			fmt.Fprintf(stdout, "server pid %d RSS: idle %s, peak during run %s, after %s (VmHWM %s incl. start-up)\n",
				s.PID, mib(s.IdleRSS), mib(s.RunPeak), mib(s.AfterRSS), mib(s.VmHWMAfter))
		}
	}
	if o.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	}
	return runErr
}

func newRunID() (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func mib(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }

func printHeader(w io.Writer, r Report) {
	fmt.Fprintf(w, "target %s  concurrency %d  warm-up %s  measured %s per workload\nvalidation: %s\n",
		r.URL, r.Concurrency, time.Duration(r.WarmupS*float64(time.Second)), time.Duration(r.DurationS*float64(time.Second)), r.Validation)
}

func printWorkload(w io.Writer, res WorkloadResult) {
	fmt.Fprintf(w, "\nworkload %s: %.2fs measured, %.1f %s, client CPU %.0f%% of one core",
		res.Name, res.ElapsedS, res.Headline.Value, res.Headline.Unit, res.ClientCPUPct)
	if res.ServerPeakRSS > 0 {
		fmt.Fprintf(w, ", server peak RSS %s", mib(res.ServerPeakRSS))
	}
	if res.WarmupErrors > 0 {
		fmt.Fprintf(w, ", %d errors during warm-up (not counted)", res.WarmupErrors)
	}
	fmt.Fprintln(w)
	// Names are padded by hand so they read left-aligned while the figures
	// stay right-aligned.
	width := len("operation")
	for _, s := range res.Ops {
		width = max(width, len(s.Op))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\ttotal\treq/s\tp50 ms\tp95 ms\tp99 ms\tmax ms\terrors\tvalidate µs\t\n", width, "operation")
	row := func(s OpSummary) {
		fmt.Fprintf(tw, "%-*s\t%d\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%.0f\t\n",
			width, s.Op, s.Count, s.RPS, s.P50Ms, s.P95Ms, s.P99Ms, s.MaxMs, s.Errors, s.ValidateMeanUs)
	}
	for _, s := range res.Ops {
		row(s)
	}
	row(res.Total)
	tw.Flush()
	for _, m := range res.Metrics {
		fmt.Fprintf(w, "  %s: %.2f %s\n", m.Name, m.Value, m.Unit)
	}
	for _, p := range res.Problems {
		fmt.Fprintf(w, "  PROBLEM: %s\n", p)
	}
	for _, s := range res.Ops {
		for _, e := range s.ErrorSamples {
			fmt.Fprintf(w, "  error %s: %s\n", s.Op, e)
		}
	}
}
