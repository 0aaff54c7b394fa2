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
			e, err := events.FromMessage(m)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, *e)
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

// Frames are read into one buffer per socket, reused: every event must keep
// its own copy of what it holds, whatever the frames that follow (a large
// one that outgrows the buffer, then small ones that overwrite it).
func TestEventsWebsocketInKeepsEachFrame(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		broker := events.NewMemoryBroker(100)
		sub, _ := broker.Subscribe(events.TopicEvents, "test")
		c := newClient(t, s, func(o *Options) { o.Broker = broker })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(c.base, "http")+"/api/events/in", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.CloseNow()
		frame := func(name, note string) string {
			return `{"occurred":"2024-01-01T00:00:00.000001Z","event":"` + name + `","resource":{"prefect.resource.id":"prefect.flow-run.` + name + `","prefect.resource.name":"` + note + `"},"related":[{"prefect.resource.id":"prefect.tag.` + name + `","prefect.resource.role":"tag"}],"payload":{"note":"` + note + `"},"id":"` + uuid.NewString() + `"}`
		}
		big := strings.Repeat("x", 100<<10)
		want := map[string]string{"small1": "a", "big": big, "small2": "bb", "escaped": `c\"d`, "small3": "e"}
		for _, name := range []string{"small1", "big", "small2", "escaped", "small3"} {
			if err := conn.Write(ctx, websocket.MessageText, []byte(frame(name, want[name]))); err != nil {
				t.Fatal(err)
			}
		}
		got := receiveN(t, sub, len(want))
		for _, e := range got {
			name := e.Event.Event
			note := strings.ReplaceAll(want[name], `\"`, `"`)
			var payload struct{ Note string }
			if err := json.Unmarshal(e.Payload, &payload); err != nil || payload.Note != note ||
				e.Resource["prefect.resource.name"] != note || e.Resource.ID() != "prefect.flow-run."+name ||
				len(e.Related) != 1 || e.Related[0].ID() != "prefect.tag."+name {
				t.Errorf("event %s came out altered: %.200v", name, e)
			}
		}
	})
}

// In-process consumers get the publisher's event; a broker that crosses
// processes sends Bytes, which decodes to the same event.
func TestPublishedEventMessage(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		broker := events.NewMemoryBroker(100)
		sub, _ := broker.Subscribe(events.TopicEvents, "test")
		c := newClient(t, s, func(o *Options) { o.Broker = broker })
		wantStatus(t, c.do("POST", "/api/events", []json.RawMessage{json.RawMessage(eventJSON("one"))}), http.StatusNoContent)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		msgs, err := sub.Receive(ctx, 1)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("%d messages, %v", len(msgs), err)
		}
		m := msgs[0]
		e, err := events.FromMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		if m.Attributes["id"] != e.ID.String() || m.Attributes["event"] != "one" {
			t.Errorf("attributes %v", m.Attributes)
		}
		data, err := m.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		remote, err := events.FromMessage(events.Message{Data: data})
		if err != nil {
			t.Fatal(err)
		}
		if remote.ID != e.ID || remote.Event.Event != "one" || !remote.Received.Equal(e.Received.Time) ||
			string(remote.Payload) != string(e.Payload) || remote.Resource.ID() != e.Resource.ID() {
			t.Errorf("over the wire %+v, in process %+v", remote, e)
		}
	})
}
