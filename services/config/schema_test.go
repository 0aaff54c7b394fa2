package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// openAPISchemas reads components.schemas of the upstream document.
func openAPISchemas(t *testing.T) map[string]map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "openapi", "prefect-3.9.1.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Components.Schemas
}

// checker validates a value against the subset of JSON Schema the Settings
// models use: $ref, anyOf, type, items, properties.
type checker struct {
	schemas map[string]map[string]any
	errs    []string
}

func (c *checker) resolve(s map[string]any) map[string]any {
	for {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		s = c.schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
	}
}

func (c *checker) check(path string, s map[string]any, v any) bool {
	s = c.resolve(s)
	if alts, ok := s["anyOf"].([]any); ok {
		for _, alt := range alts {
			sub := &checker{schemas: c.schemas}
			if sub.check(path, alt.(map[string]any), v) {
				return true
			}
		}
		c.errs = append(c.errs, fmt.Sprintf("%s: %v matches no alternative of anyOf", path, v))
		return false
	}
	if props, ok := s["properties"].(map[string]any); ok {
		obj, isObj := v.(map[string]any)
		if !isObj {
			c.errs = append(c.errs, fmt.Sprintf("%s: want an object, got %v", path, v))
			return false
		}
		ok := true
		for name, ps := range props {
			child, present := obj[name]
			if !present {
				c.errs = append(c.errs, fmt.Sprintf("%s.%s: missing", path, name))
				ok = false
				continue
			}
			ok = c.check(path+"."+name, ps.(map[string]any), child) && ok
		}
		for name := range obj {
			if _, known := props[name]; !known {
				c.errs = append(c.errs, fmt.Sprintf("%s.%s: not in the schema", path, name))
				ok = false
			}
		}
		return ok
	}
	typ, _ := s["type"].(string)
	good := true
	switch typ {
	case "":
		return true // unconstrained (typing.Any)
	case "null":
		good = v == nil
	case "boolean":
		_, good = v.(bool)
	case "string":
		_, good = v.(string)
	case "number":
		_, good = v.(json.Number)
	case "integer":
		n, isNum := v.(json.Number)
		f, err := n.Float64()
		good = isNum && err == nil && f == math.Trunc(f) && !strings.ContainsAny(n.String(), ".eE")
	case "array":
		list, isList := v.([]any)
		good = isList
		if items, ok := s["items"].(map[string]any); ok && isList {
			for i, item := range list {
				good = c.check(fmt.Sprintf("%s[%d]", path, i), items, item) && good
			}
		}
	case "object":
		_, good = v.(map[string]any)
	}
	if !good {
		c.errs = append(c.errs, fmt.Sprintf("%s: %v is not of type %s", path, v, typ))
	}
	return good
}

func decodeTree(t *testing.T, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var tree map[string]any
	if err := dec.Decode(&tree); err != nil {
		t.Fatalf("invalid JSON: %v", err)
	}
	return tree
}

func TestJSONMatchesOpenAPISettingsSchema(t *testing.T) {
	schemas := openAPISchemas(t)
	envs := [][]string{
		{"HOME=/h"},
		{"HOME=/h", "PREFECT_SERVER_API_AUTH_STRING=a:b", "PREFECT_API_URL=http://h:1/api", "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED=false",
			"PREFECT_TASKS_DEFAULT_RETRY_DELAY_SECONDS=[1,2]", "PREFECT_CLIENT_RETRY_EXTRA_CODES=500,502", "PREFECT_SERVER_DATABASE_PORT=5433"},
	}
	for _, env := range envs {
		c := load(t, t.TempDir(), env...)
		b, err := c.JSON()
		if err != nil {
			t.Fatal(err)
		}
		ck := &checker{schemas: schemas}
		if !ck.check("Settings", schemas["Settings"], decodeTree(t, b)) {
			t.Errorf("env %v:\n%s", env, strings.Join(ck.errs, "\n"))
		}
	}
}

// The environment names extracted from the pydantic fields agree with the
// supported_environment_variables Prefect publishes in its own schema.
func TestEnvNamesMatchOpenAPI(t *testing.T) {
	schemas := openAPISchemas(t)
	ck := &checker{schemas: schemas}
	var walk func(path []string, s map[string]any)
	checked := 0
	walk = func(path []string, s map[string]any) {
		for name, raw := range ck.resolve(s)["properties"].(map[string]any) {
			ps := raw.(map[string]any)
			sub := append(slices.Clone(path), name)
			if _, isRef := ps["$ref"]; isRef {
				walk(sub, ps)
				continue
			}
			f, ok := Lookup(strings.Join(sub, "."))
			if !ok {
				t.Errorf("%s: in the schema, not in the dump", strings.Join(sub, "."))
				continue
			}
			var want []string
			for _, e := range ps["supported_environment_variables"].([]any) {
				want = append(want, e.(string))
			}
			if !slices.Equal(f.Env, want) {
				t.Errorf("%s: env %v, schema says %v", f.Key(), f.Env, want)
			}
			checked++
		}
	}
	walk(nil, schemas["Settings"])
	if checked != len(Fields()) {
		t.Errorf("checked %d fields, the dump has %d", checked, len(Fields()))
	}
}

// Key order follows the pydantic models, as the Python server writes it.
func TestJSONKeyOrder(t *testing.T) {
	c := load(t, t.TempDir(), "HOME=/h")
	b, err := c.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var groups []string
	for _, n := range c.schema.root.children {
		if n.field.Kind == KindGroup {
			groups = append(groups, n.name)
		}
	}
	last := -1
	for _, g := range groups {
		at := bytes.Index(b, []byte(`"`+g+`":{`))
		if at <= last {
			t.Fatalf("group %q at %d, not after the previous group (at %d)", g, at, last)
		}
		last = at
	}
	if !bytes.HasPrefix(b, []byte(`{"home":`)) || bytes.Index(b, []byte(`"debug_mode":`)) > bytes.Index(b, []byte(`"api":`)) {
		t.Errorf("top level not in model order: %s", b[:80])
	}
}
