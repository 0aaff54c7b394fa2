package main

import (
	"context"
	"fmt"
	"sync/atomic"
)

// transitionsWorkload measures orchestration alone: each iteration proposes
// RUNNING and then COMPLETED for an existing flow run. Prefect lets a run
// without a persisted result leave COMPLETED for RUNNING again (a rerun), so
// a few runs per worker serve the whole duration and every proposal must be
// ACCEPTed with a new state (201). Each worker owns its runs, so proposals
// never race each other.
type transitionsWorkload struct {
	runID string
	c     *Client
	runs  [][]string // per worker
	next  []int
}

// transitionsRunsPerWorker spreads the writes over several rows, as
// concurrent flow runs do.
const transitionsRunsPerWorker = 4

func newTransitionsWorkload(runID string) *transitionsWorkload {
	return &transitionsWorkload{runID: runID}
}

func (w *transitionsWorkload) Name() string { return "transitions" }

func (w *transitionsWorkload) Headline() (string, string) { return "total", "transitions/s" }

func (w *transitionsWorkload) Setup(ctx context.Context, c *Client, workers int) error {
	w.c = c
	name := "bench-transitions-" + w.runID
	flowID, err := createFlow(ctx, c, name)
	if err != nil {
		return err
	}
	w.runs = make([][]string, workers)
	w.next = make([]int, workers)
	var retries atomic.Int64
	for i := range w.runs {
		for j := range transitionsRunsPerWorker {
			fr, err := createFlowRunRetrying(ctx, c, "create_flow_run", flowID, name, []string{"bench", "bench-" + w.runID}, "PENDING",
				fmt.Sprintf("bench-transitions-%s-%d-%d", w.runID, i, j), &retries)
			if err != nil {
				return fmt.Errorf("create the runs to transition: %w", err)
			}
			w.runs[i] = append(w.runs[i], fr.ID)
		}
	}
	return nil
}

func (w *transitionsWorkload) Op(ctx context.Context, worker int) error {
	runs := w.runs[worker]
	id := runs[w.next[worker]%len(runs)]
	w.next[worker]++
	if err := setFlowRunState(ctx, w.c, "set_state RUNNING", id, "RUNNING"); err != nil {
		return err
	}
	return setFlowRunState(ctx, w.c, "set_state COMPLETED", id, "COMPLETED")
}
