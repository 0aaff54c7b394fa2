package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"math/bits"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/openapi"
	"github.com/prefect-go/prefect-server/services/events"
)

// Every batch size is covered by the few prepared statement texts, each
// of the row count its placeholders say.
func TestInsertChunks(t *testing.T) {
	for i, text := range eventInsertTexts {
		if n := strings.Count(text, "?"); n != eventInsertCols<<i {
			t.Fatalf("event text %d has %d placeholders", i, n)
		}
		if n := strings.Count(resourceInsertTexts[i], "?"); n != resourceInsertCols<<i {
			t.Fatalf("resource text %d has %d placeholders", i, n)
		}
	}
	if eventInsertCols*insertChunk > maxParams || resourceInsertCols*insertChunk > maxParams {
		t.Fatal("the largest chunk exceeds the parameter limit")
	}
	for n := 1; n <= 3*insertChunk+5; n++ {
		done, statements := 0, 0
		for done < n {
			rows, text := chunk(n - done)
			if rows != 1<<text || rows > n-done || rows > insertChunk {
				t.Fatalf("n=%d: chunk of %d rows (text %d) with %d left", n, rows, text, n-done)
			}
			done += rows
			statements++
		}
		if max := n/insertChunk + bits.OnesCount(uint(n%insertChunk)); statements != max {
			t.Fatalf("n=%d: %d statements, want %d", n, statements, max)
		}
	}
}

func benchEvents(n int) []events.ReceivedEvent {
	now := time.Now()
	out := make([]events.ReceivedEvent, n)
	for i := range out {
		out[i] = events.ReceivedEvent{Event: events.Event{
			Occurred: openapi.Time{Time: now},
			Event:    "bench.event",
			Resource: events.Resource{"prefect.resource.id": fmt.Sprintf("bench.worker.%d", i%16), "prefect.resource.name": "bench worker"},
			Related:  []events.Resource{{"prefect.resource.id": "prefect.tag.bench", "prefect.resource.role": "tag"}},
			Payload:  json.RawMessage(`{"seq":1,"note":"benchmark event"}`),
			ID:       uuid.Must(uuid.NewV7()),
		}, Received: openapi.Time{Time: now}}
	}
	return out
}

// BenchmarkInsertEvents measures the persister's store call alone, per
// batch size (the persister writes up to 2,000 per transaction).
func BenchmarkInsertEvents(b *testing.B) {
	for _, n := range []int{20, 200, 2000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx := context.Background()
			s, err := Open(ctx, filepath.Join(b.TempDir(), "e.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			total := 0
			for b.Loop() {
				b.StopTimer()
				evs := benchEvents(n)
				b.StartTimer()
				if _, err := s.InsertEvents(ctx, evs); err != nil {
					b.Fatal(err)
				}
				total += n
			}
			b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
