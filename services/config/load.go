package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Settings is the loaded settings tree.
type Settings struct {
	schema *schema
	values map[string]any
	// sources records where each explicitly set value came from; keys
	// missing here hold their (possibly derived) default.
	sources  map[string]string
	warnings []string
}

// Load reads the settings for a process with the given environment
// ("KEY=value" pairs, as os.Environ returns) started in directory cwd. It
// reads prefect.toml, pyproject.toml and .env from cwd and the profiles file,
// and nothing else: no os.Getenv, so tests can drive it fully.
func Load(env []string, cwd string) (*Settings, error) {
	s, err := loadSchema()
	if err != nil {
		return nil, err
	}
	envVars := envSource(env)
	dotenv, err := readDotenv(filepath.Join(cwd, ".env"))
	if err != nil {
		return nil, err
	}
	prefectTOML, err := readTOML(filepath.Join(cwd, "prefect.toml"))
	if err != nil {
		return nil, err
	}
	pyproject, err := readTOML(filepath.Join(cwd, "pyproject.toml"))
	if err != nil {
		return nil, err
	}
	c := &Settings{schema: s, values: make(map[string]any, len(s.defaults)), sources: map[string]string{}}
	userHome := envVars["HOME"]
	prof := loadProfile(s, envVars, dotenv, prefectTOML, pyproject, userHome, func(w string) {
		c.warnings = append(c.warnings, w)
	})
	pyTable := table(pyproject, "tool", "prefect")

	for _, f := range s.Fields {
		if f.Kind == KindGroup {
			continue
		}
		key := f.Key()
		v, source, found, err := resolve(f, envVars, dotenv, prefectTOML, pyTable, prof)
		if err != nil {
			return nil, fmt.Errorf("config: %s: %w", source, err)
		}
		if !found {
			c.values[key] = s.defaults[key]
			continue
		}
		c.values[key] = v
		c.sources[key] = source
	}
	if err := c.derive(userHome); err != nil {
		return nil, err
	}
	return c, nil
}

// resolve finds a field's value in the sources, highest priority first; the
// first matching name within a source wins, in the field's alias order.
func resolve(f *Field, env, dotenv map[string]string, prefectTOML, pyTable map[string]any, prof profile) (any, string, bool, error) {
	for _, name := range f.Env {
		if raw, ok := env[name]; ok {
			v, err := parseString(f, raw)
			return v, "environment variable " + name, true, err
		}
	}
	for _, name := range f.Env {
		if raw, ok := dotenv[name]; ok {
			v, err := parseString(f, raw)
			return v, ".env variable " + name, true, err
		}
	}
	for _, src := range []struct {
		name string
		tbl  map[string]any
	}{{"prefect.toml", prefectTOML}, {"pyproject.toml [tool.prefect]", pyTable}} {
		raw, ok := tomlValue(f, src.tbl)
		if ok {
			v, err := parseValue(f, raw)
			return v, src.name + " key " + f.Key(), true, err
		}
	}
	for _, name := range f.Env {
		if raw, ok := prof.values[name]; ok {
			v, err := parseValue(f, raw)
			return v, prof.origin + " key " + name, true, err
		}
	}
	return nil, "", false, nil
}

// tomlValue finds a field in TOML tables that mirror the settings tree. As in
// Prefect, a table where a scalar is expected is left to the nested model and
// so ignored.
func tomlValue(f *Field, root map[string]any) (any, bool) {
	tbl := table(root, f.Path[:len(f.Path)-1]...)
	if tbl == nil {
		return nil, false
	}
	raw, ok := tbl[f.Path[len(f.Path)-1]]
	if !ok {
		return nil, false
	}
	if _, isTable := raw.(map[string]any); isTable && f.Kind != KindJSON && f.Kind != KindJSONOrString {
		return nil, false
	}
	return raw, true
}

func (c *Settings) isSet(key string) bool {
	_, ok := c.sources[key]
	return ok
}

func (c *Settings) str(key string) string {
	s, _ := c.values[key].(string)
	return s
}

