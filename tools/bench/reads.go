package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// readsWorkload measures the UI's heaviest reads over a large database:
// /flow_runs/filter and /task_runs/filter with a state filter and a tag
// filter, sorted, limit 200. Setup prefills, at scale 1, 100,000 flow runs
// (POST /flow_runs/ from many workers: the API has no bulk create) and
// 1,000,000 task runs (ten per flow run, one task-run event each over
// /events/in, which every server records as task runs), and waits until all
// task runs are stored; the prefill time is part of the report.
//
// Rows are spread deterministically over states and tag buckets, so each
// query knows exactly how many rows match and checks the page: the count
// (min(matches, 200)), every row's state and tags, and the sort order.
type readsWorkload struct {
	runID string
	scale float64
	c     *Client
	tag   string // on every prefilled row of this run

	flowMatches map[[2]int]int // [state index, bucket] -> created flow runs
	taskMatches map[[2]int]int
	rngs        []*rand.Rand

	prefillFlowS, prefillTaskS float64
	flowRuns, taskRuns         int
	prefillErrors              int64
	prefillRetries             atomic.Int64
}

const (
	readsFlowRunsAtScale1 = 100_000
	readsTasksPerFlowRun  = 10
	readsBuckets          = 5
	readsPageSize         = 200
	// readsValidateOneIn: see Request.ValidateOneIn.
	readsValidateOneIn = 10
	// defaultPrefillScale keeps `make bench-compare` within its time budget
	// on a 2-core machine: the Python server creates flow runs one request
	// at a time at a few hundred per second.
	defaultPrefillScale = 0.01
)

// The prefilled flow runs cycle through these states, the task runs through
// readsTaskStates; queries ask for the first two and the first one.
var (
	readsFlowStates  = []string{"COMPLETED", "FAILED", "RUNNING", "PENDING"}
	readsTaskStates  = []string{"COMPLETED", "FAILED", "RUNNING"}
	readsFlowWanted  = []int{0, 1}
	readsTaskWanted  = []int{0}
	readsPrefillSock = 8 // event sockets the task-run prefill writes to
)

// readsPrefillChunkRuns flow runs' task runs (5,000) are sent before the
// prefill waits for them to be stored; readsPrefillStall is how long the
// stored count may stand still before the prefill fails.
const (
	readsPrefillChunkRuns = 500
	readsPrefillStall     = 30 * time.Second
)

func newReadsWorkload(runID string, scale float64) *readsWorkload {
	return &readsWorkload{runID: runID, scale: scale}
}

func (w *readsWorkload) Name() string { return "reads" }

func (w *readsWorkload) Headline() (string, string) { return "total", "queries/s" }

func (w *readsWorkload) bucketTag(b int) string { return fmt.Sprintf("bench-%s-b%d", w.runID, b) }

func (w *readsWorkload) Setup(ctx context.Context, c *Client, workers int) error {
	w.c = c
	w.tag = "bench-prefill-" + w.runID
	w.flowMatches = map[[2]int]int{}
	w.taskMatches = map[[2]int]int{}
	w.rngs = make([]*rand.Rand, workers)
	for i := range w.rngs {
		w.rngs[i] = rand.New(rand.NewPCG(uint64(i)+7, 0x5851f42d4c957f2d))
	}
	n := max(1, int(math.Round(readsFlowRunsAtScale1*w.scale)))
	flowName := "bench-prefill-" + w.runID
	flowID, err := createFlow(ctx, c, flowName)
	if err != nil {
		return err
	}

	start := time.Now()
	runs, err := w.prefillFlowRuns(ctx, flowID, flowName, n, max(workers, 16))
	if err != nil {
		return err
	}
	w.prefillFlowS = time.Since(start).Seconds()
	w.flowRuns = len(runs)

	start = time.Now()
	if err := w.prefillTaskRuns(ctx, runs); err != nil {
		return err
	}
	w.prefillTaskS = time.Since(start).Seconds()
	return nil
}

type prefilledRun struct {
	ref   flowRunRef
	index int
}

