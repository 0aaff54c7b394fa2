// Package openapi embeds the API documents the server validates against and
// holds the few Go types the derived document names through x-go-type.
package openapi

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"time"
)

// Derived is the OpenAPI 3.0.3 document derived from Prefect's 3.9.1 dump by
// tools/openapi-derive; generation and request validation both use it.
//
//go:embed prefect-api.json
var Derived []byte

// RawJSON stands for responses whose upstream schema allows any JSON value.
// Types the generator defines from it keep the embedded RawMessage's
// MarshalJSON (promoted through the struct), so the bytes are written
// verbatim, and an unset value as null.
type RawJSON struct{ json.RawMessage }

// Time is every date-time of the API. It writes RFC 3339 in UTC with
// microseconds, as Prefect does, and reads what pydantic reads: an offset or
// Z, a space or T between date and time, and naive values as UTC.
type Time struct{ time.Time }

// TimeFormat is the wire format of timestamps the server writes.
const TimeFormat = "2006-01-02T15:04:05.000000Z"

// MarshalJSON writes the UTC timestamp with fixed microseconds.
func (t Time) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(TimeFormat)+2)
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, TimeFormat)
	return append(b, '"'), nil
}

// UnmarshalJSON accepts pydantic's datetime forms; JSON null leaves the
// value untouched, as encoding/json does for time.Time.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := ParseTime(s)
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

// timeLayouts are tried in order; the ones without a zone are read as UTC.
// Bind parses a query or path parameter (the generated binder's Binder
// interface), with the same leniency as the JSON form.
func (t *Time) Bind(s string) error {
	v, err := ParseTime(s)
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04",
	"2006-01-02",
}

// ParseTime parses a timestamp as pydantic would, returning it in UTC.
func ParseTime(s string) (time.Time, error) {
	if len(s) > 10 && s[10] == ' ' {
		s = s[:10] + "T" + s[11:]
	}
	for _, layout := range timeLayouts {
		if v, err := time.Parse(layout, s); err == nil {
			return v.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid date-time %q", s)
}
