package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func runCmd(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, env, t.TempDir(), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelpListsCommandsAndSettings(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		code, out, _ := runCmd(t, nil, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d", args, code)
		}
		for _, want := range []string{"start", "migrate", "api-coverage", "version",
			"PREFECT_SERVER_DATABASE_CONNECTION_URL (also PREFECT_API_DATABASE_CONNECTION_URL)",
			"PREFECT_SERVER_API_PORT", "4200", "PREFECT_HOME"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: help lacks %q:\n%s", args, want, out)
			}
		}
	}
}

func TestCommandErrors(t *testing.T) {
	if code, _, errOut := runCmd(t, nil, "frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut := runCmd(t, []string{"HOME=" + t.TempDir(), "PREFECT_SERVER_API_PORT=abc"}, "start")
	if code != 1 || !strings.Contains(errOut, "PREFECT_SERVER_API_PORT") {
		t.Errorf("bad port: exit %d, stderr %q", code, errOut)
	}
	// Flags become settings, and are checked like them.
	code, _, errOut = runCmd(t, []string{"HOME=" + t.TempDir()}, "start", "--port", "http")
	if code != 1 || !strings.Contains(errOut, "PREFECT_SERVER_API_PORT") {
		t.Errorf("bad --port: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ := runCmd(t, nil, "start", "-h"); code != 0 {
		t.Errorf("start -h: exit %d", code)
	}
	if code, _, _ := runCmd(t, []string{"HOME=" + t.TempDir()}, "start", "--log-format", "xml"); code != 2 {
		t.Errorf("bad --log-format: exit %d", code)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCmd(t, nil, "version")
	if code != 0 || !strings.Contains(out, "3.9.1") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestMigrate(t *testing.T) {
	db := filepath.Join(t.TempDir(), "sub", "prefect.db")
	env := []string{"HOME=" + t.TempDir(), "PREFECT_SERVER_DATABASE_CONNECTION_URL=sqlite+aiosqlite:///" + db}
	for range 2 { // applying twice is a no-op
		if code, _, errOut := runCmd(t, env, "migrate"); code != 0 {
			t.Fatalf("migrate: exit %d: %s", code, errOut)
		}
	}
	if _, err := os.Stat(db); err != nil {
		t.Errorf("database not created: %v", err)
	}
}

func TestRedactedURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgresql+asyncpg://u:secret@db:5432/x": "postgresql+asyncpg://u:xxxxx@db:5432/x",
		"sqlite+aiosqlite:////tmp/p.db":           "sqlite+aiosqlite:////tmp/p.db",
		"postgresql://u@db/x":                     "postgresql://u@db/x",
	} {
		if got := redactedURL(in); got != want {
			t.Errorf("redactedURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestLifecycle builds the binary, starts it on a free port with a fresh
// SQLite database, waits for /api/health, sends SIGTERM and expects a clean
// exit.
func TestLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "prefect-server")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	cmd := exec.Command(bin, "start", "--log-format", "json")
	cmd.Dir = dir
	cmd.Env = []string{
		"HOME=" + dir,
		"PATH=" + os.Getenv("PATH"),
		"PREFECT_SERVER_API_PORT=0",
		"PREFECT_SERVER_DATABASE_CONNECTION_URL=sqlite+aiosqlite:///" + filepath.Join(dir, "prefect.db"),
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	logs := &syncBuffer{}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			logs.Write(append(line, '\n'))
			var rec struct {
				Msg     string `json:"msg"`
				Address string `json:"address"`
			}
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "server started" {
				addr <- rec.Address
			}
		}
		exited <- cmd.Wait()
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	var base string
	select {
	case base = <-addr:
	case err := <-exited:
		stopped = true
		t.Fatalf("server exited before starting: %v\n%s", err, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("no 'server started' line within 60s:\n%s", logs.String())
	}

	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(base + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "true" {
				break
			}
			err = errors.New(resp.Status + " " + string(body))
		}
		if time.Now().After(deadline) {
			t.Fatalf("/api/health never answered true: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	resp, err := client.Get(base + "/admin/settings")
	if err != nil {
		t.Fatal(err)
	}
	var settings struct {
		Home   string `json:"home"`
		Server struct {
			Database struct {
				ConnectionURL string `json:"connection_url"`
			} `json:"database"`
		} `json:"server"`
	}
	err = json.NewDecoder(resp.Body).Decode(&settings)
	resp.Body.Close()
	if err != nil || settings.Home != filepath.Join(dir, ".prefect") || settings.Server.Database.ConnectionURL != "**********" {
		t.Errorf("/api/admin/settings: %v %+v", err, settings)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30s after SIGTERM:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `"msg":"server stopped"`) {
		t.Errorf("no 'server stopped' line:\n%s", logs.String())
	}
}

// syncBuffer collects the child's log lines while the test reads them.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
