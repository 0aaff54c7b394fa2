package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store"
)

var (
	specOnce   sync.Once
	specDoc    *openapi3.T
	specRouter routers.Router
	specErr    error
)

func contractRouter(t *testing.T) routers.Router {
	t.Helper()
	specOnce.Do(func() {
		specDoc, specErr = loadSpec()
		if specErr == nil {
			specRouter, specErr = gorillamux.NewRouter(specDoc)
		}
	})
	if specErr != nil {
		t.Fatal(specErr)
	}
	return specRouter
}

// client drives the server over real HTTP and checks every answer against
// the OpenAPI document: documented statuses must match their schema, and
// the undocumented error statuses Prefect uses must carry its error shape.
type client struct {
	t      *testing.T
	base   string
	router routers.Router
	header http.Header
}

type settingsJSON string

func (s settingsJSON) JSON() ([]byte, error) { return []byte(s), nil }

func newClient(t *testing.T, st store.Store, mutate ...func(*Options)) *client {
	t.Helper()
	opts := Options{
		Store:    st,
		Broker:   events.NewMemoryBroker(1000),
		Settings: settingsJSON(`{"home":"/tmp"}`),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, m := range mutate {
		m(&opts)
	}
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &client{t: t, base: srv.URL, router: contractRouter(t), header: http.Header{}}
}

type response struct {
	status int
	body   []byte
	header http.Header
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (c *client) raw(method, path string, body []byte, contentType string) response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	if body != nil && contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	r := response{status: resp.StatusCode, body: bytes.TrimSpace(out), header: resp.Header}
	c.check(method, path, body, r)
	return r
}

func (c *client) do(method, path string, body any) response {
	c.t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			c.t.Fatal(err)
		}
	}
	return c.raw(method, path, b, "application/json")
}

// check validates the answer against the document.
func (c *client) check(method, path string, reqBody []byte, r response) {
	c.t.Helper()
	req, _ := http.NewRequest(method, "http://localhost"+path, bytes.NewReader(reqBody))
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		// Not an operation of the document: FastAPI's unknown-route answer.
		if r.status != http.StatusNotFound && r.status != http.StatusMethodNotAllowed {
			c.t.Fatalf("%s %s: no such operation, yet status %d", method, path, r.status)
		}
		c.assertDetail(method, path, r)
		return
	}
	status := r.status
	if status == http.StatusUnprocessableEntity {
		var v struct {
			Detail any `json:"detail"`
		}
		if json.Unmarshal(r.body, &v) == nil {
			if _, isString := v.Detail.(string); isString {
				// Prefect's HTTPException(422, "...") answers a string detail
				// where the document only knows validation errors.
				return
			}
		}
	}
	documented := route.Operation.Responses.Status(status) != nil
	if status == http.StatusCreated && !documented && route.Operation.Responses.Status(http.StatusOK) != nil {
		// Prefect answers 201 for creations its document lists as 200.
		status, documented = http.StatusOK, true
	}
	if !documented {
		if status < 400 {
			c.t.Fatalf("%s %s: undocumented success status %d: %s", method, path, r.status, r.body)
		}
		c.assertDetail(method, path, r)
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 r.header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	in.SetBodyBytes(r.body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		c.t.Fatalf("%s %s -> %d does not match the document: %v\nbody: %s", method, path, r.status, err, r.body)
	}
}

func (c *client) assertDetail(method, path string, r response) {
	c.t.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.body, &v); err != nil {
		c.t.Fatalf("%s %s -> %d: body is not JSON: %s", method, path, r.status, r.body)
	}
	if _, ok := v["detail"]; !ok {
		if _, ok := v["exception_message"]; !ok {
			c.t.Fatalf("%s %s -> %d: no detail in %s", method, path, r.status, r.body)
		}
	}
}

func wantStatus(t *testing.T, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
}

func wantDetail(t *testing.T, r response, status int, detail string) {
	t.Helper()
	wantStatus(t, r, status)
	var v struct {
		Detail string `json:"detail"`
	}
	r.json(t, &v)
	if v.Detail != detail {
		t.Fatalf("detail %q, want %q", v.Detail, detail)
	}
}

type validationAnswer struct {
	Detail []struct {
		Type string `json:"type"`
		Loc  []any  `json:"loc"`
		Msg  string `json:"msg"`
	} `json:"detail"`
	ExceptionMessage string `json:"exception_message"`
}

// wantValidation asserts a 422 that names the location and pydantic type.
func wantValidation(t *testing.T, r response, loc string, typ string) {
	t.Helper()
	wantStatus(t, r, http.StatusUnprocessableEntity)
	var v validationAnswer
	r.json(t, &v)
	if v.ExceptionMessage != "Invalid request received." {
		t.Fatalf("exception_message %q", v.ExceptionMessage)
	}
	for _, d := range v.Detail {
		parts := make([]string, len(d.Loc))
		for i, p := range d.Loc {
			b, _ := json.Marshal(p)
			parts[i] = strings.Trim(string(b), `"`)
		}
		if strings.Join(parts, ".") == loc && (typ == "" || d.Type == typ) {
			return
		}
	}
	t.Fatalf("no %s error at %s in %s", typ, loc, r.body)
}
