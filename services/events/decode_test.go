package events

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// decodeCases are frames of the client's shape and of shapes around it:
// whatever decodeFast accepts must decode as encoding/json decodes it.
var decodeCases = []string{
	`{"occurred":"2026-11-26T01:44:22.068155Z","event":"bench.measured.8ad3c2f1","resource":{"prefect.resource.id":"bench.worker.8ad3c2f1.3","prefect.resource.name":"bench worker"},"related":[{"prefect.resource.id":"prefect.tag.bench","prefect.resource.role":"tag"}],"payload":{"seq":7,"note":"benchmark event"},"id":"019ab6b1-3f0e-7d7c-9a4e-6f1f4f3b2a10","follows":null}`,
	// The 3.9.1 client's pydantic dump: spaces, offsets, follows set.
	`{"occurred": "2024-05-02T10:00:00.123456+00:00", "event": "prefect.task-run.Running", "resource": {"prefect.resource.id": "prefect.task-run.1", "prefect.resource.name": "t-1", "prefect.orchestration": "client"}, "related": [], "payload": {"intended": {"from": "PENDING", "to": "RUNNING"}, "validated_state": {"type": "RUNNING", "data": null}}, "id": "0190a6a0-0000-7000-8000-000000000001", "follows": "0190a6a0-0000-7000-8000-000000000002"}`,
	"{\n\t\"occurred\" : \"2024-01-01T00:00:00Z\" ,\r\n \"event\":\"x\",\"resource\":{},\"id\":\"0190a6a0-0000-7000-8000-000000000001\"\n}\n",
	`{"occurred":"2024-01-01T00:00:00Z","event":"é ☃ 日本","resource":{"prefect.resource.id":"ünï","k":"v","k":"w"},"id":"0190a6a0-0000-7000-8000-000000000001"}`,
	`{"payload":"text","occurred":"2024-01-01T00:00:00Z","event":"x","resource":{"prefect.resource.id":"a"},"id":"0190A6A0-0000-7000-8000-00000000000F"}`,
	`{"payload":null,"event":"x"}`,
	`{"payload":[1,"a\"]",{"b":[]}],"event":"x"}`,
	`{"payload":-1.5e3,"event":"x"}`,
	`{"payload":true , "event":"x"}`,
	`{"payload":{"s":"}\\\"{"},"event":"x"}`,
	`{"id":"urn:uuid:0190a6a0-0000-7000-8000-000000000001","follows":"{0190a6a0-0000-7000-8000-000000000002}"}`,
	`{"id":"0190a6a000007000800000000000000f"}`,
	// Outside the fast shape: encoding/json decides.
	`{}`,
	`{"Event":"x","event":"y"}`,
	`{"event":"x","event":"y"}`,
	`{"event":"x\ny"}`,
	`{"event":"x\u0041"}`,
	`{"event":"\xff"}`,
	`{"resource":{"a":1}}`,
	`{"resource":null}`,
	`{"related":null}`,
	`{"related":[null]}`,
	`{"occurred":null}`,
	`{"occurred":"soon"}`,
	`{"id":"nope"}`,
	`{"follows":5}`,
	`{"extra":1,"event":"x"}`,
	`{"payload":{"a":1}}}`,
	`{"payload":{"a":}}`,
	`{"payload":"unterminated}`,
	`{"payload":01}`,
	`{"event":"x",}`,
	`{"event":"x"} trailing`,
	`{"event":"x"`,
	`[]`,
	``,
	`{"payload":tru}`,
	`{"payload":nul,"event":"x"}`,
}

func checkDecodeFast(t *testing.T, data []byte) {
	t.Helper()
	fast, ok := decodeFast(data)
	if !ok {
		return
	}
	var want Event
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatalf("decodeFast accepted %q, which encoding/json refuses: %v", data, err)
	}
	if !reflect.DeepEqual(fast, want) {
		t.Fatalf("decodeFast(%q)\n got %#v\nwant %#v", data, fast, want)
	}
}

func TestDecodeFastMatchesEncodingJSON(t *testing.T) {
	accepted := 0
	for _, c := range decodeCases {
		checkDecodeFast(t, []byte(c))
		if _, ok := decodeFast([]byte(c)); ok {
			accepted++
		}
	}
	if accepted < 8 {
		t.Fatalf("the fast path took only %d of the client-shaped frames", accepted)
	}
	// Generated events of the client's shape, then every truncation and
	// a byte flipped here and there.
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		frame := randomFrame(r)
		if _, ok := decodeFast(frame); !ok {
			t.Fatalf("fast path refused a client-shaped frame: %s", frame)
		}
		checkDecodeFast(t, frame)
		for i := 0; i < len(frame); i += 1 + r.IntN(7) {
			checkDecodeFast(t, frame[:i])
			mut := append([]byte(nil), frame...)
			const noise = "{}[]\",: \\0an-e"
			mut[i] = noise[r.IntN(len(noise))]
			checkDecodeFast(t, mut)
		}
	}
}

func randomFrame(r *rand.Rand) []byte {
	word := func() string {
		const alphabet = "abcxyz.-_ 0189AZé☃/"
		var sb strings.Builder
		for range 1 + r.IntN(12) {
			runes := []rune(alphabet)
			sb.WriteRune(runes[r.IntN(len(runes))])
		}
		return sb.String()
	}
	labels := func(role string) map[string]string {
		m := map[string]string{"prefect.resource.id": "prefect." + word()}
		if role != "" {
			m["prefect.resource.role"] = role
		}
		for range r.IntN(4) {
			m["prefect."+word()] = word()
		}
		return m
	}
	related := []map[string]string{}
	for range r.IntN(4) {
		related = append(related, labels(word()))
	}
	ev := map[string]any{
		"occurred": "2024-05-02T10:00:00." + fmt.Sprint(100000+r.IntN(900000)) + "Z",
		"event":    "prefect." + word(),
		"resource": labels(""),
		"related":  related,
		"payload":  map[string]any{"n": r.Float64(), "s": word(), "l": []any{nil, true, word()}},
		"id":       uuid.NewString(),
		"follows":  nil,
	}
	if r.IntN(2) == 0 {
		ev["follows"] = uuid.NewString()
	}
	// SetEscapeHTML(false): the client does not escape <, > and &.
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		panic(err)
	}
	return []byte(sb.String())
}

func FuzzDecodeFast(f *testing.F) {
	for _, c := range decodeCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkDecodeFast(t, data) })
}

func BenchmarkDecode(b *testing.B) {
	frame := []byte(decodeCases[0])
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(frame, DefaultLimits); err != nil {
			b.Fatal(err)
		}
	}
}
