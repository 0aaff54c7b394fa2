package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/storetest"
)

type logJSON struct {
	ID        string  `json:"id"`
	Name      string  `json:"name"`
	Level     int     `json:"level"`
	Message   string  `json:"message"`
	Timestamp string  `json:"timestamp"`
	FlowRunID *string `json:"flow_run_id"`
	TaskRunID *string `json:"task_run_id"`
	Created   string  `json:"created"`
}

func readLogsAPI(t *testing.T, c *client, body map[string]any) []logJSON {
	t.Helper()
	r := c.do("POST", "/api/logs/filter", body)
	wantStatus(t, r, http.StatusOK)
	var out []logJSON
	r.json(t, &out)
	return out
}

func logMessagesJSON(ls []logJSON) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Message
	}
	return out
}

func TestLogsCreateAndFilter(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		broker := events.NewMemoryBroker(1000)
		sub, err := broker.Subscribe(events.TopicLogs, "test")
		if err != nil {
			t.Fatal(err)
		}
		c := newClient(t, s, func(o *Options) { o.Broker = broker })
		fr, tr := uuid.NewString(), uuid.NewString()
		base := time.Date(2024, 1, 22, 15, 30, 45, 0, time.UTC)
		// The client's batch: 100 lines, sent newest first so that the
		// order read back comes from the sort.
		var batch []map[string]any
		for i := 99; i >= 0; i-- {
			l := map[string]any{
				"name": "prefect.flow_runs", "level": 20, "message": fmt.Sprintf("line %03d", i),
				"timestamp": base.Add(time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano), "flow_run_id": fr,
			}
			if i%10 == 0 {
				l["task_run_id"] = tr
				l["level"] = 40
			}
			batch = append(batch, l)
		}
		r := c.do("POST", "/api/logs/", batch)
		wantStatus(t, r, http.StatusCreated)
		if string(r.body) != "null" {
			t.Fatalf("create body %q, want null", r.body)
		}

		got := readLogsAPI(t, c, map[string]any{})
		if len(got) != 100 {
			t.Fatalf("read %d logs", len(got))
		}
		for i, l := range got {
			if want := fmt.Sprintf("line %03d", i); l.Message != want {
				t.Fatalf("log %d = %q, want %q", i, l.Message, want)
			}
		}
		if got[1].Timestamp != "2024-01-22T15:30:45.001000Z" || got[1].FlowRunID == nil || *got[1].FlowRunID != fr || got[1].TaskRunID != nil {
			t.Fatalf("log 1 = %+v", got[1])
		}

		desc := readLogsAPI(t, c, map[string]any{"sort": "TIMESTAMP_DESC", "limit": 3, "offset": 1})
		eqStrings(t, "desc page", logMessagesJSON(desc), []string{"line 098", "line 097", "line 096"})
		errs := readLogsAPI(t, c, map[string]any{"logs": map[string]any{"level": map[string]any{"ge_": 40}, "task_run_id": map[string]any{"any_": []string{tr}}}, "limit": 2})
		eqStrings(t, "level and task run", logMessagesJSON(errs), []string{"line 000", "line 010"})
		text := readLogsAPI(t, c, map[string]any{"logs": map[string]any{"text": map[string]any{"query": `"line 05" -"line 050"`}}})
		eqStrings(t, "text", logMessagesJSON(text), []string{"line 051", "line 052", "line 053", "line 054", "line 055", "line 056", "line 057", "line 058", "line 059"})
		none := readLogsAPI(t, c, map[string]any{"logs": map[string]any{"flow_run_id": map[string]any{"any_": []string{uuid.NewString()}}}})
		eqStrings(t, "other run", logMessagesJSON(none), []string{})
		nullBody := readLogsAPI(t, c, map[string]any{"logs": nil, "sort": nil, "limit": nil, "offset": nil})
		if len(nullBody) != 100 {
			t.Fatalf("null members: %d logs", len(nullBody))
		}

		// Every created line went to the logs topic, as the API's Log.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var streamed int
		for streamed < 100 {
			msgs, err := sub.Receive(ctx, 100)
			if err != nil {
				t.Fatalf("streamed %d logs: %v", streamed, err)
			}
			for _, m := range msgs {
				var l logJSON
				if err := json.Unmarshal(m.Data, &l); err != nil || l.ID == "" || m.Attributes["log_id"] != l.ID {
					t.Fatalf("streamed log %s (%v)", m.Data, err)
				}
			}
			streamed += len(msgs)
		}

		// Bad input answers 422 and writes nothing.
		wantValidation(t, c.do("POST", "/api/logs/", map[string]any{"name": "x"}), "body", "")
		wantValidation(t, c.do("POST", "/api/logs/", []map[string]any{{"name": "x", "message": "m", "timestamp": base}}), "body.0.level", "missing")
		wantValidation(t, c.do("POST", "/api/logs/", []map[string]any{{"name": "x", "level": 10, "message": "m", "timestamp": "yesterday"}}), "body.0.timestamp", "")
		wantValidation(t, c.do("POST", "/api/logs/filter", map[string]any{"sort": "LEVEL_DESC"}), "body.sort", "")
		wantValidation(t, c.do("POST", "/api/logs/filter", map[string]any{"offset": -1}), "body.offset", "")
		r = c.do("POST", "/api/logs/filter", map[string]any{"limit": 201})
		wantStatus(t, r, http.StatusUnprocessableEntity)
		r = c.do("POST", "/api/logs/", []map[string]any{{"name": "x", "level": 1 << 20, "message": "m", "timestamp": base}})
		wantStatus(t, r, http.StatusUnprocessableEntity)
		if n := len(readLogsAPI(t, c, map[string]any{})); n != 100 {
			t.Fatalf("after bad input: %d logs", n)
		}
		// An empty batch is fine.
		wantStatus(t, c.do("POST", "/api/logs/", []any{}), http.StatusCreated)
	})
}

func eqStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
		t.Fatalf("%s = %q, want %q", what, got, want)
	}
}

func TestLogsDownload(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s store.Store) {
		c := newClient(t, s)
		wantDetail(t, c.do("GET", "/api/flow_runs/"+uuid.NewString()+"/logs/download", nil), http.StatusNotFound, "Flow run not found")

		f := createFlow(t, c, map[string]any{"name": "dl"})
		frID := uuid.New()
		storetest.Exec(t, s, "INSERT INTO flow_run (id, flow_id, name) VALUES (?, ?, ?)", frID, uuid.MustParse(f.ID), "brave dolphin/1")
		tr := uuid.NewString()
		base := time.Date(2024, 1, 22, 15, 30, 45, 0, time.UTC)
		var batch []map[string]any
		// More lines than one download page, so the stream pages.
		for i := range 1001 {
			batch = append(batch, map[string]any{"name": "n", "level": 20, "message": fmt.Sprint("m", i), "timestamp": base.Add(time.Duration(i+10) * time.Second), "flow_run_id": frID})
		}
		batch = append(batch,
			map[string]any{"name": "n", "level": 40, "message": "said \"hi\", then\nleft", "timestamp": base.Add(123456 * time.Microsecond), "flow_run_id": frID, "task_run_id": tr},
			map[string]any{"name": "n", "level": 10, "message": " plain", "timestamp": base, "flow_run_id": frID},
			map[string]any{"name": "n", "level": 10, "message": "other run", "timestamp": base, "flow_run_id": uuid.NewString()},
		)
		wantStatus(t, c.do("POST", "/api/logs/", batch), http.StatusCreated)

		// Read with a plain client: the answer is CSV, which the document
		// (application/json, any schema) does not describe.
		resp, err := http.Get(c.base + "/api/flow_runs/" + frID.String() + "/logs/download")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("download: %d %s", resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
			t.Errorf("content type %q", ct)
		}
		if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename="flow-run-logs.csv"; filename*=UTF-8''brave%20dolphin%2F1-logs.csv` {
			t.Errorf("content disposition %q", cd)
		}
		lines := strings.Split(string(body), "\r\n")
		want := []string{
			"timestamp,level,flow_run_id,task_run_id,message",
			"2024-01-22 15:30:45+00:00,10," + frID.String() + ",, plain",
			"2024-01-22 15:30:45.123456+00:00,40," + frID.String() + "," + tr + ",\"said \"\"hi\"\", then\nleft\"",
			"2024-01-22 15:30:55+00:00,20," + frID.String() + ",,m0",
		}
		eqStrings(t, "csv head", lines[:4], want)
		if len(lines) != 1+1003+1 || lines[len(lines)-1] != "" || !strings.HasSuffix(lines[len(lines)-2], ",,m1000") {
			t.Fatalf("csv has %d lines, ends %q", len(lines), lines[len(lines)-2:])
		}
	})
}
