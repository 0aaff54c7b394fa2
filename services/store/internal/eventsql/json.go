package eventsql

import (
	"encoding/json"
	"slices"

	"github.com/prefect-go/prefect-server/services/events"
)

// The encoders below write exactly what encoding/json writes for the same
// values (keys sorted, the same escapes), several times faster: the
// persister encodes five label maps per event, and at tens of thousands of
// events per second reflection-driven encoding took a large share of a core.

// appendString appends s as a JSON string.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			// Escapes, HTML-safe characters and UTF-8 (invalid bytes,
			// U+2028/U+2029) are rare in labels: leave them to
			// encoding/json, which cannot fail on a string.
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// appendResource appends r as a JSON object; with labelsOnly, without its
// prefect.resource.id and prefect.resource.role labels (event_resources
// keeps those in columns).
func appendResource(dst []byte, r events.Resource, labelsOnly bool) []byte {
	if r == nil && !labelsOnly {
		return append(dst, "null"...)
	}
	var stack [16]string
	keys := stack[:0]
	for k := range r {
		if labelsOnly && (k == "prefect.resource.id" || k == "prefect.resource.role") {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		dst = appendString(dst, r[k])
	}
	return append(dst, '}')
}
