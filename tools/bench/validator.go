package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// Validator checks response bodies against an OpenAPI document. For an
// OpenAPI 3.0 document it runs kin-openapi's full response validation; for a
// 3.1 document (kin-openapi recompiles 3.1 schemas on every call, which would
// make the client the bottleneck) it only checks that the body is JSON.
type Validator struct {
	specPath string
	router   routers.Router // nil: JSON well-formedness only
	basePath string
	options  *openapi3filter.Options
	respOpts *openapi3filter.Options
}

// Mode describes what the validator checks, for the report.
func (v *Validator) Mode() string {
	if v == nil {
		return "off (status codes only)"
	}
	if v.router == nil {
		return "status + JSON well-formedness (" + v.specPath + " is OpenAPI 3.1)"
	}
	return "status + OpenAPI response schema (" + v.specPath + ")"
}

// defaultSpecCandidates lists where the derived 3.0 document is found from
// tools/ (how `make bench` runs) or the repository root, then the upstream
// 3.1 dump as the fallback while the derived one does not exist.
var defaultSpecCandidates = []string{
	"../openapi/prefect-api.json",
	"openapi/prefect-api.json",
	"../openapi/prefect-3.9.1.json",
	"openapi/prefect-3.9.1.json",
}

// findSpec returns the explicit path, or the first existing default.
func findSpec(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	for _, p := range defaultSpecCandidates {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no OpenAPI document found (tried %s); pass -spec or -validate=false", strings.Join(defaultSpecCandidates, ", "))
}

// NewValidator loads the document once and builds its router once; the API
// base URL's path (e.g. /api) becomes the only server so that request paths
// match the document's server-relative paths.
func NewValidator(ctx context.Context, specPath, baseURL string) (*Validator, error) {
	raw, err := os.ReadFile(specPath)
	if err != nil {
		return nil, err
	}
	var head struct {
		OpenAPI string `json:"openapi"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("%s: %w", specPath, err)
	}
	v := &Validator{specPath: specPath}
	if !strings.HasPrefix(head.OpenAPI, "3.0") {
		return v, nil
	}

	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(raw)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", specPath, err)
	}
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("%s is not a valid OpenAPI document: %w", specPath, err)
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, err
	}
	v.basePath = strings.TrimSuffix(u.Path, "/")
	server := v.basePath
	if server == "" {
		server = "/"
	}
	doc.Servers = openapi3.Servers{{URL: server}}
	if v.router, err = gorillamux.NewRouter(doc); err != nil {
		return nil, fmt.Errorf("build router for %s: %w", specPath, err)
	}
	v.options = &openapi3filter.Options{
		// Authentication is the server's business, not this check's.
		AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
	}
	// An undocumented status is an error too: the contract is the document.
	v.respOpts = &openapi3filter.Options{IncludeResponseStatus: true}
	return v, nil
}

// Validate checks one response. status has already been compared with the
// expected one by the caller.
func (v *Validator) Validate(ctx context.Context, req *http.Request, status int, header http.Header, body []byte) error {
	if v.router == nil {
		if len(body) > 0 && !json.Valid(body) {
			return errors.New("response body is not valid JSON")
		}
		return nil
	}
	route, params, err := v.router.FindRoute(req)
	if err == nil && route.Operation == nil {
		err = routers.ErrMethodNotAllowed
	}
	if err != nil {
		return fmt.Errorf("route %s %s not in the OpenAPI document: %w", req.Method, req.URL.Path, err)
	}
	// Prefect documents only 200 for create endpoints that answer 201 with
	// the same body, so an undocumented 2xx is checked against the 200 schema
	// rather than skipped.
	if responses := route.Operation.Responses; responses != nil &&
		responses.Status(status) == nil && responses.Status(http.StatusOK) != nil && status/100 == 2 {
		status = http.StatusOK
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request:    req,
			PathParams: params,
			Route:      route,
			Options:    v.options,
		},
		Status:  status,
		Header:  header,
		Options: v.respOpts,
	}
	in.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(ctx, in)
}
