package server

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/prefect-go/prefect-server/gen/api"
	"github.com/prefect-go/prefect-server/services/events"
)

// publishEvents stamps events as received and hands them to the broker in
// one call, as Prefect's create_events does.
func (h *handlers) publishEvents(ctx context.Context, evs []events.Event) error {
	if len(evs) == 0 {
		return nil
	}
	now := time.Now()
	msgs := make([]events.Message, 0, len(evs))
	for _, e := range evs {
		re := e.Receive(now)
		msgs = append(msgs, events.NewMessage(&re))
	}
	return h.opts.Broker.Publish(ctx, events.TopicEvents, msgs...)
}

type eventsAccepted struct{}

func (eventsAccepted) VisitCreateEventsResponse(w http.ResponseWriter) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handlers) CreateEvents(ctx context.Context, req api.CreateEventsRequestObject) (api.CreateEventsResponseObject, error) {
	var evs []events.Event
	if req.Body != nil {
		evs = *req.Body
	}
	for i := range evs {
		if err := evs[i].Validate(h.opts.EventLimits); err != nil {
			return nil, errUnprocessable(strings.TrimPrefix(err.Error(), events.ErrInvalid.Error()+": "))
		}
	}
	if err := h.publishEvents(ctx, evs); err != nil {
		return nil, err
	}
	return eventsAccepted{}, nil
}

// acceptPrefectSocket performs Prefect's websocket handshake: with the
// "prefect" subprotocol the first message must be {"type":"auth"} (its token
// checked when an auth string is set) and is answered {"type":"auth_success"};
// without it, old clients are accepted as they are unless auth is on.
func (h *handlers) acceptPrefectSocket(w http.ResponseWriter, r *http.Request) (*websocket.Conn, bool) {
	prefectProto := false
	for _, header := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(header, ",") {
			if strings.TrimSpace(p) == "prefect" {
				prefectProto = true
			}
		}
	}
	opts := &websocket.AcceptOptions{InsecureSkipVerify: true}
	if prefectProto {
		opts.Subprotocols = []string{"prefect"}
	}
	conn, err := websocket.Accept(w, r, opts)
	if err != nil {
		return nil, false
	}
	conn.SetReadLimit(int64(h.opts.EventLimits.MaxSizeBytes) + 1024)
	if !prefectProto {
		if h.opts.AuthString != "" {
			conn.Close(websocket.StatusProtocolError, "")
			return nil, false
		}
		return conn, true
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	_, data, err := conn.Read(ctx)
	if err != nil {
		conn.CloseNow()
		return nil, false
	}
	var msg struct {
		Type  string `json:"type"`
		Token string `json:"token"`
	}
	if json.Unmarshal(data, &msg) != nil || msg.Type != "auth" {
		conn.Close(websocket.StatusPolicyViolation, "Expected 'auth' message")
		return nil, false
	}
	if h.opts.AuthString != "" {
		if msg.Token == "" {
			conn.Close(websocket.StatusPolicyViolation, "Auth required but no token provided")
			return nil, false
		}
		if subtle.ConstantTimeCompare([]byte(msg.Token), []byte(h.opts.AuthString)) != 1 {
			conn.Close(websocket.StatusPolicyViolation, "Invalid token")
			return nil, false
		}
	}
	if err := conn.Write(ctx, websocket.MessageText, []byte(`{"type":"auth_success"}`)); err != nil {
		conn.CloseNow()
		return nil, false
	}
	return conn, true
}

// eventsIn is the websocket /api/events/in: one Event JSON per frame. A
// malformed event is logged and skipped; the connection and the events that
// follow it are kept, so one bad client event cannot lose the run's others.
func (h *handlers) eventsIn(w http.ResponseWriter, r *http.Request) {
	conn, ok := h.acceptPrefectSocket(w, r)
	if !ok {
		return
	}
	defer conn.CloseNow()
	ctx := r.Context()
	var buf bytes.Buffer
	for {
		data, err := readFrame(ctx, conn, &buf)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusNormalClosure || websocket.CloseStatus(err) == websocket.StatusGoingAway || errors.Is(err, context.Canceled) {
				return
			}
			h.log.DebugContext(ctx, "events websocket closed", "error", err)
			return
		}
		e, err := events.Decode(data, h.opts.EventLimits)
		if err != nil {
			h.log.WarnContext(ctx, "dropping invalid event", "error", err)
			continue
		}
		if err := h.publishEvents(ctx, []events.Event{e}); err != nil {
			h.log.ErrorContext(ctx, "publishing event failed", "error", err)
			conn.Close(websocket.StatusInternalError, "")
			return
		}
	}
}

// readFrame reads the next message into buf, reusing its memory (a fresh
// slice per frame was a visible share of the socket's cost): the decoded
// event copies what it keeps. A buffer grown by an unusually large frame
// is let go rather than held for the life of the socket.
func readFrame(ctx context.Context, conn *websocket.Conn, buf *bytes.Buffer) ([]byte, error) {
	_, r, err := conn.Reader(ctx)
	if err != nil {
		return nil, err
	}
	if buf.Cap() > 64<<10 {
		*buf = bytes.Buffer{}
	}
	buf.Reset()
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
