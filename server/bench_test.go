package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store/storetest"
)

// BenchmarkLoadSpec is the start-up cost of parsing the embedded document and
// keeping what routing and validation need; -benchmem shows the garbage it
// leaves for the first GC cycles.
func BenchmarkLoadSpec(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := loadServingSpec(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSpecRetained reports the live heap the loaded document keeps once
// the start-up garbage is collected: it is part of the server's idle RSS.
func BenchmarkSpecRetained(b *testing.B) {
	var keep []any
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for b.Loop() {
		s, err := loadServingSpec()
		if err != nil {
			b.Fatal(err)
		}
		keep = append(keep, s)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(keep)), "live-B/doc")
	runtime.KeepAlive(keep)
}

// benchServer serves a fresh SQLite store over a real HTTP listener, as the
// Python client would reach it; the access log is at WARNING, the default.
func benchServer(b *testing.B) (string, *http.Client) {
	b.Helper()
	h, err := New(Options{
		Store:    storetest.OpenSQLite(b),
		Broker:   events.NewMemoryBroker(0),
		Settings: settingsJSON(`{"home":"/tmp"}`),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	b.Cleanup(tr.CloseIdleConnections)
	return srv.URL, &http.Client{Transport: tr}
}

func benchDo(b *testing.B, c *http.Client, method, url string, body []byte, want int, out any) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Prefect-Api-Version", "0.8.4")
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != want {
		b.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFlowRunLifecycle is the REST half of one flow run as the 3.9.1
// client drives it: create the run PENDING, read it, set RUNNING, post a
// batch of 10 logs, set COMPLETED, in parallel on one SQLite store.
func BenchmarkFlowRunLifecycle(b *testing.B) {
	base, c := benchServer(b)
	var flow struct{ ID string }
	benchDo(b, c, "POST", base+"/api/flows/", []byte(`{"name":"bench"}`), http.StatusCreated, &flow)
	createBody := []byte(`{"flow_id":"` + flow.ID + `","state":{"type":"PENDING","name":"Pending"},"parameters":{"x":1},"tags":["bench"]}`)
	running := []byte(`{"state":{"type":"RUNNING","name":"Running"}}`)
	completed := []byte(`{"state":{"type":"COMPLETED","name":"Completed"}}`)
	b.ReportAllocs()
	b.SetParallelism(8) // 16 clients on 2 cores
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var run struct{ ID string }
			benchDo(b, c, "POST", base+"/api/flow_runs/", createBody, http.StatusCreated, &run)
			benchDo(b, c, "GET", base+"/api/flow_runs/"+run.ID, nil, http.StatusOK, nil)
			benchDo(b, c, "POST", base+"/api/flow_runs/"+run.ID+"/set_state", running, http.StatusCreated, nil)
			var logs bytes.Buffer
			logs.WriteByte('[')
			now := time.Now().UTC().Format(time.RFC3339Nano)
			for i := range 10 {
				if i > 0 {
					logs.WriteByte(',')
				}
				fmt.Fprintf(&logs, `{"name":"prefect.flow_runs","level":20,"message":"line %d","timestamp":%q,"flow_run_id":%q}`, i, now, run.ID)
			}
			logs.WriteByte(']')
			benchDo(b, c, "POST", base+"/api/logs/", logs.Bytes(), http.StatusCreated, nil)
			benchDo(b, c, "POST", base+"/api/flow_runs/"+run.ID+"/set_state", completed, http.StatusCreated, nil)
		}
	})
}

// BenchmarkEventsIn measures accepting events over /api/events/in, the path
// task runs take: one websocket, one event per frame, as the client sends.
func BenchmarkEventsIn(b *testing.B) {
	base, _ := benchServer(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+base[len("http"):]+"/api/events/in", &websocket.DialOptions{Subprotocols: []string{"prefect"}})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.CloseNow()
	if err := conn.Write(ctx, websocket.MessageText, []byte(`{"type":"auth","token":null}`)); err != nil {
		b.Fatal(err)
	}
	if _, data, err := conn.Read(ctx); err != nil || string(data) != `{"type":"auth_success"}` {
		b.Fatalf("handshake: %s %v", data, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		frame := `{"occurred":"2024-01-01T00:00:00.000001Z","event":"prefect.task-run.Running","resource":{"prefect.resource.id":"prefect.task-run.` + uuid.NewString() + `"},"payload":{"intended":{"from":"PENDING","to":"RUNNING"}},"id":"` + uuid.NewString() + `"}`
		if err := conn.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
			b.Fatal(err)
		}
	}
}
