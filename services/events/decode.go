package events

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/openapi"
)

// decodeFast reads an event frame in the shape Prefect's client writes it,
// without reflection: encoding/json spent about 5µs per event, the largest
// cost of /events/in besides the database. It gives up (ok false) on
// anything outside that shape: keys other than the seven field names
// spelled exactly, a key given twice, escapes or invalid UTF-8 in a string,
// nulls other than those of payload and follows, non-string labels,
// malformed JSON. The caller then decodes with encoding/json, so that
// encoding/json alone decides every unusual case, errors included; what
// decodeFast accepts it decodes exactly as encoding/json would
// (TestDecodeFastMatchesEncodingJSON, FuzzDecodeFast).
func decodeFast(data []byte) (e Event, ok bool) {
	d := fastDecoder{data: data}
	if !d.consume('{') {
		return e, false
	}
	var seen [7]bool
	for first := true; ; first = false {
		if d.consume('}') {
			if first || !d.atEnd() {
				// "{}" is valid but so rare it is not worth a path.
				return e, false
			}
			return e, true
		}
		if !first && !d.consume(',') {
			return e, false
		}
		key, ok := d.simpleString()
		if !ok || !d.consume(':') {
			return e, false
		}
		field := -1
		switch string(key) {
		case "occurred":
			field = 0
			s, ok := d.simpleString()
			if !ok {
				return e, false
			}
			t, err := openapi.ParseTime(string(s))
			if err != nil {
				return e, false
			}
			e.Occurred = openapi.Time{Time: t}
		case "event":
			field = 1
			s, ok := d.simpleString()
			if !ok {
				return e, false
			}
			e.Event = string(s)
		case "resource":
			field = 2
			if e.Resource, ok = d.labels(); !ok {
				return e, false
			}
		case "related":
			field = 3
			if e.Related, ok = d.resources(); !ok {
				return e, false
			}
		case "payload":
			field = 4
			raw, ok := d.value()
			if !ok {
				return e, false
			}
			e.Payload = append(json.RawMessage(nil), raw...)
		case "id":
			field = 5
			s, ok := d.simpleString()
			if !ok {
				return e, false
			}
			id, err := uuid.ParseBytes(s)
			if err != nil {
				return e, false
			}
			e.ID = id
		case "follows":
			field = 6
			if d.literal("null") {
				e.Follows = nil
				break
			}
			s, ok := d.simpleString()
			if !ok {
				return e, false
			}
			id, err := uuid.ParseBytes(s)
			if err != nil {
				return e, false
			}
			e.Follows = &id
		default:
			return e, false
		}
		if seen[field] {
			return e, false
		}
		seen[field] = true
	}
}

type fastDecoder struct {
	data []byte
	pos  int
}

func (d *fastDecoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// consume skips whitespace and then c, if c comes next.
func (d *fastDecoder) consume(c byte) bool {
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == c {
		d.pos++
		return true
	}
	return false
}

func (d *fastDecoder) atEnd() bool {
	d.skipSpace()
	return d.pos == len(d.data)
}

// literal skips whitespace and then lit, if lit comes next as a whole token.
func (d *fastDecoder) literal(lit string) bool {
	d.skipSpace()
	end := d.pos + len(lit)
	if end > len(d.data) || string(d.data[d.pos:end]) != lit {
		return false
	}
	d.pos = end
	return true
}

// simpleString reads a string without escapes, control characters or
// invalid UTF-8, whose bytes are then its value, and returns those bytes
// (a view into the input).
func (d *fastDecoder) simpleString() ([]byte, bool) {
	if !d.consume('"') {
		return nil, false
	}
	start, ascii := d.pos, true
	for ; d.pos < len(d.data); d.pos++ {
		switch c := d.data[d.pos]; {
		case c == '"':
			s := d.data[start:d.pos]
			d.pos++
			return s, ascii || utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// labels reads a JSON object of strings into a new map, the later of
// repeated keys winning, as encoding/json does.
func (d *fastDecoder) labels() (Resource, bool) {
	if !d.consume('{') {
		return nil, false
	}
	r := Resource{}
	if d.consume('}') {
		return r, true
	}
	for {
		k, ok := d.simpleString()
		if !ok || !d.consume(':') {
			return nil, false
		}
		v, ok := d.simpleString()
		if !ok {
			return nil, false
		}
		r[string(k)] = string(v)
		if d.consume('}') {
			return r, true
		}
		if !d.consume(',') {
			return nil, false
		}
	}
}

// resources reads a JSON array of label objects; [] gives an empty, not
// nil, slice, as encoding/json does.
func (d *fastDecoder) resources() ([]Resource, bool) {
	if !d.consume('[') {
		return nil, false
	}
	out := []Resource{}
	if d.consume(']') {
		return out, true
	}
	for {
		r, ok := d.labels()
		if !ok {
			return nil, false
		}
		out = append(out, r)
		if d.consume(']') {
			return out, true
		}
		if !d.consume(',') {
			return nil, false
		}
	}
}

// value returns the bytes of the next JSON value, whatever it is. It finds
// the end by nesting and string quoting only, then has encoding/json check
// that those bytes are one valid value.
func (d *fastDecoder) value() ([]byte, bool) {
	d.skipSpace()
	start, depth := d.pos, 0
	for d.pos < len(d.data) {
		switch c := d.data[d.pos]; c {
		case '"':
			d.pos++
			for d.pos < len(d.data) && d.data[d.pos] != '"' {
				if d.data[d.pos] == '\\' {
					d.pos++
				}
				d.pos++
			}
			if d.pos >= len(d.data) {
				return nil, false
			}
			d.pos++
		case '{', '[':
			depth++
			d.pos++
		case '}', ']':
			if depth == 0 {
				return d.scalarEnd(start)
			}
			depth--
			d.pos++
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return d.scalarEnd(start)
			}
			d.pos++
		default:
			d.pos++
		}
		if depth == 0 && d.pos > start && (d.data[d.pos-1] == '}' || d.data[d.pos-1] == ']' || d.data[d.pos-1] == '"') {
			return d.scalarEnd(start)
		}
	}
	return d.scalarEnd(start)
}

func (d *fastDecoder) scalarEnd(start int) ([]byte, bool) {
	raw := d.data[start:d.pos]
	return raw, len(raw) > 0 && json.Valid(raw)
}
