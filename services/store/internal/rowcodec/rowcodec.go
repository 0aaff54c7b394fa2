// Package rowcodec holds the conversions both adapters share between domain
// values and their stored JSON forms, plus the text of dynamic statements
// whose only dialect differences come from the filter builder.
package rowcodec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
)

// EncodeTags renders tags as a JSON array; nil becomes [] because the
// column is NOT NULL DEFAULT '[]' in Prefect's schema.
func EncodeTags(tags []string) []byte {
	if tags == nil {
		return []byte("[]")
	}
	b, _ := json.Marshal(tags) // a []string always marshals
	return b
}

// DecodeTags parses a JSON array of strings; SQL NULL or JSON null read as
// no tags.
func DecodeTags(b []byte) ([]string, error) {
	tags := []string{}
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return tags, nil
	}
	if err := json.Unmarshal(b, &tags); err != nil {
		return nil, fmt.Errorf("decode tags %q: %w", b, err)
	}
	if tags == nil {
		tags = []string{}
	}
	return tags, nil
}

// EncodeObject renders a JSON object, or nil (SQL NULL) for a nil map.
func EncodeObject(m map[string]any) ([]byte, error) {
	if m == nil {
		return nil, nil
	}
	return json.Marshal(m)
}

// DecodeObject parses a JSON object; SQL NULL and JSON null give nil.
// Numbers stay json.Number so integers round-trip exactly.
func DecodeObject(b []byte) (map[string]any, error) {
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode object %q: %w", b, err)
	}
	return m, nil
}

// FlowColumns is the column list dynamic flow queries select, in the order
// the adapters scan.
const FlowColumns = "flow.id, flow.created, flow.updated, flow.name, flow.tags, flow.labels"

// Page appends ORDER BY, LIMIT and OFFSET to a statement, binding the numbers
// through b so they share the filter's placeholder sequence.
func Page(sb *strings.Builder, b *filter.Builder, orderBy string, limit, offset int) {
	if orderBy != "" {
		sb.WriteString(" ORDER BY ")
		sb.WriteString(orderBy)
	}
	switch {
	case limit > 0:
		sb.WriteString(" LIMIT ")
		sb.WriteString(b.Bind(int64(limit)))
	case offset > 0 && b.Dialect() == filter.SQLite:
		// SQLite accepts OFFSET only after a LIMIT; -1 means none.
		sb.WriteString(" LIMIT -1")
	}
	if offset > 0 {
		sb.WriteString(" OFFSET ")
		sb.WriteString(b.Bind(int64(offset)))
	}
}

// FlowSelect builds the statement for one page of flows, selecting cols.
func FlowSelect(d filter.Dialect, cols string, q store.FlowQuery) (string, []any, error) {
	b := filter.NewBuilder(d)
	where, err := b.FlowWhere(q.Filter)
	if err != nil {
		return "", nil, err
	}
	order, err := filter.FlowOrderBy(q.Sort)
	if err != nil {
		return "", nil, err
	}
	var sb strings.Builder
	sb.WriteString("SELECT " + cols + " FROM flow WHERE " + where)
	Page(&sb, b, order, q.Limit, q.Offset)
	return sb.String(), b.Args(), nil
}

// FlowCount builds the count statement for a flow filter.
func FlowCount(d filter.Dialect, f filter.FlowFilterSet) (string, []any, error) {
	b := filter.NewBuilder(d)
	where, err := b.FlowWhere(f)
	if err != nil {
		return "", nil, err
	}
	return "SELECT count(*) FROM flow WHERE " + where, b.Args(), nil
}
