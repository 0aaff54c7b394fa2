package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"unicode"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/prefect-go/prefect-server/gen/api"
	"github.com/prefect-go/prefect-server/openapi"
)

func init() {
	// pydantic's datetime and UUID parsing is more lenient than RFC 3339 and
	// kin-openapi's defaults; validate exactly what the handlers will accept.
	openapi3.DefineStringFormatValidator("date-time", openapi3.NewCallbackValidator(func(s string) error {
		_, err := openapi.ParseTime(s)
		return err
	}))
	openapi3.DefineStringFormatValidator("uuid", openapi3.NewCallbackValidator(func(s string) error {
		_, err := uuid.Parse(s)
		return err
	}))
}

// loadSpec parses the embedded derived document, every part of it, with its
// references resolved.
//
// The document is decoded with encoding/json rather than Loader.LoadFromData:
// the loader parses any input as YAML first, which for this 0.8 MB document
// allocated ~90 MB of short-lived nodes at start-up and left the heap (and so
// the idle RSS) several times larger than the server ever needs.
func loadSpec() (*openapi3.T, error) {
	var doc openapi3.T
	if err := json.Unmarshal(openapi.Derived, &doc); err != nil {
		return nil, fmt.Errorf("server: load OpenAPI document: %w", err)
	}
	if err := openapi3.NewLoader().ResolveRefsIn(&doc, nil); err != nil {
		return nil, fmt.Errorf("server: resolve OpenAPI document: %w", err)
	}
	return &doc, nil
}

// loadServingSpec is the document the server keeps for its lifetime: only
// what routing and request validation read.
func loadServingSpec() (*openapi3.T, error) {
	doc, err := loadSpec()
	if err != nil {
		return nil, err
	}
	return slimSpec(doc), nil
}

// slimSpec returns a document holding every path and operation id (the
// router mounts them all and api-coverage lists them) but only the
// parameters and request bodies of the operations the server implements.
// References are resolved, so the kept schemas point at their targets
// directly; dropping components, responses and the unserved operations'
// inputs lets the collector free most of the parsed document.
func slimSpec(doc *openapi3.T) *openapi3.T {
	impl := reflect.TypeOf(&handlers{})
	out := &openapi3.T{OpenAPI: doc.OpenAPI, Info: doc.Info, Paths: openapi3.NewPaths()}
	for _, path := range doc.Paths.InMatchingOrder() {
		item := doc.Paths.Value(path)
		kept := &openapi3.PathItem{Parameters: item.Parameters}
		for method, op := range item.Operations() {
			slim := &openapi3.Operation{OperationID: op.OperationID, Security: op.Security}
			if _, ok := impl.MethodByName(goName(op.OperationID)); ok {
				slim.Parameters = op.Parameters
				slim.RequestBody = op.RequestBody
			}
			kept.SetOperation(method, slim)
		}
		out.Paths.Set(path, kept)
	}
	return out
}

// Operation is one operation of the document and whether it is served.
type Operation struct {
	ID          string
	Method      string
	Path        string
	Implemented bool
}

// Operations lists the document's operations in path order, marking those the
// server implements.
func Operations() ([]Operation, error) {
	spec, err := loadSpec()
	if err != nil {
		return nil, err
	}
	impl := reflect.TypeOf(&handlers{})
	var ops []Operation
	for _, path := range spec.Paths.InMatchingOrder() {
		for method, op := range spec.Paths.Value(path).Operations() {
			_, ok := impl.MethodByName(goName(op.OperationID))
			ops = append(ops, Operation{ID: op.OperationID, Method: method, Path: path, Implemented: ok})
		}
	}
	sort.Slice(ops, func(i, j int) bool {
		if ops[i].Path != ops[j].Path {
			return ops[i].Path < ops[j].Path
		}
		return ops[i].Method < ops[j].Method
	})
	return ops, nil
}

