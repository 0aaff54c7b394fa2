// Package eventpersister is Prefect's event persister service: it consumes
// the events topic as consumer group "event-persister" and writes the events
// (and their resource rows) to the store in batches, one transaction per
// batch, so that a burst of events costs a few commits instead of one each.
//
// Batches grow with the load: every read takes all the broker holds (up to
// MaxBatch), so while batches are being written the next accumulates in the
// broker and goes out in the following transaction. An idle server writes
// small batches soon; a busy one writes large ones, whose per-event cost is
// several times lower. Up to Concurrency batches are in the store at once;
// when all are, the persister stops reading and the broker holds the
// backlog, so publishers (the /events/in sockets) wait only when the broker
// is full, i.e. when events arrive faster than the database takes them.
package eventpersister

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store"
)

// Group is the consumer group name Prefect's persister uses.
const Group = "event-persister"

// Options are Prefect's server.services.event_persister settings.
type Options struct {
	// BatchSize is how many pending events start a flush
	// (PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE, default 20). As
	// in Prefect a flush writes everything pending, not just BatchSize.
	BatchSize int
	// FlushInterval is the longest an event waits before it is written
	// (PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL, default 5s).
	FlushInterval time.Duration
	// MaxBatch caps the events of one transaction (default 2,000): large
	// enough that commits and statement overhead are small per event, small
	// enough that one batch holds SQLite's single writer for tens of
	// milliseconds, not seconds.
	MaxBatch int
	// Concurrency is how many batches may be in the store at once
	// (default 2). With two, one batch is encoded while the other is being
	// written (SQLite writes them one after the other, or together in one
	// group commit), and PostgreSQL writes both in parallel.
	Concurrency int
	// ReadBatchSize is how many messages one broker read may return
	// (PREFECT_SERVER_SERVICES_EVENT_PERSISTER_READ_BATCH_SIZE). Prefect's
	// default of 1 suits its per-message handler; here 0 means MaxBatch.
	ReadBatchSize int
	// QueueMaxSize bounds the events held in memory while the database is
	// failing (..._QUEUE_MAX_SIZE, default 50,000). When it is reached the
	// persister stops reading, so the broker holds the backlog (and slows
	// publishers) instead of events being dropped.
	QueueMaxSize int
	// MaxFlushRetries is how many consecutive failed flushes drop the
	// failed batch (..._MAX_FLUSH_RETRIES, default 5).
	MaxFlushRetries int
	// ShutdownTimeout bounds the final flush after the context ends
	// (default 10s).
	ShutdownTimeout time.Duration
}

