package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
)

// The ceiling runs against the server's own schema: a migration that
// breaks one of its statements must fail here, not in a benchmark run.
func TestSQLiteCeiling(t *testing.T) {
	var out, errOut bytes.Buffer
	code := runCeiling(context.Background(), []string{"-json", "-d", "100ms", "-batch", "4", "-dir", t.TempDir()}, nil, "", &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var rep ceilingReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if rep.TransitionsPerS <= 0 || rep.RowsPerS <= 0 || rep.LifecyclesPerS <= 0 || rep.GroupedPerS <= 0 || rep.SQLite == "" {
		t.Errorf("report %+v has empty figures", rep)
	}
	if rep.RowsPerLife != 87 {
		t.Errorf("rows per lifecycle = %d, want 87 (3 task runs, 9 states, 13 events, 52 resources, 10 logs)", rep.RowsPerLife)
	}
}