// goName is oapi-codegen's Go name for an operation id: read_flow -> ReadFlow.
func goName(id string) string {
	var b strings.Builder
	upper := true
	for _, r := range id {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			upper = true
			continue
		}
		if upper {
			r = unicode.ToUpper(r)
			upper = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// mountOperations registers every operation of the document on r. The
// implemented ones are validated and dispatched to the generated wrapper; the
// others answer exactly like an unknown FastAPI route.
func mountOperations(r chi.Router, spec *openapi3.T, wrapper *api.ServerInterfaceWrapper, basePath string) error {
	impl := reflect.TypeOf(&handlers{})
	wv := reflect.ValueOf(wrapper)
	for _, path := range spec.Paths.InMatchingOrder() {
		item := spec.Paths.Value(path)
		for method, op := range item.Operations() {
			name := goName(op.OperationID)
			if _, ok := impl.MethodByName(name); !ok {
				r.Method(method, path, http.HandlerFunc(notFound))
				continue
			}
			m := wv.MethodByName(name)
			if !m.IsValid() {
				return fmt.Errorf("server: generated wrapper has no method %s for operation %s", name, op.OperationID)
			}
			next, ok := m.Interface().(func(http.ResponseWriter, *http.Request))
			if !ok {
				return fmt.Errorf("server: wrapper method %s has an unexpected signature", name)
			}
			route := &routers.Route{Spec: spec, Path: path, PathItem: item, Method: method, Operation: op}
			r.Method(method, path, validated(route, http.HandlerFunc(next)))
		}
	}
	return nil
}

var validationOptions = &openapi3filter.Options{
	MultiError:          true,
	SkipSettingDefaults: true, // Prefect tells unset from default (exclude_unset)
	AuthenticationFunc:  openapi3filter.NoopAuthenticationFunc,
}

// validated checks the request against its operation before the generated
// code decodes it, answering FastAPI-shaped errors.
func validated(route *routers.Route, next http.Handler) http.Handler {
	var pathParams []string
	for _, p := range route.Operation.Parameters {
		if p.Value != nil && p.Value.In == openapi3.ParameterInPath {
			pathParams = append(pathParams, p.Value.Name)
		}
	}
	for _, p := range route.PathItem.Parameters {
		if p.Value != nil && p.Value.In == openapi3.ParameterInPath {
			pathParams = append(pathParams, p.Value.Name)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		params := make(map[string]string, len(pathParams))
		rctx := chi.RouteContext(r.Context())
		for _, name := range pathParams {
			params[name] = rctx.URLParam(name)
		}
		if uuidPathMismatch(route, params) {
			// Prefect declares these as {id:uuid}: Starlette's converter makes a
			// malformed id an unknown route, not a validation error.
			notFound(w, r)
			return
		}
		input := &openapi3filter.RequestValidationInput{
			Request:    r,
			PathParams: params,
			Route:      route,
			Options:    validationOptions,
		}
		if err := openapi3filter.ValidateRequest(context.WithoutCancel(r.Context()), input); err != nil {
			writeValidationError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// pydanticUUIDPaths are the operations whose uuid path parameter Prefect
// parses in the handler (no :uuid converter), so a malformed one is a 422.
var pydanticUUIDPaths = map[string]bool{
	"renew_concurrency_lease": true,
}

func uuidPathMismatch(route *routers.Route, params map[string]string) bool {
	if pydanticUUIDPaths[route.Operation.OperationID] {
		return false
	}
	for _, p := range route.Operation.Parameters {
		v := p.Value
		if v == nil || v.In != openapi3.ParameterInPath || v.Schema == nil || v.Schema.Value == nil {
			continue
		}
		if v.Schema.Value.Format == "uuid" && !starletteUUID(params[v.Name]) {
			return true
		}
	}
	return false
}

// starletteUUID is Starlette's uuid path converter: lowercase, hyphenated.
func starletteUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}
