package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeFlows implements just the flow routes the flows workload calls, the
// way Prefect answers them, so the whole runner can be tested offline.
type fakeFlows struct {
	mu     sync.Mutex
	byName map[string]map[string]any
	byID   map[string]map[string]any
	// Faults to prove that failures are counted, not dropped.
	createAlways200 bool
	readDropsName   bool
}

func newFakeFlows() *fakeFlows {
	return &fakeFlows{byName: map[string]map[string]any{}, byID: map[string]map[string]any{}}
}

func uuid4() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeFlows) matching(body []byte) ([]map[string]any, error) {
	var req struct {
		Flows *struct {
			Name *struct {
				Like string `json:"like_"`
			} `json:"name"`
		} `json:"flows"`
		Limit int `json:"limit"`
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, err
		}
	}
	like := ""
	if req.Flows != nil && req.Flows.Name != nil {
		like = strings.ToLower(req.Flows.Name.Like)
	}
	var out []map[string]any
	for name, flow := range f.byName {
		if strings.Contains(strings.ToLower(name), like) {
			out = append(out, flow)
		}
	}
	slices.SortFunc(out, func(a, b map[string]any) int { return strings.Compare(a["name"].(string), b["name"].(string)) })
	if req.Limit > 0 && len(out) > req.Limit {
		out = out[:req.Limit]
	}
	return out, nil
}

func (f *fakeFlows) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var body bytes.Buffer
	_, _ = body.ReadFrom(r.Body)
	path := strings.TrimPrefix(r.URL.Path, "/api")
	switch {
	case r.Method == "POST" && path == "/flows/":
		var in struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(body.Bytes(), &in); err != nil || in.Name == "" {
			writeJSON(w, 422, map[string]any{"detail": []any{}})
			return
		}
		if flow, ok := f.byName[in.Name]; ok {
			writeJSON(w, 200, flow)
			return
		}
		now := time.Now().UTC().Format("2006-01-02T15:04:05.000000Z")
		flow := map[string]any{"id": uuid4(), "created": now, "updated": now, "name": in.Name, "tags": in.Tags, "labels": map[string]any{}}
		f.byName[in.Name], f.byID[flow["id"].(string)] = flow, flow
		status := 201
		if f.createAlways200 {
			status = 200
		}
		writeJSON(w, status, flow)
	case r.Method == "GET" && strings.HasPrefix(path, "/flows/name/"):
		if flow, ok := f.byName[strings.TrimPrefix(path, "/flows/name/")]; ok {
			writeJSON(w, 200, flow)
			return
		}
		writeJSON(w, 404, map[string]any{"detail": "Flow not found"})
	case r.Method == "POST" && path == "/flows/filter":
		flows, err := f.matching(body.Bytes())
		if err != nil {
			writeJSON(w, 422, map[string]any{"detail": err.Error()})
			return
		}
		if flows == nil {
			flows = []map[string]any{}
		}
		writeJSON(w, 200, flows)
	case r.Method == "POST" && path == "/flows/count":
		flows, err := f.matching(body.Bytes())
		if err != nil {
			writeJSON(w, 422, map[string]any{"detail": err.Error()})
			return
		}
		writeJSON(w, 200, len(flows))
	case r.Method == "GET" && strings.HasPrefix(path, "/flows/"):
		flow, ok := f.byID[strings.TrimPrefix(path, "/flows/")]
		if !ok {
			writeJSON(w, 404, map[string]any{"detail": "Flow not found"})
			return
		}
		if f.readDropsName {
			flow = maps.Clone(flow)
			delete(flow, "name")
		}
		writeJSON(w, 200, flow)
	default:
		writeJSON(w, 404, map[string]any{"detail": "Not Found"})
	}
}

const testSpec = "../../openapi/prefect-api.json"

func runBench(t *testing.T, f *fakeFlows, extra ...string) Report {
	t.Helper()
	if _, err := os.Stat(testSpec); err != nil {
		t.Fatalf("derived OpenAPI document missing: %v", err)
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	args := append([]string{"-url", srv.URL + "/api", "-c", "4", "-warmup", "50ms", "-d", "300ms",
		"-w", "flows", "-json", "-spec", testSpec}, extra...)
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, args, &out, &errOut); err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out.String())
	}
	if len(rep.Workloads) != 1 || rep.Workloads[0].Name != "flows" {
		t.Fatalf("workloads = %+v", rep.Workloads)
	}
	return rep
}

func opByName(t *testing.T, res WorkloadResult, name string) OpSummary {
	t.Helper()
	for _, o := range res.Ops {
		if o.Op == name {
			return o
		}
	}
	t.Fatalf("operation %s missing from %+v", name, res.Ops)
	return OpSummary{}
}

