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

// gatedStore holds every InsertEvents call until the gate opens, and
// records the batch sizes and how many calls ran at once.
type gatedStore struct {
	store.Store
	gate chan struct{}

	mu        sync.Mutex
	sizes     []int
	running   int
	maxAtOnce int
}

func (s *gatedStore) InsertEvents(ctx context.Context, evs []events.ReceivedEvent) (int, error) {
	s.mu.Lock()
	s.sizes = append(s.sizes, len(evs))
	s.running++
	s.maxAtOnce = max(s.maxAtOnce, s.running)
	s.mu.Unlock()
	<-s.gate
	defer func() {
		s.mu.Lock()
		s.running--
		s.mu.Unlock()
	}()
	return s.Store.InsertEvents(ctx, evs)
}

func (s *gatedStore) calls() (sizes []int, running, maxAtOnce int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.sizes...), s.running, s.maxAtOnce
}

// While the store is busy the backlog stays in the broker (the persister
// holds no more than its writers and one read); once the store answers,
// the backlog goes out in batches of MaxBatch, two at a time.
func TestBatchesGrowWithTheBacklog(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st store.Store) {
		gs := &gatedStore{Store: st, gate: make(chan struct{})}
		b := newCountingBroker()
		p := New(gs, b, quiet, Options{BatchSize: 20, MaxBatch: 500, FlushInterval: time.Hour})
		start(t, p)
		var open sync.Once
		release := func() { open.Do(func() { close(gs.gate) }) }
		// Registered after start's cleanup, so it runs first: a failed
		// check must not leave Run waiting on the gate.
		t.Cleanup(release)
		waitSubscribed(t, b)
		now := time.Now()
		var msgs []events.Message
		for i := range 5000 {
			msgs = append(msgs, message(t, fmt.Sprint("b", i), now))
		}
		published := make(chan error, 1)
		go func() { published <- b.Publish(context.Background(), events.TopicEvents, msgs...) }()
		waitFor(t, "two batches in the store", func() bool { _, running, _ := gs.calls(); return running == 2 })
		time.Sleep(50 * time.Millisecond)
		// Two batches in the store, one read, and less than a batch pending.
		if held := b.received.Load(); held > 3*500+20 {
			t.Fatalf("the persister took %d events off the broker while the store was busy", held)
		}
		release()
		if err := <-published; err != nil {
			t.Fatal(err)
		}
		waitFor(t, "5000 events stored", func() bool { return countStored(t, st) == 5000 })
		sizes, _, maxAtOnce := gs.calls()
		if maxAtOnce != 2 {
			t.Errorf("%d batches in the store at once, want 2", maxAtOnce)
		}
		large := 0
		for _, n := range sizes {
			if n > 500 {
				t.Fatalf("a batch of %d events, above MaxBatch", n)
			}
			if n == 500 {
				large++
			}
		}
		if large < 5 {
			t.Errorf("batch sizes %v: the backlog did not go out in full batches", sizes)
		}
	})
}

// A failed batch is retried by the timer, not by the next read: events
// that keep arriving do not turn a failing database into a busy loop.
func TestFailedFlushWaitsForTheTimer(t *testing.T) {
	st := &flakyStore{Store: storetest.OpenSQLite(t), failNext: 1}
	b := newCountingBroker()
	p := New(st, b, quiet, Options{BatchSize: 1, FlushInterval: 300 * time.Millisecond, Concurrency: 1})
	start(t, p)
	waitSubscribed(t, b)
	now := time.Now()
	publish(t, b, message(t, "first", now))
	waitFor(t, "the failed flush", func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.calls == 1
	})
	for i := range 20 {
		publish(t, b, message(t, fmt.Sprint("more", i), now))
		time.Sleep(5 * time.Millisecond)
	}
	st.mu.Lock()
	calls := st.calls
	st.mu.Unlock()
	if calls != 1 {
		t.Fatalf("%d store calls within the retry interval, want 1", calls)
	}
	waitFor(t, "all 21 stored by the retry", func() bool { return countStored(t, st) == 21 })
}
