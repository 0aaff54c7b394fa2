package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fakeEvents is /events/in and /events/filter as a Prefect server answers
// them. With dropMeasured it keeps the warm-up events and loses the
// measured ones, as Python's in-memory broker does once warm-up has filled
// its 10,000-message queue.
type fakeEvents struct {
	dropMeasured bool
	mu           sync.Mutex
	stored       map[string]int64 // by event name
}

func (f *fakeEvents) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/api/events/in":
		conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"prefect"}})
		if err != nil {
			return
		}
		defer conn.CloseNow()
		ctx := r.Context()
		if _, _, err := conn.Read(ctx); err != nil {
			return
		}
		if conn.Write(ctx, websocket.MessageText, []byte(`{"type":"auth_success"}`)) != nil {
			return
		}
		for {
			_, data, err := conn.Read(ctx)
			if err != nil {
				return
			}
			var ev struct {
				Event string `json:"event"`
			}
			if json.Unmarshal(data, &ev) != nil {
				return
			}
			if f.dropMeasured && strings.Contains(ev.Event, ".measured.") {
				continue
			}
			f.mu.Lock()
			f.stored[ev.Event]++
			f.mu.Unlock()
		}
	case "/api/events/filter":
		var body struct {
			Filter struct {
				Event struct {
					Name []string `json:"name"`
				} `json:"event"`
			} `json:"filter"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		var total int64
		f.mu.Lock()
		for _, n := range body.Filter.Event.Name {
			total += f.stored[n]
		}
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"events": []any{}, "total": total, "next_page": nil})
	default:
		http.NotFound(w, r)
	}
}

func runEventsBench(t *testing.T, f *fakeEvents) WorkloadResult {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := []string{"-url", srv.URL + "/api", "-c", "2", "-warmup", "100ms", "-d", "200ms", "-w", "events", "-json", "-validate=false"}
	if err := run(ctx, args, &out, &errOut); err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || len(rep.Workloads) != 1 {
		t.Fatalf("report: %v\n%s", err, out.String())
	}
	return rep.Workloads[0]
}

func metric(t *testing.T, res WorkloadResult, name string) float64 {
	t.Helper()
	m, ok := res.Metric(name)
	if !ok {
		t.Fatalf("metric %q missing from %+v", name, res.Metrics)
	}
	return m.Value
}

func TestEventsWorkloadCountsPersisted(t *testing.T) {
	res := runEventsBench(t, &fakeEvents{stored: map[string]int64{}})
	if len(res.Problems) != 0 || res.Total.Errors != 0 {
		t.Fatalf("problems against a server that keeps every event: %v", res.Problems)
	}
	if lost := metric(t, res, "measured events lost"); lost != 0 {
		t.Errorf("%v measured events lost", lost)
	}
	if rate := metric(t, res, "events persisted"); rate <= 0 {
		t.Errorf("persisted rate %v", rate)
	}
}

// A server that keeps the warm-up events and drops the measured ones is
// reported as dropping, with the run's stored count beside the measured.
func TestEventsWorkloadReportsDroppedEvents(t *testing.T) {
	old := eventsStallTimeout
	eventsStallTimeout = 500 * time.Millisecond
	t.Cleanup(func() { eventsStallTimeout = old })
	f := &fakeEvents{dropMeasured: true, stored: map[string]int64{}}
	res := runEventsBench(t, f)
	if len(res.Problems) != 1 || !strings.Contains(res.Problems[0], "only 0 of") || !strings.Contains(res.Problems[0], "warm-up included") {
		t.Fatalf("problems %q", res.Problems)
	}
	f.mu.Lock()
	var warm int64
	for _, n := range f.stored {
		warm += n
	}
	f.mu.Unlock()
	if warm == 0 {
		t.Fatal("no warm-up events reached the fake")
	}
	if got := metric(t, res, "run events stored (warm-up included)"); got != float64(warm) {
		t.Errorf("run events stored %v, want %d", got, warm)
	}
	if lost, measured := metric(t, res, "measured events lost"), metric(t, res, "run events lost (warm-up included)"); lost <= 0 || measured != lost {
		t.Errorf("lost %v measured, %v of the run; want the same positive count", lost, measured)
	}
}
