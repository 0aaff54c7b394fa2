package eventpersister

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/openapi"
	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/storetest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func message(t *testing.T, name string, at time.Time) events.Message {
	t.Helper()
	e := events.Event{
		ID:       uuid.New(),
		Occurred: openapi.Time{Time: at},
		Event:    name,
		Resource: events.Resource{"prefect.resource.id": "prefect.flow-run." + name},
		Related:  []events.Resource{{"prefect.resource.id": "prefect.flow.1", "prefect.resource.role": "flow"}},
		Payload:  json.RawMessage(`{}`),
	}
	data, err := json.Marshal(e.Receive(at))
	if err != nil {
		t.Fatal(err)
	}
	return events.Message{Data: data}
}

func window() store.EventFilter {
	return store.EventFilter{}.WithDefaults(time.Now().Add(time.Hour))
}

func countStored(t *testing.T, st store.Store) int64 {
	t.Helper()
	n, err := st.CountEvents(context.Background(), window())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// start runs the persister and returns a stop function that cancels it and
// waits for Run to return.
func start(t *testing.T, p *Persister) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// countingBroker records how many messages its subscriptions handed out,
// so a test knows when the persister holds them.
type countingBroker struct {
	events.Broker
	received   atomic.Int64
	subscribed chan struct{}
	once       sync.Once
}

func newCountingBroker() *countingBroker {
	return &countingBroker{Broker: events.NewMemoryBroker(10000), subscribed: make(chan struct{})}
}

func (b *countingBroker) Subscribe(topic, group string) (events.Subscription, error) {
	s, err := b.Broker.Subscribe(topic, group)
	if err != nil {
		return nil, err
	}
	b.once.Do(func() { close(b.subscribed) })
	return &countingSub{Subscription: s, n: &b.received}, nil
}

type countingSub struct {
	events.Subscription
	n *atomic.Int64
}

func (s *countingSub) Receive(ctx context.Context, max int) ([]events.Message, error) {
	msgs, err := s.Subscription.Receive(ctx, max)
	s.n.Add(int64(len(msgs)))
	return msgs, err
}

func waitSubscribed(t *testing.T, b *countingBroker) {
	t.Helper()
	select {
	case <-b.subscribed:
	case <-time.After(10 * time.Second):
		t.Fatal("persister did not subscribe")
	}
}

func publish(t *testing.T, b events.Broker, msgs ...events.Message) {
	t.Helper()
	if err := b.Publish(context.Background(), events.TopicEvents, msgs...); err != nil {
		t.Fatal(err)
	}
}

func TestPersistsInBatches(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st store.Store) {
		b := newCountingBroker()
		p := New(st, b, quiet, Options{BatchSize: 20, FlushInterval: 50 * time.Millisecond})
		start(t, p)
		waitSubscribed(t, b)
		now := time.Now()
		var msgs []events.Message
		for i := range 1050 {
			msgs = append(msgs, message(t, fmt.Sprint("e", i), now))
		}
		publish(t, b, msgs...)
		// Duplicates (the broker may redeliver) are stored once.
		publish(t, b, msgs[:10]...)
		// A message that is not an event is skipped, not fatal.
		publish(t, b, events.Message{Data: []byte("{nonsense")}, events.Message{})
		waitFor(t, "1050 events stored", func() bool { return countStored(t, st) == 1050 })
		// A lone event below the batch size is written by the timer.
		publish(t, b, message(t, "straggler", now))
		waitFor(t, "the straggler", func() bool { return countStored(t, st) == 1051 })
	})
}

func TestFlushesOnShutdown(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st store.Store) {
		b := newCountingBroker()
		// Neither the size nor the timer would flush these five.
		p := New(st, b, quiet, Options{BatchSize: 1000, FlushInterval: time.Hour})
		stop := start(t, p)
		waitSubscribed(t, b)
		now := time.Now()
		for i := range 5 {
			publish(t, b, message(t, fmt.Sprint("s", i), now))
		}
		waitFor(t, "the persister to hold 5 events", func() bool { return b.received.Load() == 5 })
		if n := countStored(t, st); n != 0 {
			t.Fatalf("stored %d before shutdown", n)
		}
		stop()
		if n := countStored(t, st); n != 5 {
			t.Fatalf("stored %d after shutdown, want 5", n)
		}
	})
}

// flakyStore fails InsertEvents as told.
type flakyStore struct {
	store.Store
	mu       sync.Mutex
	failNext int    // this many calls fail with ErrUnavailable
	poison   string // batches holding an event of this name are ErrInvalid
	calls    int
}

func (s *flakyStore) InsertEvents(ctx context.Context, evs []events.ReceivedEvent) (int, error) {
	s.mu.Lock()
	s.calls++
	if s.failNext > 0 {
		s.failNext--
		s.mu.Unlock()
		return 0, fmt.Errorf("%w: injected", store.ErrUnavailable)
	}
	s.mu.Unlock()
	for _, e := range evs {
		if e.Event.Event == s.poison {
			return 0, fmt.Errorf("%w: injected poison", store.ErrInvalid)
		}
	}
	return s.Store.InsertEvents(ctx, evs)
}

func TestRetriesAndIsolatesBadEvents(t *testing.T) {
	st := &flakyStore{Store: storetest.OpenSQLite(t), failNext: 2, poison: "poison"}
	b := newCountingBroker()
	p := New(st, b, quiet, Options{BatchSize: 10, FlushInterval: 20 * time.Millisecond})
	start(t, p)
	waitSubscribed(t, b)
	now := time.Now()
	var msgs []events.Message
	for i := range 9 {
		msgs = append(msgs, message(t, fmt.Sprint("ok", i), now))
	}
	msgs = append(msgs, message(t, "poison", now))
	publish(t, b, msgs...)
	// Two unavailable answers are retried; the invalid event is dropped
	// alone and its nine neighbours are kept.
	waitFor(t, "9 events stored", func() bool { return countStored(t, st) == 9 })
}

func TestDropsAfterMaxRetries(t *testing.T) {
	st := &flakyStore{Store: storetest.OpenSQLite(t), failNext: 3}
	b := newCountingBroker()
	p := New(st, b, quiet, Options{BatchSize: 1, FlushInterval: 10 * time.Millisecond, MaxFlushRetries: 3})
	start(t, p)
	waitSubscribed(t, b)
	now := time.Now()
	publish(t, b, message(t, "doomed", now))
	waitFor(t, "three failed flushes", func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.calls >= 3
	})
	publish(t, b, message(t, "fine", now))
	waitFor(t, "the next event stored", func() bool { return countStored(t, st) == 1 })
	evs, err := st.ReadEvents(context.Background(), store.EventQuery{Filter: window()})
	if err != nil || len(evs) != 1 || evs[0].Event.Event != "fine" {
		t.Fatalf("stored %v, %v; want only the event after the drop", evs, err)
	}
}