func TestFlowsWorkloadAgainstFakeServer(t *testing.T) {
	f := newFakeFlows()
	rep := runBench(t, f, "-pid", fmt.Sprint(os.Getpid()))
	res := rep.Workloads[0]
	if res.Total.Errors != 0 || res.WarmupErrors != 0 {
		t.Fatalf("errors against a correct server: %+v", res)
	}
	if !strings.Contains(rep.Validation, "OpenAPI response schema") {
		t.Errorf("validation mode %q, want full schema validation", rep.Validation)
	}
	for _, op := range []string{"create_flow", "read_flow", "read_flow_by_name", "read_flows", "count_flows"} {
		s := opByName(t, res, op)
		if s.Count == 0 || s.RPS <= 0 || s.P50Ms <= 0 || s.P99Ms < s.P50Ms || s.ValidateMeanUs <= 0 {
			t.Errorf("%s: implausible figures %+v", op, s)
		}
	}
	var sum uint64
	for _, o := range res.Ops {
		sum += o.Count
	}
	if sum != res.Total.Count {
		t.Errorf("total %d != sum of operations %d", res.Total.Count, sum)
	}
	// VmHWM is not compared with the sampled peak: the kernel syncs per-thread
	// RSS counters lazily, so the two can disagree by a few pages.
	if rep.Server == nil || rep.Server.IdleRSS <= 0 || rep.Server.RunPeak <= 0 || rep.Server.VmHWMAfter <= 0 {
		t.Errorf("server memory %+v", rep.Server)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.byName) == 0 {
		t.Fatal("no flows created")
	}
}

func TestFlowsWorkloadCountsWrongStatus(t *testing.T) {
	f := newFakeFlows()
	f.createAlways200 = true
	res := runBench(t, f).Workloads[0]
	s := opByName(t, res, "create_flow")
	if s.Errors == 0 || s.Errors != s.Count {
		t.Fatalf("every create answered 200 instead of 201, got %+v", s)
	}
	if len(s.ErrorSamples) == 0 || !strings.Contains(s.ErrorSamples[0], "status 200 (want [201])") {
		t.Errorf("error samples %q", s.ErrorSamples)
	}
	if res.Total.Errors != s.Errors {
		t.Errorf("total errors %d, want %d", res.Total.Errors, s.Errors)
	}
}

func TestFlowsWorkloadCountsSchemaViolations(t *testing.T) {
	f := newFakeFlows()
	f.readDropsName = true
	res := runBench(t, f).Workloads[0]
	s := opByName(t, res, "read_flow")
	if s.Errors == 0 || s.Errors != s.Count {
		t.Fatalf("every read lacked the required name, got %+v", s)
	}
	if len(s.ErrorSamples) == 0 || !strings.Contains(s.ErrorSamples[0], "invalid response") {
		t.Errorf("error samples %q", s.ErrorSamples)
	}
}

func TestFlowsWorkloadWithoutValidation(t *testing.T) {
	f := newFakeFlows()
	f.readDropsName = true
	rep := runBench(t, f, "-validate=false")
	if !strings.HasPrefix(rep.Validation, "off") {
		t.Errorf("validation mode %q", rep.Validation)
	}
	// Without the schema the workload's own check still catches the
	// missing name: a wrong answer is never a success.
	s := opByName(t, rep.Workloads[0], "read_flow")
	if s.Errors != s.Count || s.ValidateMeanUs != 0 {
		t.Errorf("read_flow %+v", s)
	}
}

func TestParseFlagsRejectsBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"-c", "0"},
		{"-d", "0s"},
		{"-w", "nope"},
		{"-url", "localhost:4200"},
		{"extra"},
	} {
		if _, err := parseFlags(args, new(bytes.Buffer)); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	o, err := parseFlags(nil, new(bytes.Buffer))
	if err != nil || o.concurrency != 16 || o.duration != 10*time.Second || o.warmup != 2*time.Second || !o.validate || o.url != "http://127.0.0.1:4200/api" {
		t.Errorf("defaults %+v %v", o, err)
	}
}

func TestFlowsWorkloadWithUpstream31Document(t *testing.T) {
	// The 3.1 dump is only checked for status and JSON well-formedness,
	// because kin-openapi would recompile its schemas on every response.
	rep := runBench(t, newFakeFlows(), "-spec", "../../openapi/prefect-3.9.1.json")
	if !strings.Contains(rep.Validation, "OpenAPI 3.1") {
		t.Errorf("validation mode %q", rep.Validation)
	}
	if res := rep.Workloads[0]; res.Total.Errors != 0 || res.Total.Count == 0 {
		t.Errorf("total %+v", res.Total)
	}
}
