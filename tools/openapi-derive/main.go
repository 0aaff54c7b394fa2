// Command openapi-derive turns Prefect's OpenAPI 3.1 document, dumped unchanged
// from the pinned wheel, into the OpenAPI 3.0.3 document that oapi-codegen and
// kin-openapi consume.
//
// Why a derivation rather than feeding 3.1 directly: oapi-codegen v2.8 emits
// code that does not compile for this document, and kin-openapi recompiles its
// JSON-Schema validator on every request for 3.1 documents. The rewrite is
// mechanical and deterministic (map keys are emitted sorted), so `make verify`
// can prove the checked-in output is reproducible.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// goType is a hand-written Go type the generator must use in place of an
// upstream schema, so that no conversion layer sits between the HTTP model
// and the domain code that already owns the type.
type goType struct{ name, pkg string }

const (
	filterPkg = "github.com/prefect-go/prefect-server/services/store/filter"
	eventsPkg = "github.com/prefect-go/prefect-server/services/events"
)

var goTypes = map[string]goType{
	"FlowFilter":       {"filter.FlowFilter", filterPkg},
	"FlowRunFilter":    {"filter.FlowRunFilter", filterPkg},
	"TaskRunFilter":    {"filter.TaskRunFilter", filterPkg},
	"DeploymentFilter": {"filter.DeploymentFilter", filterPkg},
	"WorkPoolFilter":   {"filter.WorkPoolFilter", filterPkg},
	"WorkQueueFilter":  {"filter.WorkQueueFilter", filterPkg},
	"LogFilter":        {"filter.LogFilter", filterPkg},
	"Event":            {"events.Event", eventsPkg},
	"ReceivedEvent":    {"events.ReceivedEvent", eventsPkg},
}

// apiVersionHeader is declared on almost every upstream operation; the server
// handles it once in middleware, so it is dropped to keep the generated
// request objects small.
const apiVersionHeader = "x-prefect-api-version"

type obj = map[string]any

