// Package eventpersister is Prefect's event persister service: it consumes
// the events topic as consumer group "event-persister" and writes the events
// (and their resource rows) to the store in batches, one transaction per
// batch, so that a burst of events costs a few commits instead of one each.
package eventpersister

import (
	"context"
	"encoding/json"
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
	// BatchSize is how many events make a flush
	// (PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE, default 20).
	BatchSize int
	// FlushInterval is the longest an event waits before it is written
	// (PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL, default 5s).
	FlushInterval time.Duration
	// ReadBatchSize is how many messages one broker read may return
	// (PREFECT_SERVER_SERVICES_EVENT_PERSISTER_READ_BATCH_SIZE). Prefect's
	// default of 1 suits its per-message handler; here 0 means BatchSize.
	ReadBatchSize int
	// QueueMaxSize bounds the events held in memory while the database is
	// failing (..._QUEUE_MAX_SIZE, default 50,000). When it is reached the
	// persister stops reading, so the broker holds the backlog (and slows
	// publishers) instead of events being dropped.
	QueueMaxSize int
	// MaxFlushRetries is how many consecutive failed flushes drop the
	// pending events (..._MAX_FLUSH_RETRIES, default 5).
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
	if o.ReadBatchSize <= 0 {
		o.ReadBatchSize = o.BatchSize
	}
	if o.QueueMaxSize <= 0 {
		o.QueueMaxSize = 50_000
	}
	if o.QueueMaxSize < o.BatchSize {
		o.QueueMaxSize = o.BatchSize
	}
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

	pending  []events.ReceivedEvent
	failures int
}

// New makes a persister; nothing happens until Run.
func New(st store.Store, b events.Broker, log *slog.Logger, opts Options) *Persister {
	opts.defaults()
	if log == nil {
		log = slog.Default()
	}
	return &Persister{st: st, b: b, log: log.With("service", Group), opts: opts}
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
	defer p.finalFlush(ctx)

	nextFlush := time.Now().Add(p.opts.FlushInterval)
	for {
		if ctx.Err() != nil {
			return nil
		}
		if len(p.pending) >= p.opts.QueueMaxSize {
			// Backlog full (the database is failing): wait for the next
			// retry rather than read more.
			if !sleepUntil(ctx, nextFlush) {
				return nil
			}
		} else {
			rctx, cancel := context.WithDeadline(ctx, nextFlush)
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
			p.add(ctx, msgs)
		}
		if len(p.pending) >= p.opts.BatchSize || !time.Now().Before(nextFlush) {
			p.flush(ctx)
			nextFlush = time.Now().Add(p.opts.FlushInterval)
		}
	}
}

func (p *Persister) add(ctx context.Context, msgs []events.Message) {
	for _, m := range msgs {
		if len(m.Data) == 0 {
			continue
		}
		var e events.ReceivedEvent
		if err := json.Unmarshal(m.Data, &e); err != nil {
			p.log.WarnContext(ctx, "dropping undecodable event message", "error", err)
			continue
		}
		p.pending = append(p.pending, e)
	}
}

// flush writes the pending events in one transaction. On failure they stay
// pending for the next flush, up to MaxFlushRetries consecutive failures;
// a batch the database refuses as invalid is split so that one bad event
// cannot take the others down with it.
func (p *Persister) flush(ctx context.Context) {
	if len(p.pending) == 0 {
		return
	}
	_, err := p.st.InsertEvents(ctx, p.pending)
	if err == nil {
		p.pending = p.pending[:0]
		p.failures = 0
		return
	}
	if errors.Is(err, store.ErrInvalid) {
		p.insertOneByOne(ctx)
		return
	}
	if ctx.Err() != nil {
		// Shutting down: the final flush retries on its own context.
		return
	}
	p.failures++
	if p.failures >= p.opts.MaxFlushRetries {
		p.log.ErrorContext(ctx, "max flush retries reached, dropping events", "retries", p.opts.MaxFlushRetries, "count", len(p.pending), "error", err)
		p.pending = p.pending[:0]
		p.failures = 0
		return
	}
	p.log.WarnContext(ctx, "writing events failed; will retry", "attempt", p.failures, "max", p.opts.MaxFlushRetries, "count", len(p.pending), "error", err)
}

func (p *Persister) insertOneByOne(ctx context.Context) {
	var keep []events.ReceivedEvent
	for _, e := range p.pending {
		_, err := p.st.InsertEvents(ctx, []events.ReceivedEvent{e})
		switch {
		case err == nil:
		case errors.Is(err, store.ErrInvalid):
			p.log.WarnContext(ctx, "dropping an event the database refuses", "id", e.ID, "event", e.Event.Event, "error", err)
		default:
			keep = append(keep, e)
		}
	}
	p.pending = append(p.pending[:0], keep...)
	if len(keep) > 0 {
		p.failures++
	} else {
		p.failures = 0
	}
}

func (p *Persister) finalFlush(ctx context.Context) {
	if len(p.pending) == 0 {
		return
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.ShutdownTimeout)
	defer cancel()
	for attempt := 0; len(p.pending) > 0 && attempt < p.opts.MaxFlushRetries && fctx.Err() == nil; attempt++ {
		p.flush(fctx)
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
