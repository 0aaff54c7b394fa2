package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/storetest"
)

func eventJSON(name string) string {
	return `{"occurred":"2024-01-01T00:00:00.000001Z","event":"` + name + `","resource":{"prefect.resource.id":"prefect.flow-run.1"},"payload":{"a":1},"id":"` + uuid.NewString() + `"}`
}

func receiveN(t *testing.T, sub events.Subscription, n int) []events.ReceivedEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []events.ReceivedEvent
	for len(out) < n {
		msgs, err := sub.Receive(ctx, n-len(out))
		if err != nil {
			t.Fatalf("received %d of %d events: %v", len(out), n, err)
		}
		for _, m := range msgs {
			var e events.ReceivedEvent
			if err := json.Unmarshal(m.Data, &e); err != nil {
				t.Fatal(err)
			}
			out = append(out, e)
		}
	}
	return out
}

func TestEventsWebsocketIn(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		broker := events.NewMemoryBroker(100)
		sub, _ := broker.Subscribe(events.TopicEvents, "test")
		c := newClient(t, s, func(o *Options) { o.Broker = broker; o.AuthString = "secret" })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		url := "ws" + strings.TrimPrefix(c.base, "http") + "/api/events/in"

		conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"prefect"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.CloseNow()
		if err := conn.Write(ctx, websocket.MessageText, []byte(`{"type":"auth","token":"secret"}`)); err != nil {
			t.Fatal(err)
		}
		_, data, err := conn.Read(ctx)
		if err != nil || string(data) != `{"type":"auth_success"}` {
			t.Fatalf("handshake: %s %v", data, err)
		}
		for _, frame := range []string{eventJSON("first"), `{"not":"an event"}`, `garbage`, eventJSON("second")} {
			if err := conn.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
				t.Fatal(err)
			}
		}
		got := receiveN(t, sub, 2)
		if got[0].Event.Event != "first" || got[1].Event.Event != "second" || got[0].Received.IsZero() {
			t.Fatalf("events: %+v", got)
		}
		conn.Close(websocket.StatusNormalClosure, "")

		// A wrong token closes the socket with a policy violation.
		bad, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"prefect"}})
		if err != nil {
			t.Fatal(err)
		}
		defer bad.CloseNow()
		_ = bad.Write(ctx, websocket.MessageText, []byte(`{"type":"auth","token":"nope"}`))
		if _, _, err := bad.Read(ctx); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
			t.Fatalf("bad token: %v", err)
		}
	})
}

func TestCreateEvents(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		broker := events.NewMemoryBroker(100)
		sub, _ := broker.Subscribe(events.TopicEvents, "test")
		c := newClient(t, s, func(o *Options) { o.Broker = broker })
		var batch []json.RawMessage
		for _, n := range []string{"a", "b", "c"} {
			batch = append(batch, json.RawMessage(eventJSON(n)))
		}
		wantStatus(t, c.do("POST", "/api/events", batch), http.StatusNoContent)
		if got := receiveN(t, sub, 3); got[2].Event.Event != "c" {
			t.Fatalf("events: %+v", got)
		}
		r := c.do("POST", "/api/events", []any{map[string]any{"event": "x"}})
		wantStatus(t, r, http.StatusUnprocessableEntity)
	})
}
