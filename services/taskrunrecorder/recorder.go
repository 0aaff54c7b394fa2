// Package taskrunrecorder is Prefect's task_run_recorder service: the 3.9.1
// client reports task runs only through prefect.task-run.* events, and this
// service turns them into task_run and task_run_state rows.
//
// It consumes the events topic as consumer group "task-run-recorder" and
// writes in group commits: whatever the broker has ready (up to MaxBatch)
// goes into one store transaction, so a busy server writes large batches
// while an idle one records each event as soon as it arrives.
package taskrunrecorder

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store"
)

// Group is the consumer group the recorder reads the events topic as.
const Group = "task-run-recorder"

// Options are Prefect's server.services.task_run_recorder settings plus
// the bounds of a batch.
type Options struct {
	// BatchSize is PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE:
	// the recorder writes as soon as it holds this many events (default 1,
	// Prefect's, which still writes everything received together in one
	// transaction).
	BatchSize int
	// FlushInterval is PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL
	// (default 5s): the longest an event waits for its batch to fill, and
	// the wait before a failed batch is retried.
	FlushInterval time.Duration
	// MaxBatch caps the events of one transaction (default 1000).
	MaxBatch int
	// MaxPersistRetries is how often a failed event is retried before it
	// is dropped (Prefect's DEFAULT_PERSIST_MAX_RETRIES, 5).
	MaxPersistRetries int
	// ShutdownTimeout bounds the final flush after the context ends
	// (default 30s).
	ShutdownTimeout time.Duration
}

func (o *Options) defaults() {
	if o.BatchSize <= 0 {
		o.BatchSize = 1
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 5 * time.Second
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 1000
	}
	o.MaxBatch = max(o.MaxBatch, o.BatchSize)
	if o.MaxPersistRetries <= 0 {
		o.MaxPersistRetries = 5
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
}

// Recorder is the task run recorder service.
type Recorder struct {
	st     store.Store
	broker events.Broker
	log    *slog.Logger
	opts   Options
}

// New builds a recorder; Run starts it.
func New(st store.Store, b events.Broker, log *slog.Logger, opts Options) *Recorder {
	opts.defaults()
	if log == nil {
		log = slog.Default()
	}
	return &Recorder{st: st, broker: b, log: log, opts: opts}
}

// pending is an event waiting to be written and how often writing it
// failed (Prefect's RetryableEvent).
type pending struct {
	rec      store.TaskRunRecord
	attempts int
}

// Run consumes events until ctx ends, then writes what it holds (and what
// the broker already delivered to its group) before returning nil. It
// returns early only when subscribing fails or the broker closes.
func (r *Recorder) Run(ctx context.Context) error {
	sub, err := r.broker.Subscribe(events.TopicEvents, Group)
	if err != nil {
		return err
	}
	defer sub.Close()
	var (
		queue    []pending
		deadline time.Time // when the oldest queued event must be written
	)
	for {
		wait := r.opts.FlushInterval
		if len(queue) > 0 {
			wait = max(time.Until(deadline), 0)
		}
		rctx, cancel := context.WithTimeout(ctx, wait)
		msgs, rerr := sub.Receive(rctx, r.opts.MaxBatch)
		cancel()
		if len(queue) == 0 && len(msgs) > 0 {
			deadline = time.Now().Add(r.opts.FlushInterval)
		}
		queue = append(queue, r.decode(msgs)...)

		if ctx.Err() != nil || errors.Is(rerr, events.ErrClosed) {
			r.shutdown(sub, queue)
			if ctx.Err() == nil {
				return rerr
			}
			return nil
		}
		if rerr != nil && !errors.Is(rerr, context.DeadlineExceeded) {
			r.log.ErrorContext(ctx, "receive events", "error", rerr)
		}
		if len(queue) >= r.opts.BatchSize || (len(queue) > 0 && !time.Now().Before(deadline)) {
			queue = r.flushAll(ctx, queue)
			deadline = time.Now().Add(r.opts.FlushInterval)
		}
	}
}

// shutdown drains what the broker already holds for the group and writes
// everything, retrying failures within the shutdown budget.
func (r *Recorder) shutdown(sub events.Subscription, queue []pending) {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.ShutdownTimeout)
	defer cancel()
	for ctx.Err() == nil {
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Millisecond)
		msgs, err := sub.Receive(dctx, r.opts.MaxBatch)
		dcancel()
		queue = append(queue, r.decode(msgs)...)
		if err != nil || len(msgs) == 0 {
			break
		}
	}
	for len(queue) > 0 && ctx.Err() == nil {
		queue = r.flushAll(ctx, queue)
	}
	if len(queue) > 0 {
		r.log.Error("task run events not recorded at shutdown", "count", len(queue))
	}
}

// decode keeps the client's task run events and converts them; events the
// recorder cannot read are logged and dropped, as no retry can fix them.
func (r *Recorder) decode(msgs []events.Message) []pending {
	var out []pending
	for _, m := range msgs {
		e, err := events.FromMessage(m)
		if err != nil {
			r.log.Warn("undecodable event on the events topic", "error", err)
			continue
		}
		if !Wants(&e.Event) {
			continue
		}
		rec, err := RecordFromEvent(e)
		if err != nil {
			r.log.Warn("dropping task run event", "event", e.Event, "id", e.ID, "error", err)
			continue
		}
		out = append(out, pending{rec: rec})
	}
	return out
}

// flushAll writes the queue in batches of MaxBatch and returns the events
// of failed batches that have retries left; they wait for the next flush.
func (r *Recorder) flushAll(ctx context.Context, queue []pending) []pending {
	var retry []pending
	for len(queue) > 0 {
		n := min(len(queue), r.opts.MaxBatch)
		retry = append(retry, r.flush(ctx, queue[:n])...)
		queue = queue[n:]
		if ctx.Err() != nil {
			// Shutting down: what is left is written by shutdown with a
			// fresh context, not counted as failures here.
			return append(retry, queue...)
		}
	}
	return retry
}

// flush writes one batch in one transaction and returns its events that
// failed and have retries left.
func (r *Recorder) flush(ctx context.Context, batch []pending) []pending {
	recs := make([]store.TaskRunRecord, len(batch))
	for i := range batch {
		recs[i] = batch[i].rec
	}
	skipped, err := r.st.RecordTaskRunEvents(ctx, recs)
	if err == nil {
		for _, s := range skipped {
			r.log.Warn("dropping task run event for a flow run that does not exist",
				"id", s.EventID, "task_run_id", s.Run.ID, "flow_run_id", s.Run.FlowRunID)
		}
		r.log.Debug("recorded task run events", "count", len(batch)-len(skipped))
		return nil
	}
	if ctx.Err() != nil {
		return batch
	}
	if len(batch) > 1 && (errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrConflict)) {
		// One event the database refuses must not take the others down
		// with it: write them one by one, so only the culprit fails.
		var retry []pending
		for i := range batch {
			retry = append(retry, r.flush(ctx, batch[i:i+1])...)
		}
		return retry
	}
	var retry []pending
	dropped := 0
	for _, p := range batch {
		p.attempts++
		if p.attempts <= r.opts.MaxPersistRetries {
			retry = append(retry, p)
		} else {
			dropped++
			r.log.Error("dropping task run event after failed attempts", "id", p.rec.EventID, "attempts", p.attempts)
		}
	}
	r.log.Error("recording task run events failed", "count", len(batch), "retrying", len(retry), "dropped", dropped, "error", err)
	return retry
}