func main() {
	in := flag.String("in", "", "upstream OpenAPI 3.1 document")
	out := flag.String("out", "", "derived OpenAPI 3.0.3 document")
	flag.Parse()
	if *in == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: openapi-derive -in upstream.json -out derived.json")
		os.Exit(2)
	}
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "openapi-derive:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	raw, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc obj
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	derived, err := derive(doc)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(derived); err != nil {
		return err
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

func derive(doc obj) (obj, error) {
	doc["openapi"] = "3.0.3"
	// The API is mounted below /api; paths stay exactly as Prefect names them.
	doc["servers"] = []any{obj{"url": "/api"}}

	comps, _ := doc["components"].(obj)
	schemas, _ := comps["schemas"].(obj)
	for name, s := range schemas {
		m, ok := s.(obj)
		if !ok {
			return nil, fmt.Errorf("schema %s is not an object", name)
		}
		schemas[name] = schema(m)
		if strings.HasPrefix(name, "Body_") {
			embeddedBodyNulls(schemas[name].(obj))
		}
		for _, field := range nullNamedFields[name] {
			if props, ok := schemas[name].(obj)["properties"].(obj); ok {
				if p, ok := props[field].(obj); ok {
					p["nullable"] = true
				}
			}
		}
		if t, ok := goTypes[name]; ok {
			schemas[name].(obj)["x-go-type"] = t.name
			schemas[name].(obj)["x-go-type-import"] = obj{"path": t.pkg}
		}
	}

	paths, _ := doc["paths"].(obj)
	ids := map[string][]string{}
	for path, item := range paths {
		for method, op := range item.(obj) {
			o := op.(obj)
			o["operationId"] = readableID(o["operationId"].(string), path, method)
			ids[o["operationId"].(string)] = append(ids[o["operationId"].(string)], path+" "+method)
			operation(o)
		}
	}
	// FastAPI function names are not unique across routers (validate_template
	// is served twice); qualify the clashing ones by their path.
	for id, where := range ids {
		if len(where) < 2 {
			continue
		}
		for _, w := range where {
			path, method, _ := strings.Cut(w, " ")
			o := paths[path].(obj)[method].(obj)
			o["operationId"] = id + "_" + strings.Trim(nonWord.ReplaceAllString(path, "_"), "_")
		}
	}
	return doc, nil
}

// nullNamedFields are fields whose pydantic "before" validator turns null
// into a value (set_name -> get_or_create_run_name in
// prefect/server/schemas/actions.py): the document says string, yet the
// client sends null and Prefect generates a run name.
var nullNamedFields = map[string][]string{
	"FlowRunCreate":           {"name"},
	"FlowRunUpdate":           {"name"},
	"TaskRunCreate":           {"name"},
	"TaskRunUpdate":           {"name"},
	"DeploymentFlowRunCreate": {"name"},
}

// embeddedBodyNulls: FastAPI reads a body made of several Body() parameters
// (the Body_* schemas) field by field and takes a JSON null as "not given",
// falling back to the default. Prefect's client relies on it (read_flows
// sends "flows": null), so those properties must accept null.
func embeddedBodyNulls(s obj) {
	props, _ := s["properties"].(obj)
	for name, p := range props {
		pm := p.(obj)
		if ref, ok := pm["$ref"]; ok {
			delete(pm, "$ref")
			pm["allOf"] = []any{obj{"$ref": ref}}
		}
		pm["nullable"] = true
		props[name] = pm
	}
}

var nonWord = regexp.MustCompile(`\W`)

// readableID strips FastAPI's generated suffix ("_{path}_{method}") from an
// operation id, leaving the route function's name: read_flow_flows__id__get
// becomes read_flow.
func readableID(id, path, method string) string {
	suffix := nonWord.ReplaceAllString(path, "_") + "_" + strings.ToLower(method)
	if strings.HasSuffix(id, suffix) && len(id) > len(suffix) {
		return id[:len(id)-len(suffix)]
	}
	return id
}

func operation(o obj) {
	if params, ok := o["parameters"].([]any); ok {
		kept := params[:0]
		for _, p := range params {
			pm := p.(obj)
			if pm["in"] == "header" && strings.EqualFold(pm["name"].(string), apiVersionHeader) {
				continue
			}
			if s, ok := pm["schema"].(obj); ok {
				pm["schema"] = schema(s)
			}
			delete(pm, "examples")
			kept = append(kept, pm)
		}
		if len(kept) == 0 {
			delete(o, "parameters")
		} else {
			o["parameters"] = kept
		}
	}
	if rb, ok := o["requestBody"].(obj); ok {
		content(rb)
	}
	if resps, ok := o["responses"].(obj); ok {
		for _, r := range resps {
			content(r.(obj))
			rawResponses(r.(obj))
		}
	}
}

func content(holder obj) {
	c, ok := holder["content"].(obj)
	if !ok {
		return
	}
	for _, media := range c {
		mm := media.(obj)
		if s, ok := mm["schema"].(obj); ok {
			mm["schema"] = schema(s)
		}
	}
}

// rawJSON is the Go type used for responses whose upstream schema is empty
// ("any JSON"): the generator would otherwise declare methods on interface{},
// which does not compile.
const rawJSON = "openapi.RawJSON"

const rawJSONImport = "github.com/prefect-go/prefect-server/openapi"

func rawResponses(resp obj) {
	c, ok := resp["content"].(obj)
	if !ok {
		return
	}
	for _, media := range c {
		mm := media.(obj)
		s, ok := mm["schema"].(obj)
		if !ok {
			continue
		}
		typed := false
		for _, k := range []string{"type", "$ref", "allOf", "anyOf", "oneOf", "properties", "items", "enum"} {
			if _, ok := s[k]; ok {
				typed = true
			}
		}
		if !typed {
			s["x-go-type"] = rawJSON
			s["x-go-type-import"] = obj{"path": rawJSONImport}
		}
	}
}

// schema rewrites one JSON Schema (2020-12 dialect) node into OpenAPI 3.0's
// schema object, recursively.
func schema(s obj) obj {
	// 3.1 type arrays: ["string","null"] -> string + nullable.
	if ts, ok := s["type"].([]any); ok {
		var rest []any
		for _, t := range ts {
			if t == "null" {
				s["nullable"] = true
			} else {
				rest = append(rest, t)
			}
		}
		switch len(rest) {
		case 0:
			delete(s, "type")
		case 1:
			s["type"] = rest[0]
		default:
			delete(s, "type")
			var alts []any
			for _, t := range rest {
				alts = append(alts, obj{"type": t})
			}
			s["anyOf"] = alts
		}
	}
	if alts, ok := s["anyOf"].([]any); ok {
		var rest []any
		for _, a := range alts {
			if am, ok := a.(obj); ok && am["type"] == "null" && len(am) == 1 {
				s["nullable"] = true
				continue
			}
			rest = append(rest, a)
		}
		switch len(rest) {
		case 0:
			delete(s, "anyOf")
		case 1:
			delete(s, "anyOf")
			only := rest[0].(obj)
			if _, isRef := only["$ref"]; isRef {
				s["allOf"] = []any{only}
			} else {
				for k, v := range only {
					if _, clash := s[k]; !clash {
						s[k] = v
					}
				}
			}
		default:
			s["anyOf"] = rest
		}
	}
	// A $ref with siblings is ignored by 3.0 tools; keep the siblings by
	// wrapping the reference.
	if ref, ok := s["$ref"]; ok && len(s) > 1 {
		delete(s, "$ref")
		s["allOf"] = []any{obj{"$ref": ref}}
	}
	if v, ok := s["const"]; ok {
		delete(s, "const")
		s["enum"] = []any{v}
	}
	if ex, ok := s["examples"].([]any); ok {
		delete(s, "examples")
		if len(ex) > 0 {
			s["example"] = ex[0]
		}
	}
	for _, k := range []string{"exclusiveMinimum", "exclusiveMaximum"} {
		if n, ok := s[k].(json.Number); ok {
			bound := "minimum"
			if k == "exclusiveMaximum" {
				bound = "maximum"
			}
			s[bound] = n
			s[k] = true
		}
	}
	if pre, ok := s["prefixItems"].([]any); ok {
		delete(s, "prefixItems")
		s["items"] = tupleItems(pre)
	}
	for _, k := range []string{"contentMediaType", "propertyNames", "$schema"} {
		delete(s, k)
	}
	if envs, ok := s["supported_environment_variables"]; ok {
		delete(s, "supported_environment_variables")
		s["x-supported-environment-variables"] = envs
	}

	if props, ok := s["properties"].(obj); ok {
		for k, p := range props {
			props[k] = schema(p.(obj))
		}
	}
	for _, k := range []string{"items", "additionalProperties", "not"} {
		if sub, ok := s[k].(obj); ok {
			s[k] = schema(sub)
		}
	}
	for _, k := range []string{"allOf", "anyOf", "oneOf"} {
		if list, ok := s[k].([]any); ok {
			for i, sub := range list {
				list[i] = schema(sub.(obj))
			}
		}
	}
	// An unconstrained 3.1 schema accepts null too; 3.0 needs it said.
	if unconstrained(s) {
		s["nullable"] = true
	}
	if scalarUnion(s) {
		// The validator still checks the alternatives; Go code gets the
		// decoded JSON value instead of a union wrapper type.
		s["x-go-type"] = "interface{}"
	}
	return s
}

func unconstrained(s obj) bool {
	for _, k := range []string{"type", "$ref", "allOf", "anyOf", "oneOf", "enum", "properties", "items", "not"} {
		if _, ok := s[k]; ok {
			return false
		}
	}
	return true
}

// scalarUnion reports an anyOf whose alternatives are all JSON scalars
// (labels' values: bool | int | float | str).
func scalarUnion(s obj) bool {
	alts, ok := s["anyOf"].([]any)
	if !ok || len(alts) < 2 {
		return false
	}
	for _, a := range alts {
		switch a.(obj)["type"] {
		case "string", "integer", "number", "boolean":
		default:
			return false
		}
		for _, k := range []string{"properties", "items", "$ref", "allOf", "anyOf", "enum"} {
			if _, has := a.(obj)[k]; has {
				return false
			}
		}
	}
	return true
}

// tupleItems approximates a 2020-12 tuple (prefixItems) for 3.0, which has
// only homogeneous arrays: any of the positional schemas, deduplicated.
func tupleItems(pre []any) obj {
	seen := map[string]bool{}
	var alts []any
	for _, p := range pre {
		b, _ := json.Marshal(p)
		if !seen[string(b)] {
			seen[string(b)] = true
			alts = append(alts, p)
		}
	}
	if len(alts) == 1 {
		return alts[0].(obj)
	}
	return obj{"anyOf": alts}
}
