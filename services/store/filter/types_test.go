package filter

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// upstreamDoc is the checked-in upstream OpenAPI document.
var upstreamDoc = filepath.Join("..", "..", "..", "openapi", "prefect-3.9.1.json")

type docSchema struct {
	Properties map[string]json.RawMessage `json:"properties"`
	Required   []string                   `json:"required"`
	Enum       []string                   `json:"enum"`
}

func loadSchemas(t *testing.T) map[string]docSchema {
	t.Helper()
	raw, err := os.ReadFile(upstreamDoc)
	if err != nil {
		t.Fatalf("read upstream document: %v", err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]docSchema `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Components.Schemas
}

func openAPIEnums(t *testing.T) map[string][]string {
	out := map[string][]string{}
	for name, s := range loadSchemas(t) {
		if len(s.Enum) > 0 {
			out[name] = s.Enum
		}
	}
	return out
}

// TestFieldsMatchDocument checks every filter type against its schema: the
// same JSON member names, no more, no fewer, and every $ref'd sub-filter
// mapped to the Go type of that name.
func TestFieldsMatchDocument(t *testing.T) {
	schemas := loadSchemas(t)
	roots := []any{FlowFilter{}, FlowRunFilter{}, TaskRunFilter{}, DeploymentFilter{}, WorkPoolFilter{}, WorkQueueFilter{}, LogFilter{}}
	seen := map[reflect.Type]bool{}
	var check func(rt reflect.Type, schemaName string)
	check = func(rt reflect.Type, schemaName string) {
		if seen[rt] {
			return
		}
		seen[rt] = true
		s, ok := schemas[schemaName]
		if !ok {
			t.Errorf("%s: no schema %q in the document", rt.Name(), schemaName)
			return
		}
		var goNames []string
		for i := range rt.NumField() {
			f := rt.Field(i)
			name := strings.Split(f.Tag.Get("json"), ",")[0]
			goNames = append(goNames, name)
			prop, ok := s.Properties[name]
			if !ok {
				t.Errorf("%s.%s: %q is not a property of %s", rt.Name(), f.Name, name, schemaName)
				continue
			}
			ref := schemaRef(prop)
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ref != "" && ref != "Operator" && ref != "StateType" && ft.Kind() == reflect.Struct {
				check(ft, ref)
			}
		}
		var docNames []string
		for name := range s.Properties {
			docNames = append(docNames, name)
		}
		slices.Sort(goNames)
		slices.Sort(docNames)
		if !slices.Equal(goNames, docNames) {
			t.Errorf("%s: Go fields %v, document properties %v", schemaName, goNames, docNames)
		}
	}
	for _, r := range roots {
		rt := reflect.TypeOf(r)
		check(rt, rt.Name())
	}
	if len(seen) < 50 {
		t.Errorf("only %d types checked", len(seen))
	}
}

// schemaRef returns the schema name a property refers to, directly or
// through anyOf [ref, null].
func schemaRef(prop json.RawMessage) string {
	var p struct {
		Ref   string            `json:"$ref"`
		AnyOf []json.RawMessage `json:"anyOf"`
	}
	_ = json.Unmarshal(prop, &p)
	if p.Ref != "" {
		return p.Ref[strings.LastIndex(p.Ref, "/")+1:]
	}
	for _, a := range p.AnyOf {
		if r := schemaRef(a); r != "" {
			return r
		}
	}
	return ""
}

func TestRoundTrip(t *testing.T) {
	bodies := []struct {
		into any
		body string
	}{
		{&FlowFilterSet{}, `{"flows":{"operator":"or_","id":{"any_":[],"not_any_":["11111111-1111-4111-8111-111111111111"]},"deployment":{"operator":"and_","is_null_":false},"name":{"like_":"x"},"tags":{"all_":["a"],"is_null_":true}},"work_pools":{"type":{"any_":["process"]}}}`},
		{&FlowRunFilterSet{}, `{"flow_runs":{"state":{"type":{"any_":["RUNNING"],"not_any_":[]},"name":{"not_any_":["Late"]}},"start_time":{"before_":"2024-05-06T07:08:09.123456Z","is_null_":false},"created_by":{"id_":["11111111-1111-4111-8111-111111111111"],"type_":["DEPLOYMENT"]},"idempotency_key":{"any_":["k"]},"parent_flow_run_id":{"operator":"or_","any_":[]}},"work_pool_queues":{"name":{"startswith_":["a"]}}}`},
		{&TaskRunFilterSet{}, `{"task_runs":{"subflow_runs":{"exists_":true},"flow_run_id":{"is_null_":false},"state":{"name":{"any_":["Completed"]}},"expected_start_time":{"after_":"2024-05-06T07:08:09.000000Z"}},"deployments":{"concurrency_limit":{"ge_":1,"le_":2,"is_null_":false}}}`},
		{&DeploymentFilterSet{}, `{"deployments":{"flow_or_deployment_name":{"like_":"x"},"paused":{"eq_":false},"tags":{"any_":[]},"work_queue_name":{"any_":["q"]}}}`},
		{&LogFilter{}, `{"operator":"or_","level":{"ge_":0,"le_":50},"timestamp":{"after_":"2024-05-06T07:08:09.000001Z"},"task_run_id":{"is_null_":true},"text":{"query":""}}`},
	}
	for _, c := range bodies {
		if err := json.Unmarshal([]byte(c.body), c.into); err != nil {
			t.Fatalf("decode %s: %v", c.body, err)
		}
		out, err := json.Marshal(c.into)
		if err != nil {
			t.Fatal(err)
		}
		if !jsonEqual(t, out, []byte(c.body)) {
			t.Errorf("round trip:\n got %s\nwant %s", out, c.body)
		}
	}
}

func TestNullMeansAbsent(t *testing.T) {
	var s FlowRunFilterSet
	if err := json.Unmarshal([]byte(`{"flows":null,"flow_runs":{"id":null,"name":{"any_":null,"like_":null}}}`), &s); err != nil {
		t.Fatal(err)
	}
	if s.Flows != nil || s.FlowRuns.Id != nil || s.FlowRuns.Name.Any != nil || s.FlowRuns.Name.Like != nil {
		t.Fatalf("null decoded as a value: %+v", s)
	}
	out, _ := json.Marshal(s)
	if string(out) != `{"flow_runs":{"name":{}}}` {
		t.Fatalf("encoded %s", out)
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

func TestOperatorDecode(t *testing.T) {
	var f FlowFilter
	if err := json.Unmarshal([]byte(`{"operator":"xor_"}`), &f); err == nil {
		t.Fatal("accepted an unknown operator")
	}
	if err := json.Unmarshal([]byte(`{"operator":1}`), &f); err == nil {
		t.Fatal("accepted a number as operator")
	}
	if err := json.Unmarshal([]byte(`{"operator":"or_"}`), &f); err != nil || f.Operator != Or {
		t.Fatalf("or_: %v %q", err, f.Operator)
	}
}

func TestTimeDecode(t *testing.T) {
	want := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
	for _, s := range []string{
		"2024-05-06T07:08:09.123456Z",
		"2024-05-06T07:08:09.123456+00:00",
		"2024-05-06T09:08:09.123456+02:00",
		"2024-05-06T09:08:09.123456+0200",
		"2024-05-06 07:08:09.123456",
		"2024-05-06T07:08:09.123456",
		"2024-05-06 07:08:09.123456Z",
	} {
		var v LogFilterTimestamp
		if err := json.Unmarshal([]byte(`{"before_":"`+s+`"}`), &v); err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		if !v.Before.Equal(want) || v.Before.Location() != time.UTC {
			t.Errorf("%s: got %v", s, v.Before)
		}
	}
	var v LogFilterTimestamp
	for _, bad := range []string{`{"before_":"yesterday"}`, `{"before_":5}`, `{"before_":"2024-13-01T00:00:00Z"}`} {
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
	if err := json.Unmarshal([]byte(`{"before_":"2024-05-06"}`), &v); err != nil || !v.Before.Equal(time.Date(2024, 5, 6, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("date only: %v %v", err, v.Before)
	}
	out, _ := json.Marshal(LogFilterTimestamp{After: &Time{Time: want.In(time.FixedZone("x", 3600))}})
	if !bytes.Equal(out, []byte(`{"after_":"2024-05-06T07:08:09.123456Z"}`)) {
		t.Errorf("encoded %s", out)
	}
}

func TestSQLiteTime(t *testing.T) {
	got := SQLiteTime(time.Date(2024, 1, 2, 5, 4, 5, 6000, time.FixedZone("x", 2*3600)))
	if got != "2024-01-02T03:04:05.000006Z" {
		t.Fatal(got)
	}
}

func TestParseTextSearch(t *testing.T) {
	cases := []struct {
		in                         string
		include, exclude, required []string
	}{
		{"", nil, nil, nil},
		{"   ", nil, nil, nil},
		{"error warning", []string{"error", "warning"}, nil, nil},
		{"error -debug !trace +must", []string{"error"}, []string{"debug", "trace"}, []string{"must"}},
		{`"connection timeout" -"not this"`, []string{"connection timeout"}, []string{"not this"}, nil},
		{`- lone + prefixes !`, []string{"lone", "prefixes"}, nil, nil},
		{`"say \"hi\" \\ \x"`, []string{`say "hi" \ \x`}, nil, nil},
		{`"unclosed phrase`, []string{"unclosed phrase"}, nil, nil},
		{`"  "`, nil, nil, nil},
		{`a"b"`, []string{"a", "b"}, nil, nil},
		{`--x`, nil, []string{"-x"}, nil},
		{"ünï cödé", []string{"ünï", "cödé"}, nil, nil},
	}
	for _, c := range cases {
		q := ParseTextSearch(c.in)
		if !slices.Equal(q.Include, c.include) || !slices.Equal(q.Exclude, c.exclude) || !slices.Equal(q.Required, c.required) {
			t.Errorf("%q: got %+v", c.in, q)
		}
	}
}
