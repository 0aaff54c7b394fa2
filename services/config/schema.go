// Package config loads Prefect's settings the way the Python server does and
// exposes them to the Go server.
//
// The tree of settings is not written out by hand: tools/dump-settings.py
// walks the pydantic models of the pinned prefect wheel and records every
// field (path, value kind, environment names including legacy aliases, bounds
// and default) in settings_defaults.json, which is embedded here. Loading
// overlays, from lowest to highest priority, the active profile, the
// [tool.prefect] tables of pyproject.toml, prefect.toml, a .env file and the
// process environment, as prefect.settings does.
package config

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
)

//go:embed settings_defaults.json
var defaultsJSON []byte

// Kind says how a setting's value is parsed and serialised.
type Kind string

// Kinds written by tools/dump-settings.py.
const (
	KindGroup        Kind = "group"          // a nested settings model
	KindBool         Kind = "bool"           // pydantic bool strings: true/false, 1/0, yes/no, on/off, t/f, y/n
	KindInt          Kind = "int"            // integer
	KindFloat        Kind = "float"          // float
	KindString       Kind = "string"         // text, possibly a secret
	KindPath         Kind = "path"           // a filesystem path
	KindEnum         Kind = "enum"           // one of Choices
	KindDuration     Kind = "duration"       // ISO 8601 or [D days,] HH:MM[:SS] (pydantic timedelta)
	KindSeconds      Kind = "seconds"        // a duration that also accepts a number of seconds
	KindSet          Kind = "set"            // comma-separated or JSON list, kept sorted and unique
	KindJSON         Kind = "json"           // JSON list or object
	KindJSONOrString Kind = "json_or_string" // JSON if it decodes, else the raw string
	KindVacuumSet    Kind = "vacuum_set"     // db_vacuum.enabled: a set or the legacy booleans
)

// Field is one node of the settings tree as dumped from the wheel.
type Field struct {
	Path     []string `json:"path"`
	Kind     Kind     `json:"kind"`
	Nullable bool     `json:"nullable"`
	Secret   bool     `json:"secret"`
	// Env lists the accepted environment variable names in Prefect's
	// priority order: the canonical name first, then legacy aliases.
	Env             []string `json:"env"`
	Choices         []string `json:"choices"`
	CaseInsensitive bool     `json:"case_insensitive"`
	// ItemKind is the type of a set's items (string or int) and, for JSON
	// objects, of their values when those are seconds.
	ItemKind Kind            `json:"item_kind"`
	ItemGe   *float64        `json:"item_ge"`
	ItemLe   *float64        `json:"item_le"`
	Gt       *float64        `json:"gt"`
	Ge       *float64        `json:"ge"`
	Lt       *float64        `json:"lt"`
	Le       *float64        `json:"le"`
	Default  json.RawMessage `json:"default"`
	// Derived marks defaults Prefect computes from other settings after
	// validation; the loader recomputes them (see derive).
	Derived     bool   `json:"derived"`
	Description string `json:"description"`
}

// Key is the dotted path, e.g. "server.database.connection_url".
func (f *Field) Key() string { return strings.Join(f.Path, ".") }

// EnvName is the canonical environment variable name.
func (f *Field) EnvName() string {
	if len(f.Env) == 0 {
		return ""
	}
	return f.Env[0]
}

type schema struct {
	PrefectVersion string            `json:"prefect_version"`
	DefaultProfile map[string]string `json:"default_profile"`
	Fields         []*Field          `json:"fields"`

	byKey    map[string]*Field
	defaults map[string]any
	root     *node
}

// node mirrors the nested models so JSON output keeps Prefect's field order.
type node struct {
	name     string
	field    *Field
	children []*node
}

var loadSchema = sync.OnceValues(func() (*schema, error) {
	var s schema
	if err := json.Unmarshal(defaultsJSON, &s); err != nil {
		return nil, fmt.Errorf("config: embedded settings_defaults.json: %w", err)
	}
	s.byKey = make(map[string]*Field, len(s.Fields))
	s.defaults = make(map[string]any, len(s.Fields))
	s.root = &node{}
	groups := map[string]*node{"": s.root}
	for _, f := range s.Fields {
		key := f.Key()
		parent := groups[strings.Join(f.Path[:len(f.Path)-1], ".")]
		if parent == nil {
			return nil, fmt.Errorf("config: embedded settings: %s appears before its group", key)
		}
		n := &node{name: f.Path[len(f.Path)-1], field: f}
		parent.children = append(parent.children, n)
		s.byKey[key] = f
		if f.Kind == KindGroup {
			groups[key] = n
			continue
		}
		if f.Derived {
			// Recomputed from other settings in derive; the dumped value
			// only documents the default for HOME=~.
			s.defaults[key] = nil
			continue
		}
		v, err := defaultValue(f)
		if err != nil {
			return nil, fmt.Errorf("config: embedded default of %s: %w", key, err)
		}
		s.defaults[key] = v
	}
	return &s, nil
})

// Fields lists every leaf setting in Prefect's declaration order, for help
// output and documentation.
func Fields() []Field {
	s, err := loadSchema()
	if err != nil {
		return nil
	}
	out := make([]Field, 0, len(s.Fields))
	for _, f := range s.Fields {
		if f.Kind != KindGroup {
			out = append(out, *f)
		}
	}
	return out
}

// Lookup returns the leaf setting at a dotted path.
func Lookup(key string) (Field, bool) {
	s, err := loadSchema()
	if err != nil {
		return Field{}, false
	}
	f, ok := s.byKey[key]
	if !ok || f.Kind == KindGroup {
		return Field{}, false
	}
	return *f, true
}

// PrefectVersion is the version of the wheel the settings were dumped from.
func PrefectVersion() string {
	s, err := loadSchema()
	if err != nil {
		return ""
	}
	return s.PrefectVersion
}
