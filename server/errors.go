package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
)

// writeJSON writes v with the status code; encoding errors of our own types
// are programming errors and surface in tests.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, `{"exception_message":"Internal Server Error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(bytes.TrimRight(buf.Bytes(), "\n"))
}

type detail struct {
	Detail string `json:"detail"`
}

// notFound is FastAPI's answer for a route it does not have.
func notFound(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusNotFound, detail{"Not Found"})
}

func methodNotAllowed(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusMethodNotAllowed, detail{"Method Not Allowed"})
}

// httpError is an error a handler returns to answer {"detail": ...} with a
// status, like FastAPI's HTTPException.
type httpError struct {
	status int
	detail string
}

func (e *httpError) Error() string { return fmt.Sprintf("%d: %s", e.status, e.detail) }

func errNotFound(what string) error { return &httpError{http.StatusNotFound, what} }

func errUnprocessable(msg string) error { return &httpError{http.StatusUnprocessableEntity, msg} }

func errConflict(msg string) error { return &httpError{http.StatusConflict, msg} }

// responseErrorHandler answers errors returned by handlers.
func (h *handlers) responseErrorHandler(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	switch {
	case errors.As(err, &he):
		writeJSON(w, he.status, detail{he.detail})
	case errors.Is(err, store.ErrNotFound):
		writeJSON(w, http.StatusNotFound, detail{"Not Found"})
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
	case errors.Is(err, store.ErrUnavailable):
		// Prefect answers retryable database errors with 503 so the client
		// retries instead of failing the run.
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"exception_message": "Service Unavailable"})
	case errors.Is(err, store.ErrInvalid), errors.Is(err, filter.ErrInvalid):
		writeJSON(w, http.StatusUnprocessableEntity, detail{err.Error()})
	case errors.Is(err, store.ErrConflict):
		writeJSON(w, http.StatusConflict, detail{"Data integrity conflict. This usually means a unique or foreign key constraint was violated. See server logs for details."})
	default:
		h.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"exception_message": "Internal Server Error"})
	}
}

// validationItem is one pydantic error as FastAPI reports it.
type validationItem struct {
	Type  string         `json:"type"`
	Loc   []any          `json:"loc"`
	Msg   string         `json:"msg"`
	Input any            `json:"input"`
	Ctx   map[string]any `json:"ctx,omitempty"`
}

// validationBody carries both shapes: Prefect's exception handler answers
// exception_message/exception_detail/request_body, and the document (and
// FastAPI's default) promise detail; clients read either.
type validationBody struct {
	ExceptionMessage string           `json:"exception_message"`
	ExceptionDetail  []validationItem `json:"exception_detail"`
	RequestBody      any              `json:"request_body"`
	Detail           []validationItem `json:"detail"`
}

func writeValidationItems(w http.ResponseWriter, items []validationItem, body any) {
	writeJSON(w, http.StatusUnprocessableEntity, validationBody{
		ExceptionMessage: "Invalid request received.",
		ExceptionDetail:  items,
		RequestBody:      body,
		Detail:           items,
	})
}

// requestBodyValue re-reads the (already buffered) body for the error answer.
func requestBodyValue(r *http.Request) any {
	if r.Body == nil {
		return nil
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil || len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	return v
}

// writeValidationError maps kin-openapi's errors to pydantic's vocabulary.
func writeValidationError(w http.ResponseWriter, r *http.Request, err error) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeJSON(w, http.StatusRequestEntityTooLarge, detail{"Request Entity Too Large"})
		return
	}
	var items []validationItem
	var walk func(error)
	walk = func(err error) {
		// Type switches, not errors.As: a RequestError unwraps to the
		// MultiError of its schema errors, and MultiError.As matches any
		// member, so errors.As would lose which parameter or body failed.
		if multi, ok := err.(openapi3.MultiError); ok {
			for _, e := range multi {
				walk(e)
			}
			return
		}
		if re, ok := err.(*openapi3filter.RequestError); ok {
			items = append(items, requestErrorItems(re)...)
			return
		}
		items = append(items, validationItem{Type: "value_error", Loc: []any{"body"}, Msg: err.Error()})
	}
	walk(err)
	writeValidationItems(w, items, requestBodyValue(r))
}

