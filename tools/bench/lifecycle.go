package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// lifecycleWorkload is what the 3.9.1 client and runner do for one flow run
// of a served flow with three tasks: create the flow run (SCHEDULED, as a
// deployment run is), set_state PENDING and RUNNING, the three task runs as
// Pending/Running/Completed events over the worker's /events/in socket, one
// batched POST /logs/ of 10 lines, and set_state COMPLETED. Its throughput
// is in flow runs per second; after the run it checks that the server
// recorded every task run of a sample of flow runs as COMPLETED.
type lifecycleWorkload struct {
	runID    string
	c        *Client
	flowID   string
	flowName string
	sockets  []*eventSocket

	mu       sync.Mutex
	finished []string // flow runs whose whole lifecycle succeeded, newest last
}

// lifecycleTasks is the number of task runs per flow run.
const lifecycleTasks = 3

// lifecycleLogLines is the size of the one log batch per flow run.
const lifecycleLogLines = 10

// lifecycleCheckSample bounds how many finished flow runs the after-run
// check reads back.
const lifecycleCheckSample = 100

func newLifecycleWorkload(runID string) *lifecycleWorkload {
	return &lifecycleWorkload{runID: runID}
}

func (w *lifecycleWorkload) Name() string { return "lifecycle" }

func (w *lifecycleWorkload) Headline() (string, string) {
	return "flow_run (whole lifecycle)", "flow runs/s"
}

func (w *lifecycleWorkload) Setup(ctx context.Context, c *Client, workers int) error {
	w.c = c
	w.flowName = "bench-lifecycle-" + w.runID
	var err error
	if w.flowID, err = createFlow(ctx, c, w.flowName); err != nil {
		return err
	}
	w.sockets = make([]*eventSocket, workers)
	for i := range w.sockets {
		if w.sockets[i], err = dialEvents(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

func (w *lifecycleWorkload) Teardown(context.Context) error {
	for _, s := range w.sockets {
		s.close()
	}
	return nil
}

func (w *lifecycleWorkload) Op(ctx context.Context, worker int) error {
	start := time.Now()
	err := w.flowRun(ctx, worker)
	w.c.Record(ctx, "flow_run (whole lifecycle)", time.Since(start), err)
	return err
}

func (w *lifecycleWorkload) flowRun(ctx context.Context, worker int) error {
	fr, err := createFlowRun(ctx, w.c, "create_flow_run", w.flowID, w.flowName, []string{"bench", "bench-" + w.runID}, "SCHEDULED", "")
	if err != nil {
		return err
	}
	if err := setFlowRunState(ctx, w.c, "set_state PENDING", fr.ID, "PENDING"); err != nil {
		return err
	}
	if err := setFlowRunState(ctx, w.c, "set_state RUNNING", fr.ID, "RUNNING"); err != nil {
		return err
	}

	sendStart := time.Now()
	var sendErr error
	for i := range lifecycleTasks {
		tr := newTaskRunSpec(fr, fmt.Sprintf("bench_task-%d", i), i, nil)
		frames, err := taskRunLifecycleEvents(tr, time.Now())
		if err != nil {
			return err
		}
		if sendErr = w.sockets[worker].send(ctx, frames...); sendErr != nil {
			sendErr = fmt.Errorf("/events/in write: %w", sendErr)
			break
		}
	}
	w.c.Record(ctx, "events_in (3 task runs, 9 events)", time.Since(sendStart), sendErr)
	if sendErr != nil {
		// A broken socket stays broken: reconnect for the next iteration.
		w.sockets[worker].close()
		if s, err := dialEvents(ctx, w.c); err == nil {
			w.sockets[worker] = s
		}
		return sendErr
	}

	now := time.Now()
	logs := make([]map[string]any, lifecycleLogLines)
	for i := range logs {
		logs[i] = map[string]any{
			"name": "prefect.flow_runs", "level": 20,
			"message":   fmt.Sprintf("bench log line %d of flow run %s", i, fr.ID),
			"timestamp": prefectTime(now), "flow_run_id": fr.ID, "task_run_id": nil,
		}
	}
	if _, err := w.c.Do(ctx, Request{
		Op: "create_logs (10 lines)", Method: "POST", Path: "/logs/",
		Body: logs, Expect: []int{201},
	}); err != nil {
		return err
	}

	if err := setFlowRunState(ctx, w.c, "set_state COMPLETED", fr.ID, "COMPLETED"); err != nil {
		return err
	}
	w.mu.Lock()
	w.finished = append(w.finished, fr.ID)
	w.mu.Unlock()
	return nil
}

// Finish checks that the task runs of the last finished flow runs exist on
// the server in COMPLETED: servers record them asynchronously from events,
// and a silently dropped event is the failure users cannot see.
func (w *lifecycleWorkload) Finish(ctx context.Context, res *WorkloadResult) error {
	w.mu.Lock()
	sample := w.finished[max(0, len(w.finished)-lifecycleCheckSample):]
	w.mu.Unlock()
	if len(sample) == 0 {
		return nil
	}
	want := len(sample) * lifecycleTasks
	filter := map[string]any{
		"flow_runs": map[string]any{"id": map[string]any{"any_": sample}},
		"task_runs": map[string]any{"state": map[string]any{"type": map[string]any{"any_": []string{"COMPLETED"}}}},
	}
	start := time.Now()
	var got int
	_, err := pollUntil(ctx, 60*time.Second, func() (bool, error) {
		n, err := countTaskRuns(ctx, w.c, filter)
		got = n
		return err == nil && n >= want, err
	})
	if err != nil {
		return fmt.Errorf("task runs of the last %d flow runs: %d of %d recorded as COMPLETED: %w", len(sample), got, want, err)
	}
	res.AddMetric("task runs of the last flow runs recorded after", time.Since(start).Seconds(), "s")
	return nil
}
