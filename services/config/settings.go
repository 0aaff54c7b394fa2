package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// SecretMask is how pydantic renders a set SecretStr in JSON.
const SecretMask = "**********"

// JSON is the whole tree as GET /api/admin/settings answers it: Prefect's
// field order, secrets masked, durations in ISO 8601, floats as Python
// writes them.
func (c *Settings) JSON() ([]byte, error) {
	var b bytes.Buffer
	if err := c.writeNode(&b, c.schema.root); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func (c *Settings) writeNode(b *bytes.Buffer, n *node) error {
	b.WriteByte('{')
	for i, child := range n.children {
		if i > 0 {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(child.name)
		b.Write(name)
		b.WriteByte(':')
		if child.field.Kind == KindGroup {
			if err := c.writeNode(b, child); err != nil {
				return err
			}
			continue
		}
		v := c.values[child.field.Key()]
		if child.field.Secret && v != nil {
			v = SecretMask
		}
		if err := writeValue(b, child.field.Kind, v); err != nil {
			return fmt.Errorf("config: %s: %w", child.field.Key(), err)
		}
	}
	b.WriteByte('}')
	return nil
}

func writeValue(b *bytes.Buffer, kind Kind, v any) error {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
		return nil
	case time.Duration:
		b.WriteString(strconv.Quote(formatDuration(x)))
		return nil
	case float64:
		b.WriteString(formatFloat(x))
		return nil
	case int64:
		if kind == KindFloat {
			b.WriteString(formatFloat(float64(x)))
			return nil
		}
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			b.Write(kb)
			b.WriteByte(':')
			if err := writeValue(b, "", x[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
		return nil
	case []any:
		b.WriteByte('[')
		for i, item := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeValue(b, "", item); err != nil {
				return err
			}
		}
		b.WriteByte(']')
		return nil
	}
	enc, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b.Write(enc)
	return nil
}

// Value returns the loaded value of a leaf by dotted path, unmasked, and
// whether the path exists. Values are nil, bool, int64, float64, string
// (text, paths, enums, secrets), time.Duration, []string or []int64 (sets),
// or decoded JSON (map[string]any, []any, json.Number) for free-form fields.
func (c *Settings) Value(key string) (any, bool) {
	v, ok := c.values[key]
	return v, ok
}

// Source says where a value came from ("environment variable X",
// "prefect.toml key a.b", ...) or "default".
func (c *Settings) Source(key string) string {
	if s, ok := c.sources[key]; ok {
		return s
	}
	return "default"
}

// Warnings are problems Prefect reports without failing, such as an
// unreadable profiles file; the caller logs them.
func (c *Settings) Warnings() []string { return slices.Clone(c.warnings) }

// Bool returns a bool setting; false when unset or of another kind.
func (c *Settings) Bool(key string) bool {
	b, _ := c.values[key].(bool)
	return b
}

// Int returns an int setting; 0 when null or of another kind.
func (c *Settings) Int(key string) int {
	n, _ := c.values[key].(int64)
	return int(n)
}

// Float returns a float setting (ints widen); 0 when null.
func (c *Settings) Float(key string) float64 {
	switch x := c.values[key].(type) {
	case float64:
		return x
	case int64:
		return float64(x)
	}
	return 0
}

// String returns a string, path or enum setting, unmasked; "" when null.
func (c *Settings) String(key string) string { return c.str(key) }

// Duration returns a timedelta setting; 0 when null.
func (c *Settings) Duration(key string) time.Duration {
	d, _ := c.values[key].(time.Duration)
	return d
}

// Strings returns a set setting, sorted.
func (c *Settings) Strings(key string) []string {
	s, _ := c.values[key].([]string)
	return slices.Clone(s)
}

// Home is PREFECT_HOME with ~ expanded.
func (c *Settings) Home() string { return c.str("home") }

// DatabaseURL is PREFECT_SERVER_DATABASE_CONNECTION_URL, defaulting to
// sqlite+aiosqlite:///<home>/prefect.db, password placeholders substituted.
func (c *Settings) DatabaseURL() string { return c.str("server.database.connection_url") }

// MigrateOnStart is PREFECT_SERVER_DATABASE_MIGRATE_ON_START.
func (c *Settings) MigrateOnStart() bool { return c.Bool("server.database.migrate_on_start") }

// DatabaseTimeout is PREFECT_SERVER_DATABASE_TIMEOUT (seconds in Prefect).
func (c *Settings) DatabaseTimeout() time.Duration {
	return secondsDuration(c.Float("server.database.timeout"))
}

// APIHost is PREFECT_SERVER_API_HOST.
func (c *Settings) APIHost() string { return c.str("server.api.host") }

// APIPort is PREFECT_SERVER_API_PORT.
func (c *Settings) APIPort() int { return c.Int("server.api.port") }

// APIBasePath is where the API is mounted: PREFECT_SERVER_API_BASE_PATH, or
// "/api" when unset as in Prefect.
func (c *Settings) APIBasePath() string {
	if p := c.str("server.api.base_path"); p != "" {
		return p
	}
	return "/api"
}

// APIAuthString is PREFECT_SERVER_API_AUTH_STRING ("user:password" for HTTP
// Basic auth), unmasked; "" when unset.
func (c *Settings) APIAuthString() string { return c.str("server.api.auth_string") }

// DefaultLimit is PREFECT_SERVER_API_DEFAULT_LIMIT.
func (c *Settings) DefaultLimit() int { return c.Int("server.api.default_limit") }

// KeepAliveTimeout is PREFECT_SERVER_API_KEEPALIVE_TIMEOUT (whole seconds).
func (c *Settings) KeepAliveTimeout() time.Duration {
	return time.Duration(c.Int("server.api.keepalive_timeout")) * time.Second
}

// WebsocketPingInterval is PREFECT_SERVER_API_WEBSOCKET_PING_INTERVAL.
func (c *Settings) WebsocketPingInterval() time.Duration {
	return secondsDuration(c.Float("server.api.websocket_ping_interval"))
}

// WebsocketPingTimeout is PREFECT_SERVER_API_WEBSOCKET_PING_TIMEOUT.
func (c *Settings) WebsocketPingTimeout() time.Duration {
	return secondsDuration(c.Float("server.api.websocket_ping_timeout"))
}

// MaxParameterSize is PREFECT_SERVER_API_MAX_PARAMETER_SIZE in bytes.
func (c *Settings) MaxParameterSize() int { return c.Int("server.api.max_parameter_size") }

// CSRFProtectionEnabled is PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED.
func (c *Settings) CSRFProtectionEnabled() bool {
	return c.Bool("server.api.csrf_protection_enabled")
}

// CSRFTokenExpiration is PREFECT_SERVER_API_CSRF_TOKEN_EXPIRATION.
func (c *Settings) CSRFTokenExpiration() time.Duration {
	return c.Duration("server.api.csrf_token_expiration")
}

// CORSAllowedOrigins splits PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS on
// commas, as the Python server does.
func (c *Settings) CORSAllowedOrigins() []string {
	return splitComma(c.str("server.api.cors_allowed_origins"))
}

// CORSAllowedMethods splits PREFECT_SERVER_API_CORS_ALLOWED_METHODS.
func (c *Settings) CORSAllowedMethods() []string {
	return splitComma(c.str("server.api.cors_allowed_methods"))
}

// CORSAllowedHeaders splits PREFECT_SERVER_API_CORS_ALLOWED_HEADERS.
func (c *Settings) CORSAllowedHeaders() []string {
	return splitComma(c.str("server.api.cors_allowed_headers"))
}

// splitComma is Python's str.split(","): no trimming, empty parts kept.
func splitComma(s string) []string { return strings.Split(s, ",") }

// LoggingLevel is PREFECT_SERVER_LOGGING_LEVEL (DEBUG ... CRITICAL).
func (c *Settings) LoggingLevel() string { return c.str("server.logging_level") }

// UIEnabled is PREFECT_SERVER_UI_ENABLED.
func (c *Settings) UIEnabled() bool { return c.Bool("server.ui.enabled") }

// UIV2Enabled is PREFECT_SERVER_UI_V2_ENABLED.
func (c *Settings) UIV2Enabled() bool { return c.Bool("server.ui.v2_enabled") }

// UIAPIURL is PREFECT_UI_API_URL: what the UI uses to reach the API.
func (c *Settings) UIAPIURL() string { return c.str("server.ui.api_url") }

// UIServeBase is PREFECT_SERVER_UI_SERVE_BASE.
func (c *Settings) UIServeBase() string { return c.str("server.ui.serve_base") }

// ServiceNames lists the background services that have an enabled flag
// (server.services.<name>.enabled), in Prefect's order.
func (c *Settings) ServiceNames() []string {
	var out []string
	for _, f := range c.schema.Fields {
		if len(f.Path) == 4 && f.Path[0] == "server" && f.Path[1] == "services" && f.Path[3] == "enabled" {
			out = append(out, f.Path[2])
		}
	}
	return out
}

// ServiceEnabled reports PREFECT_SERVER_SERVICES_<NAME>_ENABLED. For
// db_vacuum, whose flag is a set of kinds, it means VacuumTypes is not empty.
func (c *Settings) ServiceEnabled(name string) bool {
	if name == "db_vacuum" {
		return len(c.VacuumTypes()) > 0
	}
	return c.Bool("server.services." + name + ".enabled")
}

// VacuumTypes resolves PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED like
// Prefect's enabled_vacuum_types: true means events and flow_runs, false the
// old default (events), null nothing; flow_runs implies orphans. Unknown
// kinds are an error found at load time.
func (c *Settings) VacuumTypes() []string {
	var raw []string
	switch x := c.values["server.services.db_vacuum.enabled"].(type) {
	case bool:
		raw = []string{"events"}
		if x {
			raw = append(raw, "flow_runs")
		}
	case []string:
		raw = slices.Clone(x)
	default:
		return nil
	}
	if slices.Contains(raw, "flow_runs") {
		raw = append(raw, "orphans")
	}
	return sortedSet(raw)
}