func requestErrorItems(re *openapi3filter.RequestError) []validationItem {
	var base []any
	switch {
	case re.Parameter != nil:
		base = []any{re.Parameter.In, re.Parameter.Name}
	default:
		base = []any{"body"}
	}
	if re.Err == nil {
		if re.RequestBody != nil && strings.Contains(re.Reason, "required") {
			return []validationItem{{Type: "missing", Loc: base, Msg: "Field required"}}
		}
		return []validationItem{{Type: "value_error", Loc: base, Msg: re.Reason}}
	}
	var items []validationItem
	var walk func(error)
	walk = func(err error) {
		if multi, ok := err.(openapi3.MultiError); ok {
			for _, e := range multi {
				walk(e)
			}
			return
		}
		if se, ok := err.(*openapi3.SchemaError); ok {
			if inner := allOfErrors(se); inner != nil {
				for _, e := range inner {
					walk(e)
				}
				return
			}
			items = append(items, schemaErrorItem(base, se))
			return
		}
		var pe *openapi3filter.ParseError
		if errors.As(err, &pe) {
			if re.RequestBody != nil {
				items = append(items, validationItem{Type: "json_invalid", Loc: append(base, 0), Msg: "JSON decode error", Input: map[string]any{}, Ctx: map[string]any{"error": pe.Error()}})
			} else {
				items = append(items, validationItem{Type: "value_error", Loc: base, Msg: pe.Error()})
			}
			return
		}
		if errors.Is(err, openapi3filter.ErrInvalidRequired) {
			items = append(items, validationItem{Type: "missing", Loc: base, Msg: "Field required"})
			return
		}
		if re.RequestBody != nil && strings.Contains(err.Error(), "unsupported content type") {
			items = append(items, validationItem{Type: "model_attributes_type", Loc: base, Msg: "Input should be a valid dictionary or object to extract fields from"})
			return
		}
		items = append(items, validationItem{Type: "value_error", Loc: base, Msg: err.Error()})
	}
	walk(re.Err)
	return items
}

// allOfErrors returns the member errors of a failed allOf. The derived
// document wraps nullable references in a one-member allOf, so the member's
// error is the one pydantic would report; kin-openapi keeps it in an
// unexported slice type behind Origin.
func allOfErrors(se *openapi3.SchemaError) []error {
	if se.SchemaField != "allOf" || se.Origin == nil {
		return nil
	}
	u := errors.Unwrap(se.Origin)
	if u == nil {
		return nil
	}
	rv := reflect.ValueOf(u)
	if rv.Kind() != reflect.Slice {
		return nil
	}
	var out []error
	for i := 0; i < rv.Len(); i++ {
		if e, ok := rv.Index(i).Interface().(error); ok {
			out = append(out, e)
		}
	}
	return out
}

