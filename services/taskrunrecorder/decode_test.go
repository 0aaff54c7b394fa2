package taskrunrecorder

import (
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/openapi"
	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/orchestration"
)

// benchMessage is a broker message as the 3.9.1 client's final task run
// event produces it (the shape the benchmark prefill sends).
func benchMessage(b testing.TB) events.Message {
	at := time.Now().UTC()
	fr, tr := uuid.New(), uuid.Must(uuid.NewV7())
	payload, _ := json.Marshal(map[string]any{
		"intended":        map[string]any{"from": nil, "to": "COMPLETED"},
		"initial_state":   nil,
		"validated_state": map[string]any{"type": "COMPLETED", "name": "Completed", "message": "", "state_details": map[string]any{"untrackable_result": true}, "data": nil},
		"task_run": map[string]any{
			"name": "prefill_task-3", "task_key": "prefill_task-3", "dynamic_key": fr.String() + "-3",
			"empirical_policy":    map[string]any{"max_retries": 0, "retry_delay_seconds": 0.0, "retries": 0, "retry_delay": 0},
			"tags":                []string{"bench-prefill-x", "bench-x-b1"},
			"labels":              map[string]any{},
			"task_inputs":         map[string]any{"x": []any{}},
			"run_count":           1,
			"flow_run_run_count":  1,
			"expected_start_time": at.Add(-time.Second).Format(time.RFC3339Nano),
			"start_time":          at.Add(-time.Second).Format(time.RFC3339Nano),
			"end_time":            at.Format(time.RFC3339Nano),
			"total_run_time":      1.0,
		},
	})
	e := events.ReceivedEvent{Event: events.Event{
		ID:       uuid.Must(uuid.NewV7()),
		Occurred: openapi.Time{Time: at},
		Event:    "prefect.task-run.Completed",
		Resource: events.Resource{
			"prefect.resource.id": "prefect.task-run." + tr.String(), "prefect.resource.name": "prefill_task-3",
			"prefect.run-count": "1", "prefect.state-message": "", "prefect.state-name": "Completed",
			"prefect.state-timestamp": at.Format(time.RFC3339Nano), "prefect.state-type": "COMPLETED",
			"prefect.orchestration": "client",
		},
		Related: []events.Resource{
			{"prefect.resource.id": "prefect.tag.bench-prefill-x", "prefect.resource.role": "tag"},
			{"prefect.resource.id": "prefect.tag.bench-x-b1", "prefect.resource.role": "tag"},
			{"prefect.resource.id": "prefect.flow-run." + fr.String(), "prefect.resource.name": "porcelain-vulture", "prefect.resource.role": "flow-run"},
			{"prefect.resource.id": "prefect.flow." + uuid.NewString(), "prefect.resource.name": "bench-prefill-x", "prefect.resource.role": "flow"},
		},
		Payload: payload,
	}, Received: openapi.Time{Time: at}}
	data, err := json.Marshal(e)
	if err != nil {
		b.Fatal(err)
	}
	return events.Message{Data: data}
}

// BenchmarkDecode measures turning broker messages into records, the
// recorder's work besides the store's.
func BenchmarkDecode(b *testing.B) {
	r := New(nil, nil, slog.New(slog.DiscardHandler), Options{})
	msgs := make([]events.Message, 100)
	for i := range msgs {
		msgs[i] = benchMessage(b)
	}
	for b.Loop() {
		if got := r.decode(msgs); len(got) != len(msgs) {
			b.Fatalf("decoded %d of %d", len(got), len(msgs))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/event")
}

// State details read in one pass must equal the field-by-field reading:
// timestamps in UTC, truncated to microseconds, lenient forms accepted.
func TestDecodeStateDetailsForms(t *testing.T) {
	at := time.Date(2024, 5, 2, 10, 0, 0, 123456789, time.UTC)
	for _, c := range []struct {
		raw  string
		want *time.Time
	}{
		{`{"scheduled_time": "2024-05-02T12:00:00.123456789+02:00", "cache_key": "k"}`, &at},
		{`{"scheduled_time": "2024-05-02 10:00:00.123456789", "cache_key": "k"}`, &at},
		{`{"scheduled_time": null, "cache_key": "k", "pause_timeout": null}`, nil},
		{`{"cache_key": "k"}`, nil},
	} {
		var d orchestration.StateDetails
		if err := decodeStateDetails(json.RawMessage(c.raw), &d); err != nil {
			t.Fatalf("%s: %v", c.raw, err)
		}
		if d.CacheKey == nil || *d.CacheKey != "k" {
			t.Errorf("%s: cache_key %v", c.raw, d.CacheKey)
		}
		switch {
		case c.want == nil && d.ScheduledTime != nil:
			t.Errorf("%s: scheduled_time %v, want none", c.raw, d.ScheduledTime)
		case c.want != nil && (d.ScheduledTime == nil || !d.ScheduledTime.Equal(c.want.Truncate(time.Microsecond)) ||
			d.ScheduledTime.Location() != time.UTC || d.ScheduledTime.Nanosecond()%1000 != 0):
			t.Errorf("%s: scheduled_time %v, want %v in UTC, whole microseconds", c.raw, d.ScheduledTime, c.want)
		}
	}
	var d orchestration.StateDetails
	if err := decodeStateDetails(json.RawMessage(`{"scheduled_time": "soon"}`), &d); err == nil {
		t.Error("an invalid timestamp was accepted")
	}
}

// BenchmarkRecordFromEvent measures the conversion alone, from an event the
// in-memory broker hands over already decoded.
func BenchmarkRecordFromEvent(b *testing.B) {
	evs := make([]*events.ReceivedEvent, 100)
	for i := range evs {
		var err error
		if evs[i], err = events.FromMessage(benchMessage(b)); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		for _, e := range evs {
			if _, err := RecordFromEvent(e); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
}

// The fast paths decode exactly what encoding/json decodes, and refuse
// exactly what it refuses.
func TestFastDecodersMatchEncodingJSON(t *testing.T) {
	for _, raw := range []string{
		`"plain"`, `""`, `"a\"b"`, `"tab\there"`, `"\u00e9"`, "\"\xff\xfe\"", `"é"`, `"2024-05-02 12:00:00"`,
		`5`, `"5"`, `null`, `true`, `{}`,
	} {
		var want string
		wantErr := json.Unmarshal([]byte(raw), &want)
		var got string
		gotErr := decodeString(json.RawMessage(raw), &got)
		if (wantErr == nil) != (gotErr == nil) || got != want {
			t.Errorf("decodeString(%s) = %q, %v; encoding/json: %q, %v", raw, got, gotErr, want, wantErr)
		}
	}
	for _, raw := range []string{`0`, `7`, `-3`, `-0`, `123456789012345678`, `1234567890123456789012`, `1.0`, `1e3`, `"1"`, `null`, `-`, `true`} {
		want, got := 42, 42
		wantErr := json.Unmarshal([]byte(raw), &want)
		gotErr := decodeInt(json.RawMessage(raw), &got)
		if (wantErr == nil) != (gotErr == nil) || got != want {
			t.Errorf("decodeInt(%s) = %d, %v; encoding/json: %d, %v", raw, got, gotErr, want, wantErr)
		}
	}
}
