package events

import (
	"context"
	"errors"
	"fmt"
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