func (o *Options) defaults() {
	if o.BatchSize <= 0 {
		o.BatchSize = 20
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 5 * time.Second
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 2000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 2
	}
	if o.ReadBatchSize <= 0 {
		o.ReadBatchSize = o.MaxBatch
	}
	if o.QueueMaxSize <= 0 {
		o.QueueMaxSize = 50_000
	}
	o.QueueMaxSize = max(o.QueueMaxSize, o.BatchSize, o.ReadBatchSize)
	if o.MaxFlushRetries <= 0 {
		o.MaxFlushRetries = 5
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
}

// Persister moves events from the broker to the store.
type Persister struct {
	st   store.Store
	b    events.Broker
	log  *slog.Logger
	opts Options

	// pending and failures belong to Run's goroutine; batches being
	// written are handed to their own goroutines and come back as results.
	pending  []events.ReceivedEvent
	failures int // consecutive failed batches
	// nextFlush is when what is pending is written even if it makes no
	// batch (or, after a failure, when it is retried).
	nextFlush time.Time
}

// New makes a persister; nothing happens until Run.
func New(st store.Store, b events.Broker, log *slog.Logger, opts Options) *Persister {
	opts.defaults()
	if log == nil {
		log = slog.Default()
	}
	return &Persister{st: st, b: b, log: log.With("service", Group), opts: opts}
}

// result is the outcome of writing one batch: the events to try again
// (none on success) and the error that kept them out.
type result struct {
	retry []events.ReceivedEvent
	err   error
}

// Run consumes until ctx ends or the broker closes, then writes what it
// holds and returns nil. It returns an error only when it cannot subscribe.
// A message the broker handed over is in memory only, so the final flush
// matters: it runs on a context of its own, bounded by ShutdownTimeout.
func (p *Persister) Run(ctx context.Context) error {
	sub, err := p.b.Subscribe(events.TopicEvents, Group)
	if err != nil {
		return err
	}
	defer sub.Close()

	results := make(chan result, p.opts.Concurrency)
	inFlight := 0
	defer func() {
		// Batches still being written finish (or fail, their context
		// ended) before the final flush takes what they give back.
		for ; inFlight > 0; inFlight-- {
			p.settle(ctx, <-results)
		}
		p.finalFlush(ctx)
	}()

	p.nextFlush = time.Now().Add(p.opts.FlushInterval)
	for ctx.Err() == nil {
		// Take the outcomes of finished batches.
	settled:
		for inFlight > 0 {
			select {
			case r := <-results:
				inFlight--
				p.settle(ctx, r)
			default:
				break settled
			}
		}
		// After a failure only the timer retries, so that a failing
		// database is not hammered once per read.
		ready := len(p.pending) >= p.opts.BatchSize && p.failures == 0
		due := len(p.pending) > 0 && !time.Now().Before(p.nextFlush)
		if ready || due {
			if inFlight == p.opts.Concurrency {
				// Every writer is busy: wait for one instead of reading
				// more, so the backlog stays in the broker, which slows
				// publishers only when it is full.
				select {
				case r := <-results:
					inFlight--
					p.settle(ctx, r)
				case <-ctx.Done():
					return nil
				}
				continue
			}
			n := min(len(p.pending), p.opts.MaxBatch)
			batch := p.pending[:n:n]
			p.pending = p.pending[n:]
			if len(p.pending) == 0 {
				p.pending = nil
			}
			inFlight++
			go func() { results <- p.write(ctx, batch) }()
			p.nextFlush = time.Now().Add(p.opts.FlushInterval)
			continue
		}
		if len(p.pending) >= p.opts.QueueMaxSize {
			// Backlog full (the database is failing): wait for the next
			// retry rather than read more.
			if !sleepUntil(ctx, p.nextFlush) {
				return nil
			}
			continue
		}
		wait := p.nextFlush
		if len(p.pending) == 0 {
			// Nothing is waiting, so nothing is due: the interval starts
			// with the next event.
			wait = time.Now().Add(p.opts.FlushInterval)
		}
		rctx, cancel := context.WithDeadline(ctx, wait)
		msgs, err := sub.Receive(rctx, min(p.opts.ReadBatchSize, p.opts.QueueMaxSize-len(p.pending)))
		cancel()
		switch {
		case errors.Is(err, events.ErrClosed):
			return nil
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil && !errors.Is(err, context.DeadlineExceeded):
			// A broker hiccup (e.g. a Redis reconnect): pause briefly
			// instead of spinning, keep what is pending.
			p.log.WarnContext(ctx, "reading events failed", "error", err)
			if !sleepUntil(ctx, time.Now().Add(min(time.Second, p.opts.FlushInterval))) {
				return nil
			}
		}
		if len(p.pending) == 0 && len(msgs) > 0 {
			p.nextFlush = time.Now().Add(p.opts.FlushInterval)
		}
		p.add(ctx, msgs)
	}
	return nil
}

func (p *Persister) add(ctx context.Context, msgs []events.Message) {
	for _, m := range msgs {
		if len(m.Data) == 0 && m.Decoded == nil {
			continue
		}
		e, err := events.FromMessage(m)
		if err != nil {
			p.log.WarnContext(ctx, "dropping undecodable event message", "error", err)
			continue
		}
		p.pending = append(p.pending, *e)
	}
}

// write stores one batch in one transaction. A batch the database refuses
// as invalid is written one event at a time, so that one bad event cannot
// take the others down with it; only the bad one is dropped.
func (p *Persister) write(ctx context.Context, batch []events.ReceivedEvent) result {
	_, err := p.st.InsertEvents(ctx, batch)
	if err == nil || !errors.Is(err, store.ErrInvalid) {
		if err != nil {
			return result{retry: batch, err: err}
		}
		return result{}
	}
	var r result
	for _, e := range batch {
		_, err := p.st.InsertEvents(ctx, []events.ReceivedEvent{e})
		switch {
		case err == nil:
		case errors.Is(err, store.ErrInvalid):
			p.log.WarnContext(ctx, "dropping an event the database refuses", "id", e.ID, "event", e.Event.Event, "error", err)
		default:
			r.retry, r.err = append(r.retry, e), err
		}
	}
	return r
}

// settle takes a batch's outcome. Failed events go back in front of the
// pending ones, up to MaxFlushRetries consecutive failures, after which the
// failed batch is dropped (as Prefect's persister does) and the events
// read since are tried afresh.
func (p *Persister) settle(ctx context.Context, r result) {
	if r.err == nil {
		p.failures = 0
		return
	}
	if ctx.Err() != nil {
		// Shutting down: the final flush retries on its own context, and
		// this is not the database's fault.
		p.pending = append(r.retry, p.pending...)
		return
	}
	p.failures++
	p.nextFlush = time.Now().Add(p.opts.FlushInterval)
	if p.failures >= p.opts.MaxFlushRetries {
		p.log.ErrorContext(ctx, "max flush retries reached, dropping events", "retries", p.opts.MaxFlushRetries, "count", len(r.retry), "error", r.err)
		p.failures = 0
		return
	}
	p.log.WarnContext(ctx, "writing events failed; will retry", "attempt", p.failures, "max", p.opts.MaxFlushRetries, "count", len(r.retry), "error", r.err)
	p.pending = append(r.retry, p.pending...)
}

// finalFlush writes what is pending after Run's loop ended, one batch at a
// time, on a context of its own.
func (p *Persister) finalFlush(ctx context.Context) {
	if len(p.pending) == 0 {
		return
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.ShutdownTimeout)
	defer cancel()
	failures := 0
	for len(p.pending) > 0 && failures < p.opts.MaxFlushRetries && fctx.Err() == nil {
		n := min(len(p.pending), p.opts.MaxBatch)
		r := p.write(fctx, p.pending[:n])
		p.pending = append(r.retry, p.pending[n:]...)
		if r.err != nil {
			failures++
			p.log.WarnContext(ctx, "writing events at shutdown failed", "attempt", failures, "error", r.err)
		}
	}
	if len(p.pending) > 0 {
		p.log.ErrorContext(ctx, "events lost at shutdown", "count", len(p.pending))
	}
}

// sleepUntil waits for t or ctx; false means ctx ended.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
