package config

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// pythonSettings asks the pinned Prefect wheel for its settings JSON under
// the same environment and working directory, or skips when the project's
// virtualenv is absent.
func pythonSettings(t *testing.T, env []string, cwd string) []byte {
	t.Helper()
	py, err := filepath.Abs(filepath.Join("..", "..", ".venv", "bin", "python"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(py); err != nil {
		t.Skipf("no Prefect virtualenv at %s: %v", py, err)
	}
	cmd := exec.Command(py, "-W", "ignore", "-c",
		"import json; from prefect.settings import Settings; print(json.dumps(Settings().model_dump(mode='json')))")
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	cmd.Dir = cwd
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	return out
}

// canonical re-encodes a settings tree with set-valued fields sorted, since
// Python serialises sets in hash order.
func canonical(t *testing.T, b []byte) string {
	t.Helper()
	tree := decodeTree(t, b)
	for _, f := range Fields() {
		if f.Kind != KindSet && f.Kind != KindVacuumSet {
			continue
		}
		parent := tree
		for _, p := range f.Path[:len(f.Path)-1] {
			parent = parent[p].(map[string]any)
		}
		if list, ok := parent[f.Path[len(f.Path)-1]].([]any); ok {
			slices.SortFunc(list, func(a, b any) int {
				ja, _ := json.Marshal(a)
				jb, _ := json.Marshal(b)
				return strings.Compare(string(ja), string(jb))
			})
		}
	}
	out, err := json.MarshalIndent(tree, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestSameAsPython loads the same sources in Go and in Prefect itself and
// expects identical /admin/settings trees.
func TestSameAsPython(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Python")
	}
	cases := map[string]struct {
		env       []string
		files     map[string]string
		homeFiles map[string]string // below $HOME
	}{
		"defaults": {},
		"sources": {
			env: []string{
				"PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://u:${PREFECT_SERVER_DATABASE_PASSWORD}@db/x",
				"PREFECT_SERVER_DATABASE_PASSWORD=pw",
				"PREFECT_SERVER_API_PORT=4300",
				"PREFECT_API_URL=http://example.com:4300/api",
				"PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD=7200",
				"PREFECT_SERVER_SERVICES_DB_VACUUM_EVENT_RETENTION_OVERRIDES={\"a\": 4000}",
				"PREFECT_CLIENT_RETRY_EXTRA_CODES=503,429",
				"PREFECT_LOGGING_SERVER_LEVEL=info",
				"PREFECT_DEBUG_MODE=true",
				"PREFECT_SERVER_EVENTS_RETENTION_PERIOD=P2DT3H",
				"PREFECT_TASKS_DEFAULT_RETRY_DELAY_SECONDS=[1, 2.5]",
			},
			files: map[string]string{
				"prefect.toml":   "[server.api]\nhost = \"0.0.0.0\"\nport = 1\ndefault_limit = 10\n[server.services.late_runs]\nafter_seconds = 90\n",
				"pyproject.toml": "[tool.prefect.server.api]\ndefault_limit = 5\nkeepalive_timeout = 9\n",
				".env":           "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS=https://a,https://b\n",
			},
		},
	}
	cases["profiles"] = struct {
		env       []string
		files     map[string]string
		homeFiles map[string]string
	}{
		env: []string{"PREFECT_SERVER_API_HOST=envhost"},
		homeFiles: map[string]string{".prefect/profiles.toml": `active = "dev"
[profiles.dev]
PREFECT_SERVER_API_HOST = "profilehost"
PREFECT_SERVER_API_PORT = "4999"
PREFECT_API_DATABASE_CONNECTION_URL = "sqlite+aiosqlite:////tmp/dev.db"
PREFECT_SERVER_LOGGING_LEVEL = "debug"
`},
		files: map[string]string{"prefect.toml": "[server]\nlogging_level = \"error\"\n"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cwd, home := t.TempDir(), t.TempDir()
			for file, content := range tc.files {
				write(t, filepath.Join(cwd, file), content)
			}
			for file, content := range tc.homeFiles {
				write(t, filepath.Join(home, file), content)
			}
			env := append([]string{"HOME=" + home}, tc.env...)
			c := load(t, cwd, env...)
			got, err := c.JSON()
			if err != nil {
				t.Fatal(err)
			}
			want := pythonSettings(t, env, cwd)
			if g, w := canonical(t, got), canonical(t, want); g != w {
				t.Errorf("Go and Python settings differ\n--- go\n%s\n--- python\n%s", g, w)
			}
		})
	}
}

// TestDumpIsCurrent regenerates settings_defaults.json from the pinned wheel
// and expects the checked-in file, so a wheel upgrade cannot go unnoticed.
func TestDumpIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Python")
	}
	py, err := filepath.Abs(filepath.Join("..", "..", ".venv", "bin", "python"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(py); err != nil {
		t.Skipf("no Prefect virtualenv at %s: %v", py, err)
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "tools", "dump-settings.py"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, script)
	cmd.Env = []string{"HOME=/__HOME__", "PATH=/usr/bin:/bin"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dump-settings.py: %v\n%s", err, stderr.String())
	}
	if !bytes.Equal(out, defaultsJSON) {
		t.Error("services/config/settings_defaults.json is stale: regenerate it with " +
			"`env -i HOME=/__HOME__ PATH=/usr/bin:/bin .venv/bin/python tools/dump-settings.py > services/config/settings_defaults.json`")
	}
}
