package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestDecodeValidates(t *testing.T) {
	ok := `{"occurred":"2024-01-01T00:00:00Z","event":"prefect.task-run.Running","resource":{"prefect.resource.id":"prefect.task-run.1"},"id":"0190a6a0-0000-7000-8000-000000000001"}`
	e, err := Decode([]byte(ok), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Payload) != "{}" || e.Related == nil {
		t.Fatalf("defaults not applied: %+v", e)
	}
	bad := map[string]string{
		"not json":          `{`,
		"no resource id":    `{"occurred":"2024-01-01T00:00:00Z","event":"x","resource":{},"id":"0190a6a0-0000-7000-8000-000000000001"}`,
		"no id":             `{"occurred":"2024-01-01T00:00:00Z","event":"x","resource":{"prefect.resource.id":"a"}}`,
		"no occurred":       `{"event":"x","resource":{"prefect.resource.id":"a"},"id":"0190a6a0-0000-7000-8000-000000000001"}`,
		"related sans role": `{"occurred":"2024-01-01T00:00:00Z","event":"x","resource":{"prefect.resource.id":"a"},"related":[{"prefect.resource.id":"b"}],"id":"0190a6a0-0000-7000-8000-000000000001"}`,
		"bad time":          `{"occurred":"yesterday","event":"x","resource":{"prefect.resource.id":"a"},"id":"0190a6a0-0000-7000-8000-000000000001"}`,
	}
	for name, raw := range bad {
		if _, err := Decode([]byte(raw), DefaultLimits); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	long := fmt.Sprintf(`{"occurred":"2024-01-01T00:00:00Z","event":"%0*d","resource":{"prefect.resource.id":"a"},"id":"0190a6a0-0000-7000-8000-000000000001"}`, 2000, 0)
	if _, err := Decode([]byte(long), DefaultLimits); !errors.Is(err, ErrInvalid) {
		t.Errorf("long name accepted: %v", err)
	}
}

func TestMemoryBrokerFanOut(t *testing.T) {
	b := NewMemoryBroker(16)
	defer b.Close()
	s1, _ := b.Subscribe(TopicEvents, "persister")
	s2, _ := b.Subscribe(TopicEvents, "recorder")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		if err := b.Publish(ctx, TopicEvents, Message{Data: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []Subscription{s1, s2} {
		got, err := s.Receive(ctx, 10)
		if err != nil || len(got) != 3 {
			t.Fatalf("got %d messages, err %v", len(got), err)
		}
	}
	// Other topics do not reach these groups.
	if err := b.Publish(ctx, TopicLogs, Message{Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancelShort()
	if _, err := s1.Receive(short, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unexpected message across topics: %v", err)
	}
	_ = s2.Close()
	if err := b.Publish(ctx, TopicEvents, Message{Data: []byte("y")}); err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	if _, err := s1.Receive(ctx, 1); err != nil && !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, TopicEvents); !errors.Is(err, ErrClosed) {
		t.Fatalf("publish after close: %v", err)
	}
}

func TestMessageBytes(t *testing.T) {
	if b, err := (Message{Data: []byte(`{"x":1}`)}).Bytes(); err != nil || string(b) != `{"x":1}` {
		t.Fatalf("Data is sent as it is: %s %v", b, err)
	}
	e, err := Decode([]byte(decodeCases[0]), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	re := e.Receive(time.Now())
	m := NewMessage(&re)
	if m.Data != nil {
		t.Fatal("an in-process message carries no JSON until a broker asks for it")
	}
	b, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	back, err := FromMessage(Message{Data: b})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := FromMessage(m); got != &re {
		t.Error("FromMessage did not hand out the publisher's event")
	}
	if back.ID != re.ID || !back.Received.Equal(re.Received.Time) || string(back.Payload) != string(re.Payload) || back.Resource.ID() != re.Resource.ID() {
		t.Errorf("round trip: %+v, want %+v", back, re)
	}
	if _, err := FromMessage(Message{Data: []byte("{")}); err == nil {
		t.Error("undecodable Data accepted")
	}
}

// A full group holds its publisher until consumers have taken the queue
// down to half, and then takes everything in order.
func TestMemoryBrokerBackPressure(t *testing.T) {
	b := NewMemoryBroker(10)
	defer b.Close()
	sub, _ := b.Subscribe(TopicEvents, "g")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := func(i int) Message { return Message{Data: []byte{byte(i)}} }
	for i := range 10 {
		if err := b.Publish(ctx, TopicEvents, msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	published := make(chan error, 1)
	go func() { published <- b.Publish(ctx, TopicEvents, msg(10), msg(11)) }()
	expectBlocked := func(what string) {
		t.Helper()
		select {
		case err := <-published:
			t.Fatalf("publish returned (%v) %s", err, what)
		case <-time.After(50 * time.Millisecond):
		}
	}
	expectBlocked("into a full group")
	got, _ := sub.Receive(ctx, 4)
	expectBlocked("with the group still above half")
	more, _ := sub.Receive(ctx, 1)
	got = append(got, more...)
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	for len(got) < 12 {
		more, err := sub.Receive(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, more...)
	}
	for i, m := range got {
		if m.Data[0] != byte(i) {
			t.Fatalf("message %d is %d: order lost", i, m.Data[0])
		}
	}
}

// Closing a group, or the broker, lets go of publishers waiting for room
// in it, which must not need the consumer they wait for.
func TestMemoryBrokerCloseReleasesPublishers(t *testing.T) {
	for _, closeBroker := range []bool{false, true} {
		b := NewMemoryBroker(1)
		sub, _ := b.Subscribe(TopicEvents, "g")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := b.Publish(ctx, TopicEvents, Message{Data: []byte("a")}); err != nil {
			t.Fatal(err)
		}
		published := make(chan error, 1)
		go func() { published <- b.Publish(ctx, TopicEvents, Message{Data: []byte("b")}) }()
		time.Sleep(20 * time.Millisecond)
		if closeBroker {
			_ = b.Close()
		} else {
			_ = sub.Close()
		}
		select {
		case err := <-published:
			if err != nil {
				t.Fatalf("close broker %v: publish: %v", closeBroker, err)
			}
		case <-ctx.Done():
			t.Fatalf("close broker %v: the publisher stayed blocked", closeBroker)
		}
		// What was queued is still handed out, then the group is closed.
		if got, err := sub.Receive(ctx, 10); err != nil || len(got) != 1 || string(got[0].Data) != "a" {
			t.Fatalf("close broker %v: drained %v, %v", closeBroker, got, err)
		}
		if _, err := sub.Receive(ctx, 10); !errors.Is(err, ErrClosed) {
			t.Fatalf("close broker %v: %v, want ErrClosed", closeBroker, err)
		}
		cancel()
		_ = b.Close()
	}
}

// Consumers of one group share its messages: each is handed out once.
func TestMemoryBrokerSharedGroup(t *testing.T) {
	b := NewMemoryBroker(64)
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const n = 5000
	counts := make([]int, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	received := make(chan int, n)
	for range 3 {
		sub, _ := b.Subscribe(TopicEvents, "shared")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				msgs, err := sub.Receive(ctx, 7)
				if err != nil {
					return
				}
				mu.Lock()
				for _, m := range msgs {
					counts[int(m.Data[0])<<8|int(m.Data[1])]++
				}
				mu.Unlock()
				for range msgs {
					received <- 1
				}
			}
		}()
	}
	go func() {
		for i := range n {
			if err := b.Publish(ctx, TopicEvents, Message{Data: []byte{byte(i >> 8), byte(i)}}); err != nil {
				return
			}
		}
	}()
	for range n {
		select {
		case <-received:
		case <-ctx.Done():
			t.Fatal("messages lost")
		}
	}
	cancel()
	wg.Wait()
	for i, c := range counts {
		if c != 1 {
			t.Fatalf("message %d handed out %d times", i, c)
		}
	}
}
