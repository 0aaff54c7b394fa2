// Package server is the HTTP layer: it serves the generated strict interface
// of gen/api at Prefect's exact paths, validates requests against the derived
// OpenAPI document and answers errors the way Prefect's FastAPI app does.
// Handlers are thin: decode, call a service, map to the API model.
package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/prefect-go/prefect-server/gen/api"
	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store"
)

// Version is the Prefect package version the server is compatible with; the
// 3.9.1 client refuses a server whose major version differs.
const Version = "3.9.1"

// APIVersion is Prefect's SERVER_API_VERSION, answered by GET /api/version.
const APIVersion = "0.8.4"

// minimumClientAPIVersion: clients sending an older X-PREFECT-API-VERSION are
// refused with 400, as Prefect's EnforceMinimumAPIVersion does.
var minimumClientAPIVersion = [3]int{0, 8, 0}

// Settings is what the server needs from the configuration.
type Settings interface {
	// JSON is the full settings tree, secrets obfuscated, for /admin/settings.
	JSON() ([]byte, error)
}

// CORS mirrors PREFECT_SERVER_CORS_ALLOWED_{ORIGINS,METHODS,HEADERS}.
type CORS struct {
	AllowedOrigins []string
	AllowedMethods []string
	AllowedHeaders []string
}

// Options wires the server to its store and settings.
type Options struct {
	Store    store.Store
	Settings Settings
	Logger   *slog.Logger
	// BasePath is where the API is mounted (PREFECT_SERVER_API_BASE_PATH).
	BasePath string
	// DefaultLimit is PREFECT_SERVER_API_DEFAULT_LIMIT, the default and
	// maximum page size of filter endpoints.
	DefaultLimit int
	// CSRFProtection is PREFECT_SERVER_CSRF_PROTECTION_ENABLED.
	CSRFProtection bool
	// AuthString enables HTTP Basic auth (PREFECT_SERVER_API_AUTH_STRING).
	AuthString string
	CORS       CORS
	// MaxBodyBytes bounds request bodies; larger ones get 413.
	MaxBodyBytes int64
	// Broker carries events to the services that consume them.
	Broker      events.Broker
	EventLimits events.Limits
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.BasePath == "" {
		o.BasePath = "/api"
	}
	o.BasePath = "/" + strings.Trim(o.BasePath, "/")
	if o.DefaultLimit <= 0 {
		o.DefaultLimit = 200
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 64 << 20
	}
	if o.EventLimits == (events.Limits{}) {
		o.EventLimits = events.DefaultLimits
	}
	if len(o.CORS.AllowedOrigins) == 0 {
		o.CORS.AllowedOrigins = []string{"*"}
	}
	if len(o.CORS.AllowedMethods) == 0 {
		o.CORS.AllowedMethods = []string{"*"}
	}
	if len(o.CORS.AllowedHeaders) == 0 {
		o.CORS.AllowedHeaders = []string{"*"}
	}
}

// handlers implements the operations that exist. It deliberately does not
// implement all of api.StrictServerInterface: see strictServer.
type handlers struct {
	opts  Options
	store store.Store
	log   *slog.Logger
}

// strictServer satisfies api.StrictServerInterface. Methods handlers defines
// win (they are one embedding level shallower); the rest promote from the nil
// interface in absent and are never called, because the router answers those
// operations from the generic Not Found fallback before reaching them.
type strictServer struct {
	*handlers
	absent
}

type absent struct{ api.StrictServerInterface }

var _ api.StrictServerInterface = strictServer{}

// New builds the HTTP handler: the API below opts.BasePath, everything else
// answered as FastAPI answers an unknown route.
func New(opts Options) (http.Handler, error) {
	opts.defaults()
	if opts.Store == nil {
		return nil, fmt.Errorf("server: a store is required")
	}
	if opts.Broker == nil {
		return nil, fmt.Errorf("server: a broker is required")
	}
	if opts.CSRFProtection {
		// Token issue and enforcement are not built yet; starting without
		// the protection the operator asked for would be worse than not
		// starting.
		return nil, fmt.Errorf("server: PREFECT_SERVER_CSRF_PROTECTION_ENABLED=true is not supported yet")
	}
	spec, err := loadServingSpec()
	if err != nil {
		return nil, err
	}
	h := &handlers{opts: opts, store: opts.Store, log: opts.Logger}
	strict := api.NewStrictHandlerWithOptions(strictServer{handlers: h}, nil, api.StrictHTTPServerOptions{
		RequestErrorHandlerFunc:  decodeErrorHandler,
		ResponseErrorHandlerFunc: h.responseErrorHandler,
	})
	wrapper := &api.ServerInterfaceWrapper{Handler: strict, ErrorHandlerFunc: paramErrorHandler}

	apiRouter := chi.NewRouter()
	apiRouter.NotFound(notFound)
	apiRouter.MethodNotAllowed(methodNotAllowed)
	if err := mountOperations(apiRouter, spec, wrapper, opts.BasePath); err != nil {
		return nil, err
	}
	// Websockets are not in the document (openapi/additions.json lists them).
	apiRouter.Get("/events/in", h.eventsIn)

	root := chi.NewRouter()
	root.Use(recoverer(opts.Logger), accessLog(opts.Logger), cors(opts.CORS), withRequestMeta)
	root.NotFound(notFound)
	root.MethodNotAllowed(methodNotAllowed)
	api := http.Handler(apiRouter)
	api = checkAPIVersion(api)
	if opts.AuthString != "" {
		api = basicAuth(opts.AuthString, opts.BasePath, api)
	}
	api = limitBody(opts.MaxBodyBytes, api)
	root.Mount(opts.BasePath, api)
	return root, nil
}
