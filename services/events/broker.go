package events

import (
	"context"
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
	Data       []byte
	Attributes map[string]string
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
	size   int
	closed bool
}

type memGroup struct {
	ch   chan Message
	done chan struct{}
	once sync.Once
}

// NewMemoryBroker makes a broker whose groups buffer up to size messages.
func NewMemoryBroker(size int) *MemoryBroker {
	if size <= 0 {
		size = 10000
	}
	return &MemoryBroker{groups: map[string]map[string]*memGroup{}, size: size}
}

func (b *MemoryBroker) Publish(ctx context.Context, topic string, msgs ...Message) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	for _, g := range b.groups[topic] {
		for _, m := range msgs {
			select {
			case g.ch <- m:
			case <-g.done:
			case <-ctx.Done():
				return ctx.Err()
			}
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
		g = &memGroup{ch: make(chan Message, b.size), done: make(chan struct{})}
		b.groups[topic][group] = g
	}
	return &memSub{b: b, topic: topic, group: group, g: g}, nil
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
			g.once.Do(func() { close(g.done) })
		}
	}
	return nil
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
	var out []Message
	select {
	case m := <-s.g.ch:
		out = append(out, m)
	case <-s.g.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for len(out) < max {
		select {
		case m := <-s.g.ch:
			out = append(out, m)
		default:
			return out, nil
		}
	}
	return out, nil
}

// Close detaches the group: later publishes no longer queue for it.
func (s *memSub) Close() error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if gs := s.b.groups[s.topic]; gs != nil && gs[s.group] == s.g {
		delete(gs, s.group)
	}
	s.g.once.Do(func() { close(s.g.done) })
	return nil
}
