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

// workloads maps -w names to constructors; each run gets a fresh instance so
// names and state never leak between runs. runID makes created names unique
// across runs against the same database.
var workloads = map[string]func(runID string) Workload{
	"flows": func(runID string) Workload { return newFlowsWorkload(runID) },
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
	phase(ctx, w, cfg.Concurrency, cfg.Duration)
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	c.SetRecorder(nil)
	res.ServerPeakRSS = rss.peak()

	res.ElapsedS = elapsed.Seconds()
	res.Ops, res.Total = rec.Summaries(elapsed)
	res.ClientCPUPct = 100 * cpu.Seconds() / elapsed.Seconds()
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
