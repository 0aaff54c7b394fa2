package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// eventsWorkload measures event ingestion: every worker writes batches of
// events over its own /events/in socket. "Accepted" is what the workers
// wrote to their sockets during the measured phase, which includes what
// still sits in the kernel's socket buffers (on loopback these grow to
// megabytes per socket) when the server reads slower than the workers
// write. The number that counts is therefore the persisted rate: afterwards
// the workload polls /events/filter until every measured event is stored
// and reports measured events / time from the start of the measured phase
// until the last one was readable.
//
// Warm-up and measured events carry different names. A server that drops
// events under load (Python's in-memory broker drops every message beyond
// 10,000 queued per consumer) may keep the warm-up events that filled its
// queue and lose every measured one; the events of the whole run are
// therefore counted too, so the report tells dropping from not persisting.
type eventsWorkload struct {
	runID   string
	c       *Client
	sockets []*eventSocket

	measuring    atomic.Bool
	measureStart time.Time
	sent         atomic.Int64 // measured events whose write returned
	sentWarmup   atomic.Int64 // warm-up events whose write returned
}

// eventsPerOp is how many frames one iteration writes; the Op latency is
// that of the whole batch.
const eventsPerOp = 50

// eventsStallTimeout is how long the stored count may stand still before
// the missing events count as lost; it exceeds every server's flush
// interval. A variable so that tests can shorten it.
var eventsStallTimeout = 20 * time.Second

var errEventsStalled = fmt.Errorf("stored event count stopped growing: %w", errGiveUp)

func newEventsWorkload(runID string) *eventsWorkload { return &eventsWorkload{runID: runID} }

func (w *eventsWorkload) Name() string { return "events" }

func (w *eventsWorkload) Headline() (string, string) { return "events_in (50 events)", "batches/s" }

// Warm-up and measured events carry different names so that the persisted
// count covers exactly the measured ones.
func (w *eventsWorkload) eventName(measured bool) string {
	if measured {
		return "bench.measured." + w.runID
	}
	return "bench.warmup." + w.runID
}

func (w *eventsWorkload) Setup(ctx context.Context, c *Client, workers int) error {
	w.c = c
	w.sockets = make([]*eventSocket, workers)
	var err error
	for i := range w.sockets {
		if w.sockets[i], err = dialEvents(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

func (w *eventsWorkload) Teardown(context.Context) error {
	for _, s := range w.sockets {
		s.close()
	}
	return nil
}

func (w *eventsWorkload) MeasureStart(at time.Time) {
	w.measureStart = at
	w.measuring.Store(true)
}

func (w *eventsWorkload) Op(ctx context.Context, worker int) error {
	measured := w.measuring.Load()
	name := w.eventName(measured)
	frames := make([][]byte, eventsPerOp)
	now := time.Now()
	for i := range frames {
		ev := map[string]any{
			"occurred": prefectTime(now),
			"event":    name,
			"resource": map[string]string{
				"prefect.resource.id":   fmt.Sprintf("bench.worker.%s.%d", w.runID, worker),
				"prefect.resource.name": "bench worker",
			},
			"related": []map[string]string{{
				"prefect.resource.id": "prefect.tag.bench", "prefect.resource.role": "tag",
			}},
			"payload": map[string]any{"seq": i, "note": "benchmark event"},
			"id":      uuid.Must(uuid.NewV7()).String(),
			"follows": nil,
		}
		var err error
		if frames[i], err = json.Marshal(ev); err != nil {
			return err
		}
	}
	start := time.Now()
	n := 0
	var err error
	for _, f := range frames {
		if err = w.sockets[worker].send(ctx, f); err != nil {
			break
		}
		n++
	}
	w.c.Record(ctx, "events_in (50 events)", time.Since(start), err)
	if measured {
		w.sent.Add(int64(n))
	} else {
		w.sentWarmup.Add(int64(n))
	}
	if err != nil {
		w.sockets[worker].close()
		if s, derr := dialEvents(ctx, w.c); derr == nil {
			w.sockets[worker] = s
		}
		return fmt.Errorf("/events/in write: %w", err)
	}
	return nil
}

// Finish waits for the measured events to be stored and reports both rates.
func (w *eventsWorkload) Finish(ctx context.Context, res *WorkloadResult) error {
	sent := w.sent.Load()
	sentAll := sent + w.sentWarmup.Load()
	res.Headline = Metric{Name: "throughput", Value: float64(sent) / res.ElapsedS, Unit: "events/s accepted"}
	res.AddMetric("events accepted", res.Headline.Value, "events/s")
	if sent == 0 {
		return nil
	}
	// Poll until every measured event is readable, or until the run's
	// stored count stops growing: a server that drops events must not
	// hold the run for minutes, and one still writing the warm-up backlog
	// (which comes first) is not stalled.
	var stored, storedAll, lastStored int64
	lastProgress := time.Now()
	doneAt, err := pollUntil(ctx, 10*time.Minute, func() (bool, error) {
		var err error
		if stored, err = w.storedCount(ctx, true); err != nil {
			return false, err
		}
		warm, err := w.storedCount(ctx, false)
		if err != nil {
			return false, err
		}
		storedAll = stored + warm
		if storedAll > lastStored {
			lastStored, lastProgress = storedAll, time.Now()
		}
		if stored < sent && time.Since(lastProgress) > eventsStallTimeout {
			return false, errEventsStalled
		}
		return stored >= sent, nil
	})
	if errors.Is(err, errEventsStalled) || (err != nil && ctx.Err() == nil) {
		took := lastProgress.Sub(w.measureStart)
		res.AddMetric("events persisted", float64(stored)/took.Seconds(), "events/s")
		res.AddMetric("measured events lost", float64(sent-stored), "events")
		res.AddMetric("run events stored (warm-up included)", float64(storedAll), "events")
		res.AddMetric("run events lost (warm-up included)", float64(sentAll-storedAll), "events")
		return fmt.Errorf("only %d of %d measured events were ever stored (%d of the run's %d events, warm-up included; no progress for %s): %w",
			stored, sent, storedAll, sentAll, eventsStallTimeout, err)
	}
	if err != nil {
		return err
	}
	if stored > sent {
		return fmt.Errorf("%d measured events stored, only %d were sent", stored, sent)
	}
	res.AddMetric("measured events lost", 0, "events")
	took := doneAt.Sub(w.measureStart)
	res.AddMetric("events persisted", float64(sent)/took.Seconds(), "events/s")
	res.AddMetric("last measured event stored after", doneAt.Sub(w.measureStart.Add(time.Duration(res.ElapsedS*float64(time.Second)))).Seconds(), "s")
	return nil
}

// storedCount is how many of the run's measured (or warm-up) events
// /events/filter finds.
func (w *eventsWorkload) storedCount(ctx context.Context, measured bool) (int64, error) {
	filter := map[string]any{
		"filter": map[string]any{
			"occurred": map[string]any{
				// Warm-up events are as old as the run.
				"since": prefectTime(w.measureStart.Add(-time.Hour)),
				"until": prefectTime(time.Now().Add(time.Minute)),
			},
			"event": map[string]any{"name": []string{w.eventName(measured)}},
		},
		"limit": 1,
	}
	var page struct {
		Total int64 `json:"total"`
	}
	if _, err := w.c.Do(ctx, Request{
		Op: "read_events", Method: "POST", Path: "/events/filter",
		Body: filter, Expect: []int{200}, Out: &page,
	}); err != nil {
		return 0, err
	}
	return page.Total, nil
}
