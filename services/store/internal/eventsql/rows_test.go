package eventsql

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/openapi"
	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store"
)

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The hand-written encoders must write what encoding/json writes, byte for
// byte: stored JSON is searched as text (the events text filter).
func TestEncodersMatchEncodingJSON(t *testing.T) {
	tricky := []string{"", "plain", `quote"`, `back\slash`, "<html>&amp;", "tab\tnew\nline\x00\x1f\x7f",
		"é☃日本", "\u2028\u2029", "bad\xffutf8", "\xed\xa0\x80", "prefect.resource.id", "prefect.resource.role"}
	r := rand.New(rand.NewPCG(3, 4))
	pick := func() string {
		if r.IntN(3) == 0 {
			return tricky[r.IntN(len(tricky))]
		}
		var sb strings.Builder
		for range r.IntN(10) {
			if s := tricky[r.IntN(len(tricky))]; s != "" {
				sb.WriteByte(s[r.IntN(len(s))])
			}
			sb.WriteByte(byte('a' + r.IntN(26)))
		}
		return sb.String()
	}
	for range 2000 {
		res := events.Resource{}
		for range r.IntN(20) {
			res[pick()] = pick()
		}
		if got, want := string(appendResource(nil, res, false)), mustMarshal(t, res); got != want {
			t.Fatalf("resource %q: got %s, want %s", res, got, want)
		}
		labels := map[string]string{}
		for k, v := range res {
			if k != "prefect.resource.id" && k != "prefect.resource.role" {
				labels[k] = v
			}
		}
		if got, want := string(appendResource(nil, res, true)), mustMarshal(t, labels); got != want {
			t.Fatalf("labels of %q: got %s, want %s", res, got, want)
		}
	}
	if got := string(appendResource(nil, nil, false)); got != "null" {
		t.Fatalf("nil resource: %s", got)
	}
}

func TestEncodeRows(t *testing.T) {
	at := time.Date(2024, 5, 2, 10, 0, 0, 123456789, time.FixedZone("x", 3600))
	follows := uuid.New()
	e := events.ReceivedEvent{Event: events.Event{
		ID: uuid.New(), Occurred: openapi.Time{Time: at}, Event: "prefect.flow-run.Running",
		Resource: events.Resource{"prefect.resource.id": "prefect.flow-run.1", "prefect.resource.name": "<n>"},
		Related: []events.Resource{
			{"prefect.resource.id": "prefect.flow.2", "prefect.resource.role": "flow", "prefect.resource.name": "f"},
			{"prefect.resource.id": "prefect.tag.a", "prefect.resource.role": "tag"},
		},
		Payload: json.RawMessage(`{"a": [1, 2]}`),
		Follows: &follows,
	}, Received: openapi.Time{Time: at.Add(time.Second)}}
	bare := e
	bare.ID, bare.Related, bare.Payload, bare.Follows = uuid.New(), nil, json.RawMessage("null"), nil

	rows, err := Encode([]events.ReceivedEvent{e, bare, e})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2 (the repeated id dropped)", len(rows))
	}
	r := rows[0]
	check := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s: got %s, want %s", what, got, want)
		}
	}
	check("resource", r.Resource, mustMarshal(t, e.Resource))
	check("related ids", r.RelatedResourceIDs, `["prefect.flow.2","prefect.tag.a"]`)
	check("related", r.Related, mustMarshal(t, e.Related))
	check("payload", r.Payload, `{"a": [1, 2]}`)
	if !r.Occurred.Equal(store.Truncate(at)) || r.Occurred.Location() != time.UTC || r.Received.Sub(r.Occurred) != time.Second {
		t.Errorf("times: %v %v", r.Occurred, r.Received)
	}
	if r.Follows == nil || *r.Follows != follows || r.ResourceID != "prefect.flow-run.1" || r.Event != e.Event.Event {
		t.Errorf("columns: %+v", r)
	}
	if len(r.Resources) != 3 {
		t.Fatalf("%d resource rows, want 3", len(r.Resources))
	}
	check("primary role", r.Resources[0].Role, "")
	check("primary labels", r.Resources[0].Resource, `{"prefect.resource.name":"\u003cn\u003e"}`)
	check("related role", r.Resources[1].Role, "flow")
	check("related id", r.Resources[1].ResourceID, "prefect.flow.2")
	check("related labels", r.Resources[1].Resource, `{"prefect.resource.name":"f"}`)
	check("tag labels", r.Resources[2].Resource, `{}`)
	if r.Resources[0].ID == r.Resources[1].ID {
		t.Error("resource rows share an id")
	}

	b := rows[1]
	check("bare related", b.Related, "[]")
	check("bare related ids", b.RelatedResourceIDs, "[]")
	check("bare payload", b.Payload, "{}")
	if len(b.Resources) != 1 || b.Follows != nil {
		t.Errorf("bare row: %+v", b)
	}

	bad := e
	bad.Payload = json.RawMessage(`{"a":`)
	if _, err := Encode([]events.ReceivedEvent{bad}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("invalid payload: %v, want ErrInvalid", err)
	}
}
