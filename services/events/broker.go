package events

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
)

// Topics carried by the broker.
const (
	TopicEvents = "events"
	TopicLogs   = "logs"
)

// Message is one published payload; Attributes carry routing keys such as
// the event id used for deduplication.
type Message struct {
	// Data is the payload's JSON. A publisher in this process may leave it
	// out and set Decoded instead: see Bytes.
	Data       []byte
	Attributes map[string]string
	// Decoded is the payload as the publisher already held it (a
	// *ReceivedEvent on the events topic), so that consumers in the same
	// process neither decode it again nor pay for encoding it: at tens of
	// thousands of events per second each JSON pass costs a noticeable
	// share of a core. Consumers share the value and must not modify it.
	Decoded any
}

// Bytes is the payload's JSON: Data, or Decoded encoded when Data was left
// out. A broker that carries messages to other processes sends this.
func (m Message) Bytes() ([]byte, error) {
	if m.Data != nil || m.Decoded == nil {
		return m.Data, nil
	}
	return json.Marshal(m.Decoded)
}

// Broker delivers every message of a topic to every consumer group that
// subscribed to it; within a group each message is handed out once. An
// in-memory broker serves one process; a Redis streams broker serves several
// API replicas and one services process.
type Broker interface {
	Publish(ctx context.Context, topic string, msgs ...Message) error
	Subscribe(topic, group string) (Subscription, error)
	Close() error
}

// Subscription yields batches of messages for one consumer group.
type Subscription interface {
	// Receive blocks until at least one message is available (then returns
	// up to max), or ctx ends.
	Receive(ctx context.Context, max int) ([]Message, error)
	Close() error
}

// ErrClosed is returned by a closed broker or subscription.
var ErrClosed = errors.New("broker closed")

// MemoryBroker is the single-process broker. Publishing blocks when a
// group's buffer is full, so a slow consumer slows producers instead of
// losing messages.
type MemoryBroker struct {
	mu     sync.RWMutex
	groups map[string]map[string]*memGroup // topic -> group -> queue
	// lists holds each topic's groups as a slice that is replaced, never
	// changed, so Publish can use it after letting go of mu: a publisher
	// waiting for room must not hold the lock that Close and Subscribe
	// need.
	lists  map[string][]*memGroup
	size   int
	closed bool
}

// NewMemoryBroker makes a broker whose groups buffer up to size messages.
func NewMemoryBroker(size int) *MemoryBroker {
	if size <= 0 {
		size = 10000
	}
	return &MemoryBroker{groups: map[string]map[string]*memGroup{}, lists: map[string][]*memGroup{}, size: size}
}

func (b *MemoryBroker) Publish(ctx context.Context, topic string, msgs ...Message) error {
	b.mu.RLock()
	closed, groups := b.closed, b.lists[topic]
	b.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	for _, g := range groups {
		if err := g.push(ctx, msgs); err != nil {
			return err
		}
	}
	return nil
}

func (b *MemoryBroker) Subscribe(topic, group string) (Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	if b.groups[topic] == nil {
		b.groups[topic] = map[string]*memGroup{}
	}
	g, ok := b.groups[topic][group]
	if !ok {
		g = newMemGroup(b.size)
		b.groups[topic][group] = g
		b.relist(topic)
	}
	return &memSub{b: b, topic: topic, group: group, g: g}, nil
}

// relist rebuilds topic's group slice; b.mu must be held.
func (b *MemoryBroker) relist(topic string) {
	list := make([]*memGroup, 0, len(b.groups[topic]))
	for _, g := range b.groups[topic] {
		list = append(list, g)
	}
	b.lists[topic] = list
}

func (b *MemoryBroker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	for _, gs := range b.groups {
		for _, g := range gs {
			g.close()
		}
	}
	return nil
}

// memGroup is one consumer group's queue. A publisher that finds it full
// waits until consumers have taken it down to half, not for one free slot:
// handing over slot by slot woke a blocked publisher for every message a
// consumer took, and with many /events/in sockets waiting on a busy
// persister those wake-ups cost more CPU than decoding the events.
type memGroup struct {
	size int

	mu      sync.Mutex
	buf     []Message // the queue is buf[head:]
	head    int
	waiting bool          // a publisher waits for room
	room    chan struct{} // closed, and replaced, when a full queue is down to half

	ready chan struct{} // holds a token when messages may be queued
	done  chan struct{}
	once  sync.Once
}

func newMemGroup(size int) *memGroup {
	return &memGroup{size: size, room: make(chan struct{}), ready: make(chan struct{}, 1), done: make(chan struct{})}
}

func (g *memGroup) close() { g.once.Do(func() { close(g.done) }) }

func (g *memGroup) signalReady() {
	select {
	case g.ready <- struct{}{}:
	default:
	}
}

// push queues msgs, waiting for room when the queue is full. Messages for
// a group that has been closed are dropped.
func (g *memGroup) push(ctx context.Context, msgs []Message) error {
	for len(msgs) > 0 {
		g.mu.Lock()
		if free := g.size - (len(g.buf) - g.head); free > 0 {
			n := min(free, len(msgs))
			g.buf = append(g.buf, msgs[:n]...)
			msgs = msgs[n:]
			g.mu.Unlock()
			g.signalReady()
			continue
		}
		g.waiting = true
		room := g.room
		g.mu.Unlock()
		select {
		case <-room:
		case <-g.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// take removes up to max messages, or returns none when the queue is empty.
func (g *memGroup) take(max int) []Message {
	g.mu.Lock()
	n := min(len(g.buf)-g.head, max)
	if n == 0 {
		g.mu.Unlock()
		return nil
	}
	out := make([]Message, n)
	copy(out, g.buf[g.head:])
	clear(g.buf[g.head : g.head+n])
	g.head += n
	left := len(g.buf) - g.head
	switch {
	case left == 0:
		g.buf, g.head = g.buf[:0], 0
	case g.head >= left:
		// Move the rest to the front once it is no longer than the gap,
		// so copying stays proportional to what was taken.
		copy(g.buf, g.buf[g.head:])
		clear(g.buf[left:])
		g.buf, g.head = g.buf[:left], 0
	}
	var room chan struct{}
	if g.waiting && left <= g.size/2 {
		room, g.room, g.waiting = g.room, make(chan struct{}), false
	}
	g.mu.Unlock()
	if room != nil {
		close(room)
	}
	if left > 0 {
		// Another consumer of the group may take the rest.
		g.signalReady()
	}
	return out
}

type memSub struct {
	b            *MemoryBroker
	topic, group string
	g            *memGroup
}

func (s *memSub) Receive(ctx context.Context, max int) ([]Message, error) {
	if max <= 0 {
		max = 1
	}
	for {
		if out := s.g.take(max); out != nil {
			return out, nil
		}
		select {
		case <-s.g.done:
			// What was queued before the close is still handed out.
			if out := s.g.take(max); out != nil {
				return out, nil
			}
			return nil, ErrClosed
		default:
		}
		select {
		case <-s.g.ready:
		case <-s.g.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close detaches the group: later publishes no longer queue for it, and
// publishers waiting for room in it go on.
func (s *memSub) Close() error {
	s.g.close()
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if gs := s.b.groups[s.topic]; gs != nil && gs[s.group] == s.g {
		delete(gs, s.group)
		s.b.relist(s.topic)
	}
	return nil
}