func schemaErrorItem(base []any, se *openapi3.SchemaError) validationItem {
	loc := append([]any(nil), base...)
	for _, p := range se.JSONPointer() {
		if n, err := strconv.Atoi(p); err == nil {
			loc = append(loc, n)
		} else {
			loc = append(loc, p)
		}
	}
	item := validationItem{Loc: loc, Input: se.Value}
	s := se.Schema
	switch se.SchemaField {
	case "required":
		// kin-openapi already puts the missing key in the path.
		item.Type, item.Msg = "missing", "Field required"
		item.Input = se.Value
	case "properties", "additionalProperties":
		item.Type, item.Msg = "extra_forbidden", "Extra inputs are not permitted"
		if name := quoted(se.Reason); name != "" {
			item.Loc = append(item.Loc, name)
			if m, ok := se.Value.(map[string]any); ok {
				item.Input = m[name]
			}
		}
	case "type", "nullable":
		item.Type, item.Msg = typeError(s)
	case "format":
		switch s.Format {
		case "uuid":
			item.Type, item.Msg = "uuid_parsing", "Input should be a valid UUID"
		case "date-time":
			item.Type, item.Msg = "datetime_from_date_parsing", "Input should be a valid datetime"
		default:
			item.Type, item.Msg = "value_error", se.Reason
		}
	case "enum":
		item.Type, item.Msg = "enum", "Input should be "+enumList(s.Enum)
		item.Ctx = map[string]any{"expected": enumList(s.Enum)}
	case "pattern":
		item.Type, item.Msg = "string_pattern_mismatch", fmt.Sprintf("String should match pattern '%s'", s.Pattern)
		item.Ctx = map[string]any{"pattern": s.Pattern}
	case "minimum", "exclusiveMinimum":
		if s.ExclusiveMin.IsTrue() {
			item.Type, item.Msg = "greater_than", fmt.Sprintf("Input should be greater than %v", num(s.Min))
			item.Ctx = map[string]any{"gt": num(s.Min)}
		} else {
			item.Type, item.Msg = "greater_than_equal", fmt.Sprintf("Input should be greater than or equal to %v", num(s.Min))
			item.Ctx = map[string]any{"ge": num(s.Min)}
		}
	case "maximum", "exclusiveMaximum":
		if s.ExclusiveMax.IsTrue() {
			item.Type, item.Msg = "less_than", fmt.Sprintf("Input should be less than %v", num(s.Max))
			item.Ctx = map[string]any{"lt": num(s.Max)}
		} else {
			item.Type, item.Msg = "less_than_equal", fmt.Sprintf("Input should be less than or equal to %v", num(s.Max))
			item.Ctx = map[string]any{"le": num(s.Max)}
		}
	case "minLength":
		item.Type, item.Msg = "string_too_short", fmt.Sprintf("String should have at least %d characters", s.MinLength)
	case "maxLength":
		item.Type, item.Msg = "string_too_long", fmt.Sprintf("String should have at most %d characters", derefU(s.MaxLength))
	case "minItems":
		item.Type, item.Msg = "too_short", fmt.Sprintf("List should have at least %d items", s.MinItems)
	case "maxItems":
		item.Type, item.Msg = "too_long", fmt.Sprintf("List should have at most %d items", derefU(s.MaxItems))
	default:
		item.Type, item.Msg = "value_error", se.Reason
	}
	return item
}

func typeError(s *openapi3.Schema) (string, string) {
	if s == nil || s.Type == nil {
		return "value_error", "Input is not valid"
	}
	switch {
	case s.Type.Is("string"):
		return "string_type", "Input should be a valid string"
	case s.Type.Is("integer"):
		return "int_type", "Input should be a valid integer"
	case s.Type.Is("number"):
		return "float_type", "Input should be a valid number"
	case s.Type.Is("boolean"):
		return "bool_type", "Input should be a valid boolean"
	case s.Type.Is("array"):
		return "list_type", "Input should be a valid list"
	case s.Type.Is("object"):
		return "model_attributes_type", "Input should be a valid dictionary or object to extract fields from"
	}
	return "value_error", "Input is not valid"
}

func quoted(reason string) string {
	i := strings.IndexByte(reason, '"')
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(reason[i+1:], '"')
	if j < 0 {
		return ""
	}
	return reason[i+1 : i+1+j]
}

func enumList(vals []any) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = fmt.Sprintf("'%v'", v)
	}
	if len(parts) <= 1 {
		return strings.Join(parts, "")
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " or " + parts[len(parts)-1]
}

func num(p *float64) any {
	if p == nil {
		return nil
	}
	if *p == float64(int64(*p)) {
		return int64(*p)
	}
	return *p
}

func derefU(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

// decodeErrorHandler answers bodies the generated code cannot decode after
// they passed schema validation (rare: e.g. numbers out of Go's range).
func decodeErrorHandler(w http.ResponseWriter, r *http.Request, err error) {
	writeValidationItems(w, []validationItem{{Type: "value_error", Loc: []any{"body"}, Msg: err.Error()}}, nil)
}

// paramErrorHandler answers parameters the generated binder rejects.
func paramErrorHandler(w http.ResponseWriter, r *http.Request, err error) {
	writeValidationItems(w, []validationItem{{Type: "value_error", Loc: []any{"query"}, Msg: err.Error()}}, nil)
}
