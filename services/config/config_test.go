package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, cwd string, env ...string) *Settings {
	t.Helper()
	c, err := Load(env, cwd)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDefaults(t *testing.T) {
	c := load(t, t.TempDir(), "HOME=/home/u")
	checks := []struct {
		name      string
		got, want any
	}{
		{"Home", c.Home(), "/home/u/.prefect"},
		{"DatabaseURL", c.DatabaseURL(), "sqlite+aiosqlite:////home/u/.prefect/prefect.db"},
		{"APIHost", c.APIHost(), "127.0.0.1"},
		{"APIPort", c.APIPort(), 4200},
		{"APIBasePath", c.APIBasePath(), "/api"},
		{"APIAuthString", c.APIAuthString(), ""},
		{"DefaultLimit", c.DefaultLimit(), 200},
		{"LoggingLevel", c.LoggingLevel(), "WARNING"},
		{"CSRFProtectionEnabled", c.CSRFProtectionEnabled(), false},
		{"CSRFTokenExpiration", c.CSRFTokenExpiration(), time.Hour},
		{"CORSAllowedOrigins", c.CORSAllowedOrigins(), []string{"*"}},
		{"CORSAllowedMethods", c.CORSAllowedMethods(), []string{"*"}},
		{"CORSAllowedHeaders", c.CORSAllowedHeaders(), []string{"*"}},
		{"KeepAliveTimeout", c.KeepAliveTimeout(), 5 * time.Second},
		{"WebsocketPingInterval", c.WebsocketPingInterval(), 20 * time.Second},
		{"DatabaseTimeout", c.DatabaseTimeout(), 10 * time.Second},
		{"MigrateOnStart", c.MigrateOnStart(), true},
		{"MaxParameterSize", c.MaxParameterSize(), 524288},
		{"UIEnabled", c.UIEnabled(), true},
		{"UIV2Enabled", c.UIV2Enabled(), true},
		{"UIAPIURL", c.UIAPIURL(), "http://127.0.0.1:4200/api"},
		{"UIServeBase", c.UIServeBase(), "/"},
		{"profiles_path", c.String("profiles_path"), "/home/u/.prefect/profiles.toml"},
		{"local_storage_path", c.String("results.local_storage_path"), "/home/u/.prefect/storage"},
		{"cloud.ui_url", c.String("cloud.ui_url"), "https://app.prefect.cloud"},
		{"late_runs.after_seconds", c.Duration("server.services.late_runs.after_seconds"), 15 * time.Second},
		// The wheel's default profile ("ephemeral") applies when there is
		// no profiles file.
		{"ephemeral", c.Bool("server.ephemeral.enabled"), true},
		{"ephemeral source", c.Source("server.ephemeral.enabled"), "default profile key PREFECT_SERVER_EPHEMERAL_ENABLED"},
		{"scheduler", c.ServiceEnabled("scheduler"), true},
		{"db_vacuum", c.ServiceEnabled("db_vacuum"), true},
		{"VacuumTypes", c.VacuumTypes(), []string{"events"}},
	}
	for _, tc := range checks {
		if !equal(tc.got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
	if names := c.ServiceNames(); !slices.Contains(names, "late_runs") || !slices.Contains(names, "scheduler") {
		t.Errorf("ServiceNames = %v", names)
	}
}

func value(c *Settings, key string) any {
	v, _ := c.Value(key)
	return v
}

func equal(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestHomeOverrideMovesDerivedDefaults(t *testing.T) {
	c := load(t, t.TempDir(), "HOME=/home/u", "PREFECT_HOME=~/elsewhere/")
	if c.Home() != "/home/u/elsewhere" {
		t.Errorf("Home = %q", c.Home())
	}
	if want := "sqlite+aiosqlite:////home/u/elsewhere/prefect.db"; c.DatabaseURL() != want {
		t.Errorf("DatabaseURL = %q, want %q", c.DatabaseURL(), want)
	}
	if got := c.String("logging.config_path"); got != "/home/u/elsewhere/logging.yml" {
		t.Errorf("logging.config_path = %q", got)
	}

	c = load(t, t.TempDir(), "HOME=/home/u", "PREFECT_HOME=/srv/p", "PREFECT_PROFILES_PATH=$PREFECT_HOME/p.toml")
	if got := c.String("profiles_path"); got != "/srv/p/p.toml" {
		t.Errorf("profiles_path = %q", got)
	}

	if _, err := Load(nil, t.TempDir()); err == nil || !strings.Contains(err.Error(), "HOME") {
		t.Errorf("Load without HOME: err = %v, want one about HOME", err)
	}
}

func TestPrefectTOMLOverlay(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "prefect.toml"), `
home = "/data/prefect"

[server]
logging_level = "debug"   # LogLevel upper-cases its input

[server.api]
host = "0.0.0.0"
port = 4300
default_limit = "50"      # strings are coerced as pydantic does
csrf_token_expiration = 120

[server.database]
connection_url = "postgresql+asyncpg://u:p@db:5432/prefect"

[server.services.late_runs]
after_seconds = "PT30S"

[client]
custom_headers = { X-Team = "a" }
`)
	c := load(t, dir, "HOME=/home/u")
	checks := []struct {
		name      string
		got, want any
	}{
		{"Home", c.Home(), "/data/prefect"},
		{"LoggingLevel", c.LoggingLevel(), "DEBUG"},
		{"APIHost", c.APIHost(), "0.0.0.0"},
		{"APIPort", c.APIPort(), 4300},
		{"DefaultLimit", c.DefaultLimit(), 50},
		{"CSRFTokenExpiration", c.CSRFTokenExpiration(), 2 * time.Minute},
		{"DatabaseURL", c.DatabaseURL(), "postgresql+asyncpg://u:p@db:5432/prefect"},
		{"after_seconds", c.Duration("server.services.late_runs.after_seconds"), 30 * time.Second},
		{"UIAPIURL follows host and port", c.UIAPIURL(), "http://0.0.0.0:4300/api"},
		{"source", c.Source("server.api.port"), "prefect.toml key server.api.port"},
	}
	for _, tc := range checks {
		if !equal(tc.got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
	if v, _ := c.Value("client.custom_headers"); !equal(v, map[string]any{"X-Team": "a"}) {
		t.Errorf("client.custom_headers = %#v", v)
	}
}

func TestSourcePriority(t *testing.T) {
	dir := t.TempDir()
	home := t.TempDir()
	write(t, filepath.Join(dir, "pyproject.toml"), `
[tool.prefect.server.api]
port = 1111
host = "pyproject"
default_limit = 11
keepalive_timeout = 11
`)
	write(t, filepath.Join(dir, "prefect.toml"), `
[server.api]
port = 2222
host = "prefect-toml"
default_limit = 22
`)
	write(t, filepath.Join(dir, ".env"), `
# comment
export PREFECT_SERVER_API_PORT=3333
PREFECT_SERVER_API_HOST="dotenv" # trailing comment
`)
	write(t, filepath.Join(home, "profiles.toml"), `
active = "mine"
[profiles.mine]
PREFECT_SERVER_API_PORT = "5555"
PREFECT_SERVER_API_WEBSOCKET_PING_INTERVAL = 7
PREFECT_SERVER_API_MAX_PARAMETER_SIZE = 77
[profiles.other]
PREFECT_SERVER_API_MAX_PARAMETER_SIZE = 88
`)
	c := load(t, dir, "HOME=/home/u", "PREFECT_HOME="+home, "prefect_server_api_port=4444")
	checks := []struct {
		name      string
		got, want any
	}{
		{"env (names are case-insensitive) beats .env", c.APIPort(), 4444},
		{".env beats prefect.toml", c.APIHost(), "dotenv"},
		{"prefect.toml beats pyproject.toml", c.DefaultLimit(), 22},
		{"pyproject.toml beats the profile", c.KeepAliveTimeout(), 11 * time.Second},
		{"profile beats defaults", c.WebsocketPingInterval(), 7 * time.Second},
		{"active profile", c.MaxParameterSize(), 77},
		// A profiles file replaces the wheel's default profile.
		{"no default profile", c.Bool("server.ephemeral.enabled"), false},
	}
	for _, tc := range checks {
		if !equal(tc.got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}

	c = load(t, dir, "HOME=/home/u", "PREFECT_HOME="+home, "PREFECT_PROFILE=other")
	if c.MaxParameterSize() != 88 {
		t.Errorf("PREFECT_PROFILE=other: max_parameter_size = %d, want 88", c.MaxParameterSize())
	}
	c = load(t, dir, "HOME=/home/u", "PREFECT_HOME="+home, "PREFECT_TEST_MODE=1")
	if c.MaxParameterSize() != 524288 {
		t.Errorf("test mode must ignore profiles: max_parameter_size = %d", c.MaxParameterSize())
	}
}

func TestLegacyAliases(t *testing.T) {
	dir := t.TempDir()
	c := load(t, dir, "HOME=/h", "PREFECT_API_DATABASE_CONNECTION_URL=sqlite+aiosqlite:////tmp/legacy.db",
		"PREFECT_API_DEFAULT_LIMIT=7", "PREFECT_SERVER_CSRF_PROTECTION_ENABLED=yes", "PREFECT_UI_API_URL=http://x/api",
		"PREFECT_API_SERVICES_LATE_RUNS_AFTER_SECONDS=45", "PREFECT_LOGGING_SERVER_LEVEL=error")
	checks := []struct {
		name      string
		got, want any
	}{
		{"DatabaseURL", c.DatabaseURL(), "sqlite+aiosqlite:////tmp/legacy.db"},
		{"DefaultLimit", c.DefaultLimit(), 7},
		{"CSRF", c.CSRFProtectionEnabled(), true},
		{"UIAPIURL", c.UIAPIURL(), "http://x/api"},
		{"late runs", c.Duration("server.services.late_runs.after_seconds"), 45 * time.Second},
		{"LoggingLevel", c.LoggingLevel(), "ERROR"},
		{"source", c.Source("server.database.connection_url"), "environment variable PREFECT_API_DATABASE_CONNECTION_URL"},
	}
	for _, tc := range checks {
		if !equal(tc.got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
	// The canonical name wins over its legacy alias.
	c = load(t, dir, "HOME=/h", "PREFECT_API_DATABASE_CONNECTION_URL=sqlite:///legacy.db", "PREFECT_SERVER_DATABASE_CONNECTION_URL=sqlite:///new.db")
	if c.DatabaseURL() != "sqlite:///new.db" {
		t.Errorf("DatabaseURL = %q, want the canonical variable's value", c.DatabaseURL())
	}
	// The aliases come from the wheel, not from a hand-written list.
	f, _ := Lookup("server.database.connection_url")
	if !slices.Equal(f.Env, []string{"PREFECT_SERVER_DATABASE_CONNECTION_URL", "PREFECT_API_DATABASE_CONNECTION_URL"}) {
		t.Errorf("connection_url env names = %v", f.Env)
	}
}

func TestDatabaseURLFromParts(t *testing.T) {
	c := load(t, t.TempDir(), "HOME=/h", "PREFECT_SERVER_DATABASE_DRIVER=postgresql+asyncpg",
		"PREFECT_SERVER_DATABASE_HOST=db", "PREFECT_SERVER_DATABASE_USER=u", "PREFECT_SERVER_DATABASE_NAME=prefect",
		"PREFECT_SERVER_DATABASE_PASSWORD=p@ss")
	if want := "postgresql+asyncpg://u:p%40ss@db:5432/prefect"; c.DatabaseURL() != want {
		t.Errorf("DatabaseURL = %q, want %q", c.DatabaseURL(), want)
	}
	if _, err := Load([]string{"HOME=/h", "PREFECT_SERVER_DATABASE_DRIVER=postgresql+asyncpg"}, t.TempDir()); err == nil || !strings.Contains(err.Error(), "host, user, name") {
		t.Errorf("missing parts: err = %v", err)
	}
	c = load(t, t.TempDir(), "HOME=/h", "PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://u:${PREFECT_SERVER_DATABASE_PASSWORD}@db/x",
		"PREFECT_SERVER_DATABASE_PASSWORD=s3cret")
	if want := "postgresql+asyncpg://u:s3cret@db/x"; c.DatabaseURL() != want {
		t.Errorf("DatabaseURL = %q, want %q", c.DatabaseURL(), want)
	}
	if _, err := Load([]string{"HOME=/h", "PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql://u:${PREFECT_API_DATABASE_PASSWORD}@db/x"}, t.TempDir()); err == nil {
		t.Error("placeholder without a password must fail")
	}
}

func TestInvalidValues(t *testing.T) {
	cases := []struct {
		env, toml string
		wantInErr []string
	}{
		{env: "PREFECT_SERVER_API_PORT=abc", wantInErr: []string{"PREFECT_SERVER_API_PORT", `"abc"`, "int"}},
		{env: "PREFECT_SERVER_API_PORT=42.5", wantInErr: []string{"PREFECT_SERVER_API_PORT"}},
		{env: "PREFECT_SERVER_API_PORT=", wantInErr: []string{"PREFECT_SERVER_API_PORT"}},
		{env: "PREFECT_SERVER_UI_ENABLED=maybe", wantInErr: []string{"PREFECT_SERVER_UI_ENABLED", "bool"}},
		{env: "PREFECT_SERVER_LOGGING_LEVEL=LOUD", wantInErr: []string{"PREFECT_SERVER_LOGGING_LEVEL", "DEBUG, INFO"}},
		{env: "PREFECT_SERVER_DATABASE_TIMEOUT=fast", wantInErr: []string{"PREFECT_SERVER_DATABASE_TIMEOUT", "float"}},
		// A plain timedelta takes no bare seconds from text, as in pydantic.
		{env: "PREFECT_SERVER_API_CSRF_TOKEN_EXPIRATION=10", wantInErr: []string{"PREFECT_SERVER_API_CSRF_TOKEN_EXPIRATION", "duration"}},
		{env: "PREFECT_SERVER_SERVICES_LATE_RUNS_AFTER_SECONDS=soon", wantInErr: []string{"PREFECT_SERVER_SERVICES_LATE_RUNS_AFTER_SECONDS"}},
		{env: "PREFECT_CLIENT_CUSTOM_HEADERS={bad", wantInErr: []string{"PREFECT_CLIENT_CUSTOM_HEADERS", "JSON"}},
		{env: "PREFECT_SERVER_API_MAX_PARAMETER_SIZE=-1", wantInErr: []string{"PREFECT_SERVER_API_MAX_PARAMETER_SIZE", ">= 0"}},
		{env: "PREFECT_CLIENT_RETRY_EXTRA_CODES=502,99", wantInErr: []string{"PREFECT_CLIENT_RETRY_EXTRA_CODES", ">= 100"}},
		{env: "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED=events,everything", wantInErr: []string{"PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED", "everything"}},
		{toml: "[server.api]\nport = \"x\"", wantInErr: []string{"prefect.toml key server.api.port"}},
		{toml: "[server.api]\nhost = 5", wantInErr: []string{"prefect.toml key server.api.host"}},
		{toml: "[server.api\n", wantInErr: []string{"prefect.toml"}},
	}
	for _, tc := range cases {
		dir := t.TempDir()
		if tc.toml != "" {
			write(t, filepath.Join(dir, "prefect.toml"), tc.toml)
		}
		env := []string{"HOME=/h"}
		if tc.env != "" {
			env = append(env, tc.env)
		}
		_, err := Load(env, dir)
		if err == nil {
			t.Errorf("%s%s: no error", tc.env, tc.toml)
			continue
		}
		for _, want := range tc.wantInErr {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s%s: error %q does not mention %q", tc.env, tc.toml, err, want)
			}
		}
	}
}

func TestValueParsing(t *testing.T) {
	c := load(t, t.TempDir(), "HOME=/h",
		"PREFECT_SERVER_API_PORT= 4_300 ",
		"PREFECT_SERVER_UI_ENABLED=off",
		"PREFECT_CLIENT_RETRY_EXTRA_CODES=502, 429,502",
		"PREFECT_LOGGING_EXTRA_LOGGERS=[\"b\",\"a\"]",
		"PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED=true",
		"PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD=7200",
		"PREFECT_SERVER_SERVICES_DB_VACUUM_EVENT_RETENTION_OVERRIDES={\"x\": 7200}",
		"PREFECT_SERVER_EVENTS_RETENTION_PERIOD=1 day, 01:00:00",
		"PREFECT_TASKS_DEFAULT_RETRY_DELAY_SECONDS=[1, 2.5]",
		"PREFECT_TESTING_TEST_SETTING=plain text",
		"PREFECT_RESULTS_LOCAL_STORAGE_PATH=/a//b/./c/",
	)
	checks := []struct {
		name      string
		got, want any
	}{
		{"int", c.APIPort(), 4300},
		{"bool", c.UIEnabled(), false},
		{"int set", value(c, "client.retry_extra_codes"), []int64{429, 502}},
		{"strset from JSON", c.Strings("logging.extra_loggers"), []string{"a", "b"}},
		{"vacuum true", c.VacuumTypes(), []string{"events", "flow_runs", "orphans"}},
		{"seconds", c.Duration("server.services.db_vacuum.retention_period"), 2 * time.Hour},
		{"duration", c.Duration("server.events.retention_period"), 25 * time.Hour},
		{"path", c.String("results.local_storage_path"), "/a/b/c"},
	}
	for _, tc := range checks {
		if !equal(tc.got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
	var tree map[string]any
	b, err := c.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &tree); err != nil {
		t.Fatal(err)
	}
	vacuum := tree["server"].(map[string]any)["services"].(map[string]any)["db_vacuum"].(map[string]any)
	if !equal(vacuum["event_retention_overrides"], map[string]any{"x": "PT2H"}) || vacuum["retention_period"] != "PT2H" || vacuum["enabled"] != true {
		t.Errorf("db_vacuum JSON = %v", vacuum)
	}
	tasks := tree["tasks"].(map[string]any)
	if !equal(tasks["default_retry_delay_seconds"], []any{1, 2.5}) {
		t.Errorf("tasks.default_retry_delay_seconds = %v", tasks["default_retry_delay_seconds"])
	}
	if got := tree["testing"].(map[string]any)["test_setting"]; got != "plain text" {
		t.Errorf("testing.test_setting = %v", got)
	}
}

func TestSecretsObfuscated(t *testing.T) {
	c := load(t, t.TempDir(), "HOME=/h", "PREFECT_SERVER_API_AUTH_STRING=admin:pw",
		"PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://u:pw@db/x")
	if c.APIAuthString() != "admin:pw" {
		t.Errorf("APIAuthString = %q", c.APIAuthString())
	}
	b, err := c.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "pw") {
		t.Fatalf("secret leaked into JSON: %s", b)
	}
	var tree struct {
		API    map[string]any `json:"api"`
		Server struct {
			API      map[string]any `json:"api"`
			Database map[string]any `json:"database"`
		} `json:"server"`
	}
	if err := json.Unmarshal(b, &tree); err != nil {
		t.Fatal(err)
	}
	if tree.Server.API["auth_string"] != SecretMask || tree.Server.Database["connection_url"] != SecretMask {
		t.Errorf("secrets not masked: %v %v", tree.Server.API["auth_string"], tree.Server.Database["connection_url"])
	}
	// Unset secrets stay null, as pydantic writes them.
	if v, ok := tree.Server.Database["password"]; !ok || v != nil {
		t.Errorf("unset password = %v (present %v), want null", v, ok)
	}
	if v, ok := tree.API["key"]; !ok || v != nil {
		t.Errorf("unset api.key = %v, want null", v)
	}
}

// Every default Prefect computes after validation must be recomputed here,
// or a future wheel would show a stale dumped value.
func TestDerivedFieldsAreHandled(t *testing.T) {
	handled := []string{
		"profiles_path", "results.local_storage_path", "logging.config_path", "server.memo_store_path",
		"cloud.ui_url", "ui_url", "server.ui.api_url", "server.database.connection_url",
	}
	for _, f := range Fields() {
		if f.Derived && !slices.Contains(handled, f.Key()) {
			t.Errorf("%s is derived in the wheel but derive() does not compute it", f.Key())
		}
	}
}

func TestDurations(t *testing.T) {
	formats := map[time.Duration]string{
		0:                                 "PT0S",
		90 * time.Second:                  "PT1M30S",
		time.Hour:                         "PT1H",
		1500 * time.Millisecond:           "PT1.5S",
		-10 * time.Second:                 "-PT10S",
		100 * 24 * time.Hour:              "P100D",
		49 * time.Hour:                    "P2DT1H",
		400 * 24 * time.Hour:              "P1Y35D",
		49*time.Hour + 7*time.Microsecond: "P2DT1H0.000007S",
	}
	for d, want := range formats {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
	parses := map[string]time.Duration{
		"PT1H30M":         90 * time.Minute,
		"P1W":             7 * 24 * time.Hour,
		"P1Y":             365 * 24 * time.Hour,
		"PT1.5S":          1500 * time.Millisecond,
		"-PT5S":           -5 * time.Second,
		"01:02":           62 * time.Minute,
		"10:00:00.5":      10*time.Hour + 500*time.Millisecond,
		"1 day, 01:00:00": 25 * time.Hour,
		"1d":              24 * time.Hour,
	}
	for in, want := range parses {
		got, err := parseDuration(in)
		if err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "10", "P", "PT", "1:2:3:4", "PT1X", "abc"} {
		if _, err := parseDuration(bad); err == nil {
			t.Errorf("parseDuration(%q) accepted", bad)
		}
	}
}

func TestFormatFloat(t *testing.T) {
	for in, want := range map[float64]string{30: "30.0", 0.1: "0.1", 1e-7: "1e-07", 1e16: "1e+16", 1e15: "1000000000000000.0", -2.5: "-2.5"} {
		if got := formatFloat(in); got != want {
			t.Errorf("formatFloat(%v) = %q, want %q", in, got, want)
		}
	}
}
