package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// readOptional returns nil, nil when the file does not exist.
func readOptional(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func readTOML(path string) (map[string]any, error) {
	b, err := readOptional(path)
	if err != nil || b == nil {
		return nil, err
	}
	var m map[string]any
	if err := toml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	return m, nil
}

// table walks nested TOML tables; a missing or non-table step yields nil.
func table(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		next, ok := m[k].(map[string]any)
		if !ok {
			return nil
		}
		m = next
	}
	return m
}

// readDotenv parses the subset of dotenv syntax python-dotenv users rely on:
// comments, blank lines, an optional "export ", single or double quotes
// (double quotes with backslash escapes) and trailing " #" comments.
func readDotenv(path string) (map[string]string, error) {
	b, err := readOptional(path)
	if err != nil || b == nil {
		return nil, err
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		key = strings.TrimSpace(key)
		value = strings.TrimSpace(value)
		switch {
		case len(value) >= 2 && value[0] == '\'' && strings.IndexByte(value[1:], '\'') >= 0:
			value = value[1 : 1+strings.IndexByte(value[1:], '\'')]
		case len(value) >= 2 && value[0] == '"':
			value = unquoteDouble(value[1:])
		default:
			if i := strings.Index(value, " #"); i >= 0 {
				value = strings.TrimSpace(value[:i])
			}
		}
		out[strings.ToUpper(key)] = value
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	return out, nil
}

func unquoteDouble(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' {
			break
		}
		if c == '\\' && i+1 < len(s) {
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				b.WriteByte(s[i])
			}
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// envSource is the process environment as pydantic-settings sees it with
// case_sensitive=False: names compared upper-cased, the last duplicate wins.
func envSource(env []string) map[string]string {
	out := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			out[strings.ToUpper(k)] = v
		}
	}
	return out
}

// profile is the settings of the active profile, keyed by environment
// variable name, plus where it came from for error messages.
type profile struct {
	values map[string]any
	origin string
}

// loadProfile follows prefect.settings.sources: an explicit profiles path
// (env, .env, prefect.toml, pyproject.toml), else $PREFECT_HOME or
// ~/.prefect's profiles.toml; a missing file or unknown active profile means
// the wheel's default profile. Test mode disables profiles altogether.
func loadProfile(s *schema, env, dotenv map[string]string, prefectTOML, pyproject map[string]any, home string, warn func(string)) profile {
	for _, k := range []string{"PREFECT_TEST_MODE", "PREFECT_UNIT_TEST_MODE", "PREFECT_TESTING_UNIT_TEST_MODE", "PREFECT_TESTING_TEST_MODE"} {
		if env[k] != "" {
			return profile{}
		}
	}
	path := ""
	switch {
	case env["PREFECT_PROFILES_PATH"] != "":
		path = env["PREFECT_PROFILES_PATH"]
	case dotenv["PREFECT_PROFILES_PATH"] != "":
		path = dotenv["PREFECT_PROFILES_PATH"]
	case stringAt(prefectTOML, "profiles_path") != "":
		path = stringAt(prefectTOML, "profiles_path")
	case stringAt(table(pyproject, "tool", "prefect"), "profiles_path") != "":
		path = stringAt(table(pyproject, "tool", "prefect"), "profiles_path")
	case env["PREFECT_HOME"] != "":
		path = filepath.Join(expandHome(env["PREFECT_HOME"], home), "profiles.toml")
	default:
		path = filepath.Join(expandHome("~/.prefect", home), "profiles.toml")
	}
	path = expandHome(path, home)
	defaults := profile{values: map[string]any{}, origin: "default profile"}
	for k, v := range s.DefaultProfile {
		defaults.values[k] = v
	}
	b, err := readOptional(path)
	if err != nil || b == nil {
		return defaults
	}
	var all map[string]any
	if err := toml.Unmarshal(b, &all); err != nil {
		warn(fmt.Sprintf("Failed to load profiles from %s. Please ensure the file is valid TOML.", path))
		return profile{}
	}
	active := env["PREFECT_PROFILE"]
	if active == "" {
		active, _ = all["active"].(string)
	}
	values := table(all, "profiles", active)
	if active == "" || values == nil {
		return defaults
	}
	return profile{values: values, origin: fmt.Sprintf("profile %q in %s", active, path)}
}

func stringAt(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

// expandHome is os.path.expanduser for "~" and "~/..." against $HOME.
func expandHome(p, home string) string {
	if home == "" {
		return p
	}
	if p == "~" {
		return home
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		return filepath.Join(home, rest)
	}
	return p
}