// prefillFlowRuns creates n flow runs from par workers; a create that still
// fails after the retries is counted and left out of the expected figures.
func (w *readsWorkload) prefillFlowRuns(ctx context.Context, flowID, flowName string, n, par int) ([]prefilledRun, error) {
	var next atomic.Int64
	var mu sync.Mutex
	runs := make([]prefilledRun, 0, n)
	var wg sync.WaitGroup
	for range par {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				state, bucket := i%len(readsFlowStates), (i/len(readsFlowStates))%readsBuckets
				ref, err := createFlowRunRetrying(ctx, w.c, "prefill_flow_run", flowID, flowName,
					[]string{w.tag, w.bucketTag(bucket)}, readsFlowStates[state], fmt.Sprintf("%s-%d", w.tag, i), &w.prefillRetries)
				mu.Lock()
				if err != nil {
					w.prefillErrors++
				} else {
					runs = append(runs, prefilledRun{ref: ref, index: i})
					w.flowMatches[[2]int{state, bucket}]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// The expected figures count only created runs, so some failures are
	// harmless; past 10% the database is not the one the workload describes.
	if w.prefillErrors*10 > int64(n) {
		return nil, fmt.Errorf("prefill: %d of %d flow run creates failed", w.prefillErrors, n)
	}
	return runs, nil
}

// prefillTaskRuns sends one final-state event per task run, in chunks: each
// chunk must be stored before the next is sent, so a server that persists
// slower than it reads sockets is not flooded into dropping events (the
// Python server drops what exceeds its queues), and the time is that of
// task runs stored, not merely sent. A chunk whose stored count stops
// growing fails the prefill.
func (w *readsWorkload) prefillTaskRuns(ctx context.Context, runs []prefilledRun) error {
	socks := make([]*eventSocket, readsPrefillSock)
	defer func() {
		for _, s := range socks {
			s.close()
		}
	}()
	for i := range socks {
		var err error
		if socks[i], err = dialEvents(ctx, w.c); err != nil {
			return err
		}
	}
	sent := 0
	for lo := 0; lo < len(runs); lo += readsPrefillChunkRuns {
		chunk := runs[lo:min(lo+readsPrefillChunkRuns, len(runs))]
		if err := w.sendTaskRunChunk(ctx, socks, chunk); err != nil {
			return err
		}
		want := len(chunk) * readsTasksPerFlowRun
		// Counted by the chunk's flow runs, which the task runs' flow run
		// index answers from the chunk's rows alone: a count by the
		// prefill's tag would scan every task run stored so far, each
		// poll, and at full scale compete with the writes it waits for.
		ids := make([]string, len(chunk))
		for i, r := range chunk {
			ids[i] = r.ref.ID
		}
		filter := map[string]any{"flow_runs": map[string]any{"id": map[string]any{"any_": ids}}}
		var got, last int
		lastProgress := time.Now()
		if _, err := pollUntil(ctx, time.Hour, func() (bool, error) {
			n, err := countTaskRuns(ctx, w.c, filter)
			if err != nil {
				return false, err
			}
			got = n
			if n > last {
				last, lastProgress = n, time.Now()
			}
			if n < want && time.Since(lastProgress) > readsPrefillStall {
				return false, fmt.Errorf("stored count stopped growing for %s: %w", readsPrefillStall, errGiveUp)
			}
			return n >= want, nil
		}); err != nil {
			return fmt.Errorf("prefill: %d of %d task runs sent so far stored: %w", sent+got, sent+want, err)
		}
		sent += want
	}
	w.taskRuns = sent
	return nil
}

// sendTaskRunChunk writes the task-run events of chunk over all sockets in
// parallel and adds them to the expected figures.
func (w *readsWorkload) sendTaskRunChunk(ctx context.Context, socks []*eventSocket, chunk []prefilledRun) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	errs := make([]error, len(socks))
	for s, sock := range socks {
		wg.Go(func() {
			local := map[[2]int]int{}
			defer func() {
				mu.Lock()
				for k, v := range local {
					w.taskMatches[k] += v
				}
				mu.Unlock()
			}()
			for r := s; r < len(chunk); r += len(socks) {
				run := chunk[r]
				for k := range readsTasksPerFlowRun {
					i := run.index*readsTasksPerFlowRun + k
					state, bucket := i%len(readsTaskStates), (i/len(readsTaskStates))%readsBuckets
					tr := newTaskRunSpec(run.ref, fmt.Sprintf("prefill_task-%d", k), k, []string{w.tag, w.bucketTag(bucket)})
					now := time.Now()
					started := now.Add(-time.Second)
					_, frame, err := taskRunEvent(tr, "", readsTaskStates[state], now, started, &started, 1, "")
					if err == nil {
						err = sock.send(ctx, frame)
					}
					if err != nil {
						errs[s] = fmt.Errorf("prefill /events/in write: %w", err)
						return
					}
					local[[2]int{state, bucket}]++
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (w *readsWorkload) Op(ctx context.Context, worker int) error {
	rng := w.rngs[worker]
	bucket := rng.IntN(readsBuckets)
	if err := w.readFlowRuns(ctx, bucket); err != nil {
		return err
	}
	return w.readTaskRuns(ctx, rng.IntN(readsBuckets))
}

// runRow is the part of a flow run or task run the checks read.
type runRow struct {
	ID                string   `json:"id"`
	StateType         string   `json:"state_type"`
	Tags              []string `json:"tags"`
	ExpectedStartTime *string  `json:"expected_start_time"`
}

func (w *readsWorkload) readFlowRuns(ctx context.Context, bucket int) error {
	types := make([]string, 0, len(readsFlowWanted))
	want := 0
	for _, s := range readsFlowWanted {
		types = append(types, readsFlowStates[s])
		want += w.flowMatches[[2]int{s, bucket}]
	}
	var page []runRow
	_, err := w.c.Do(ctx, Request{
		Op: "read_flow_runs (state+tags, sorted, 200)", Method: "POST", Path: "/flow_runs/filter",
		Body: map[string]any{
			"flow_runs": map[string]any{
				"state": map[string]any{"type": map[string]any{"any_": types}},
				"tags":  map[string]any{"all_": []string{w.tag, w.bucketTag(bucket)}},
			},
			"sort": "EXPECTED_START_TIME_DESC", "limit": readsPageSize,
		},
		Expect: []int{200}, Out: &page, ValidateOneIn: readsValidateOneIn,
		Check: func(int) error {
			return checkRunPage(page, types, []string{w.tag, w.bucketTag(bucket)}, min(want, readsPageSize))
		},
	})
	return err
}

func (w *readsWorkload) readTaskRuns(ctx context.Context, bucket int) error {
	types := make([]string, 0, len(readsTaskWanted))
	want := 0
	for _, s := range readsTaskWanted {
		types = append(types, readsTaskStates[s])
		want += w.taskMatches[[2]int{s, bucket}]
	}
	var page []runRow
	_, err := w.c.Do(ctx, Request{
		Op: "read_task_runs (state+tags, sorted, 200)", Method: "POST", Path: "/task_runs/filter",
		Body: map[string]any{
			"task_runs": map[string]any{
				"state": map[string]any{"type": map[string]any{"any_": types}},
				"tags":  map[string]any{"all_": []string{w.tag, w.bucketTag(bucket)}},
			},
			"sort": "EXPECTED_START_TIME_DESC", "limit": readsPageSize,
		},
		Expect: []int{200}, Out: &page, ValidateOneIn: readsValidateOneIn,
		Check: func(int) error {
			return checkRunPage(page, types, []string{w.tag, w.bucketTag(bucket)}, min(want, readsPageSize))
		},
	})
	return err
}

// checkRunPage verifies one filtered page: its exact length, that every row
// matches the filter, and that expected start times never increase.
func checkRunPage(page []runRow, types, tags []string, wantLen int) error {
	if len(page) != wantLen {
		return fmt.Errorf("%d rows returned, want %d", len(page), wantLen)
	}
	var prev time.Time
	for i, r := range page {
		if !slices.Contains(types, r.StateType) {
			return fmt.Errorf("row %s has state %s, filter was %v", r.ID, r.StateType, types)
		}
		for _, t := range tags {
			if !slices.Contains(r.Tags, t) {
				return fmt.Errorf("row %s has tags %v, filter needs %v", r.ID, r.Tags, tags)
			}
		}
		if r.ExpectedStartTime == nil {
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, *r.ExpectedStartTime)
		if err != nil {
			return fmt.Errorf("row %s expected_start_time %q: %w", r.ID, *r.ExpectedStartTime, err)
		}
		if i > 0 && !prev.IsZero() && ts.After(prev) {
			return fmt.Errorf("not sorted by expected_start_time desc: %s after %s", ts.Format(time.RFC3339Nano), prev.Format(time.RFC3339Nano))
		}
		prev = ts
	}
	return nil
}

// Finish reports the prefill figures.
func (w *readsWorkload) Finish(_ context.Context, res *WorkloadResult) error {
	res.AddMetric("prefill flow runs", float64(w.flowRuns), "rows")
	res.AddMetric("prefill flow runs took", w.prefillFlowS, "s")
	res.AddMetric("prefill flow runs rate", float64(w.flowRuns)/w.prefillFlowS, "rows/s")
	res.AddMetric("prefill task runs", float64(w.taskRuns), "rows")
	res.AddMetric("prefill task runs took (sent until stored)", w.prefillTaskS, "s")
	res.AddMetric("prefill task runs rate", float64(w.taskRuns)/w.prefillTaskS, "rows/s")
	if n := w.prefillRetries.Load(); n > 0 {
		res.AddMetric("prefill flow run creates retried", float64(n), "requests")
	}
	if w.prefillErrors > 0 {
		res.AddMetric("prefill flow run create errors", float64(w.prefillErrors), "requests")
	}
	return nil
}