// derive recomputes the defaults Prefect fills in after validation (the
// post_hoc_settings validators of Settings and CloudSettings).
func (c *Settings) derive(userHome string) error {
	home := c.str("home")
	if strings.HasPrefix(home, "~") {
		if userHome == "" {
			return fmt.Errorf("config: cannot expand %q for PREFECT_HOME: HOME is not set", home)
		}
		home = cleanPath(expandHome(home, userHome))
		c.values["home"] = home
	}
	underHome := map[string]string{
		"profiles_path":              "profiles.toml",
		"results.local_storage_path": "storage",
		"logging.config_path":        "logging.yml",
		"server.memo_store_path":     "memo_store.toml",
	}
	for key, name := range underHome {
		if !c.isSet(key) {
			c.values[key] = home + "/" + name
		}
	}
	if c.isSet("profiles_path") {
		c.values["profiles_path"] = cleanPath(strings.ReplaceAll(c.str("profiles_path"), "$PREFECT_HOME", home))
	}

	if c.values["cloud.ui_url"] == nil {
		c.values["cloud.ui_url"] = cloudUIURL(c.str("cloud.api_url"))
	}
	if c.values["ui_url"] == nil {
		if u := c.uiURL(); u != "" {
			c.values["ui_url"] = u
		}
	}
	if c.values["server.ui.api_url"] == nil {
		if api := c.str("api.url"); api != "" {
			c.values["server.ui.api_url"] = api
		} else {
			c.values["server.ui.api_url"] = fmt.Sprintf("http://%s:%d/api", c.str("server.api.host"), c.Int("server.api.port"))
		}
	}
	if c.Bool("debug_mode") || c.Bool("testing.test_mode") {
		c.values["logging.level"] = "DEBUG"
		c.values["internal.logging_level"] = "DEBUG"
	}
	return c.deriveDatabaseURL(home)
}

var cloudAPIPattern = regexp.MustCompile(`^https://api[\.\w]*.prefect.[^\.]+/`)

func cloudUIURL(api string) string {
	ui := api
	if cloudAPIPattern.MatchString(api) {
		ui = strings.Replace(ui, "https://api", "https://app", 1)
	}
	return strings.TrimSuffix(ui, "/api")
}

// uiURL is Prefect's default_ui_url: the API URL with its /api part removed.
func (c *Settings) uiURL() string {
	api := c.str("api.url")
	if api == "" {
		return ""
	}
	ui := api
	cloudAPI, cloudUI := c.str("cloud.api_url"), c.str("cloud.ui_url")
	if strings.HasPrefix(api, cloudAPI) && cloudUI != "" {
		ui = strings.ReplaceAll(ui, cloudAPI, cloudUI)
	}
	ui = strings.TrimSuffix(ui, "/api")
	ui = strings.ReplaceAll(ui, "/api/", "/")
	ui = strings.ReplaceAll(ui, "/accounts/", "/account/")
	return strings.ReplaceAll(ui, "/workspaces/", "/workspace/")
}

// deriveDatabaseURL is default_database_connection_url plus the password
// placeholder substitution of Settings.post_hoc_settings.
func (c *Settings) deriveDatabaseURL(home string) error {
	const key = "server.database.connection_url"
	if c.values[key] == nil {
		dbURL := "sqlite+aiosqlite:///" + home + "/prefect.db"
		switch driver := c.str("server.database.driver"); driver {
		case "postgresql+asyncpg":
			var missing []string
			for _, attr := range []string{"host", "user", "name"} {
				if c.values["server.database."+attr] == nil {
					missing = append(missing, attr)
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("config: Missing required database connection settings: %s (set PREFECT_SERVER_DATABASE_HOST, _USER and _NAME)", strings.Join(missing, ", "))
			}
			port := 5432
			if p, ok := c.values["server.database.port"].(int64); ok && p != 0 {
				port = int(p)
			}
			u := url.URL{
				Scheme: driver,
				Host:   c.str("server.database.host") + ":" + strconv.Itoa(port),
				Path:   "/" + c.str("server.database.name"),
			}
			if pw, ok := c.values["server.database.password"].(string); ok {
				u.User = url.UserPassword(c.str("server.database.user"), pw)
			} else {
				u.User = url.User(c.str("server.database.user"))
			}
			dbURL = u.String()
		case "sqlite+aiosqlite":
			if name := c.str("server.database.name"); name != "" {
				dbURL = driver + ":///" + name
			}
		}
		c.values[key] = dbURL
	}
	dbURL := c.str(key)
	if strings.Contains(dbURL, "PREFECT_API_DATABASE_PASSWORD") || strings.Contains(dbURL, "PREFECT_SERVER_DATABASE_PASSWORD") {
		pw, ok := c.values["server.database.password"].(string)
		if !ok {
			return fmt.Errorf("config: database password is None - please set PREFECT_SERVER_DATABASE_PASSWORD")
		}
		dbURL = strings.ReplaceAll(dbURL, "${PREFECT_API_DATABASE_PASSWORD}", pw)
		dbURL = strings.ReplaceAll(dbURL, "${PREFECT_SERVER_DATABASE_PASSWORD}", pw)
		c.values[key] = dbURL
	}
	return nil
}
