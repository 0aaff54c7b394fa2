package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Workload is one benchmark scenario. The runner calls Setup once, then Op
// in a loop from each of the -c workers, first for the warm-up and then for
// the measured duration. Op performs one iteration of the scenario (it may
// issue several requests; each is recorded by the Client under its own
// operation name) and returns an error only for failures that make the rest
// of the iteration meaningless; those are already recorded by the Client.
//
// A workload that opens long-lived resources (websockets, subscriptions)
// implements Teardowner as well.
type Workload interface {
	Name() string
	// Setup prepares shared data (prefill, per-worker state) before any Op;
	// workers is the number of goroutines that will call Op, numbered from 0.
	Setup(ctx context.Context, c *Client, workers int) error
	// Op runs one iteration for worker; calls with the same worker never overlap.
	Op(ctx context.Context, worker int) error
}

// Teardowner is implemented by workloads that hold resources after the run.
type Teardowner interface {
	Teardown(ctx context.Context) error
}

// MeasureStarter is implemented by workloads whose own figures must tell the
// warm-up from the measured phase (events sent, for instance); it is called
// right before the measured phase starts, while no Op runs.
type MeasureStarter interface {
	MeasureStart(at time.Time)
}

// Finisher is implemented by workloads that check or measure something after
// the measured phase (work the server does asynchronously, prefill figures).
// It adds metrics to res; a returned error is reported as a problem of the
// run and counted as an error, never dropped.
type Finisher interface {
	Finish(ctx context.Context, res *WorkloadResult) error
}

// Headliner names the operation whose rate is the workload's throughput and
// its unit, for the summary and the comparison table; without it the total
// request rate is the headline.
type Headliner interface {
	Headline() (op, unit string)
}

// WorkloadOptions are the knobs shared by every workload constructor.
type WorkloadOptions struct {
	// RunID makes created names unique across runs against the same database.
	RunID string
	// PrefillScale scales the reads workload's prefill: 1 is 100,000 flow
	// runs and 1,000,000 task runs.
	PrefillScale float64
}

// workloads maps -w names to constructors; each run gets a fresh instance so
// names and state never leak between runs.
var workloads = map[string]func(o WorkloadOptions) Workload{
	"flows":       func(o WorkloadOptions) Workload { return newFlowsWorkload(o.RunID) },
	"lifecycle":   func(o WorkloadOptions) Workload { return newLifecycleWorkload(o.RunID) },
	"transitions": func(o WorkloadOptions) Workload { return newTransitionsWorkload(o.RunID) },
	"reads":       func(o WorkloadOptions) Workload { return newReadsWorkload(o.RunID, o.PrefillScale) },
	"events":      func(o WorkloadOptions) Workload { return newEventsWorkload(o.RunID) },
}

func workloadNames() string {
	names := make([]string, 0, len(workloads))
	for n := range workloads {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

// RunConfig is the shape of one measured run.
type RunConfig struct {
	Concurrency int
	Warmup      time.Duration
	Duration    time.Duration
}

// WorkloadResult is what one workload produced.
type WorkloadResult struct {
	Name          string      `json:"name"`
	ElapsedS      float64     `json:"elapsed_s"`
	Ops           []OpSummary `json:"ops"`
	Total         OpSummary   `json:"total"`
	WarmupErrors  uint64      `json:"warmup_errors"`
	ClientCPUPct  float64     `json:"client_cpu_pct"` // of one core, over the measured phase
	ServerPeakRSS int64       `json:"server_peak_rss_kb,omitempty"`
	// Headline is the throughput figure of the workload in its own unit.
	Headline Metric `json:"headline"`
	// HeadlineOp is the operation whose latencies stand for the workload.
	HeadlineOp string   `json:"headline_op"`
	Metrics    []Metric `json:"metrics,omitempty"`
	// Problems are failures found after the measured phase (records the
	// server never stored, for instance); each also counts in Total.Errors.
	Problems []string `json:"problems,omitempty"`
}

// Metric is a workload-specific figure (prefill time, events persisted/s).
type Metric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// AddMetric appends a figure to the result.
func (r *WorkloadResult) AddMetric(name string, value float64, unit string) {
	r.Metrics = append(r.Metrics, Metric{Name: name, Value: value, Unit: unit})
}

// Metric returns the named figure, if the workload reported it.
func (r *WorkloadResult) Metric(name string) (Metric, bool) {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m, true
		}
	}
	return Metric{}, false
}

// HeadlineSummary is the summary of the headline operation (the total when
// the workload has none or never recorded it).
func (r *WorkloadResult) HeadlineSummary() OpSummary {
	for _, s := range r.Ops {
		if s.Op == r.HeadlineOp {
			return s
		}
	}
	return r.Total
}

// runWorkload drives w with cfg.Concurrency workers. Each worker finishes its
// current iteration when a phase ends rather than being cancelled, so no
// request is cut off and counted as a spurious error; the measured elapsed
// time runs until the last worker has stopped.
func runWorkload(ctx context.Context, c *Client, w Workload, cfg RunConfig, rss *rssSampler) (WorkloadResult, error) {
	res := WorkloadResult{Name: w.Name()}
	c.SetRecorder(nil)
	if err := w.Setup(ctx, c, cfg.Concurrency); err != nil {
		return res, fmt.Errorf("workload %s setup: %w", w.Name(), err)
	}
	if td, ok := w.(Teardowner); ok {
		defer func() {
			c.SetRecorder(nil)
			// Teardown must run even after an interrupt.
			tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = td.Teardown(tctx)
		}()
	}

	warm := NewRecorder()
	c.SetRecorder(warm)
	phase(ctx, w, cfg.Concurrency, cfg.Warmup)
	_, warmTotal := warm.Summaries(cfg.Warmup)
	res.WarmupErrors = warmTotal.Errors

	rec := NewRecorder()
	c.SetRecorder(rec)
	rss.reset()
	cpu0 := processCPU()
	start := time.Now()
	if ms, ok := w.(MeasureStarter); ok {
		ms.MeasureStart(start)
	}
	phase(ctx, w, cfg.Concurrency, cfg.Duration)
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	c.SetRecorder(nil)

	res.ElapsedS = elapsed.Seconds()
	res.Ops, res.Total = rec.Summaries(elapsed)
	res.ClientCPUPct = 100 * cpu.Seconds() / elapsed.Seconds()
	unit := "req/s"
	res.HeadlineOp = "total"
	if h, ok := w.(Headliner); ok {
		res.HeadlineOp, unit = h.Headline()
	}
	// Throughput counts successes only: a failed iteration often ends early
	// and would otherwise flatter the server that fails.
	hs := res.HeadlineSummary()
	res.Headline = Metric{Name: "throughput", Value: float64(hs.Count-hs.Errors) / elapsed.Seconds(), Unit: unit}
	if f, ok := w.(Finisher); ok && ctx.Err() == nil {
		if err := f.Finish(ctx, &res); err != nil {
			res.Problems = append(res.Problems, err.Error())
			res.Total.Errors++
		}
	}
	// The peak covers the asynchronous work a Finisher waited for as well.
	res.ServerPeakRSS = rss.peak()
	return res, ctx.Err()
}

func phase(ctx context.Context, w Workload, workers int, d time.Duration) {
	if d <= 0 {
		return
	}
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				_ = w.Op(ctx, i)
			}
		})
	}
	wg.Wait()
}

// processCPU is this process's user+system CPU time, to show what response
// validation costs the client.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
