package server

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/prefect-go/prefect-server/gen/api"
)

func (h *handlers) HealthCheck(context.Context, api.HealthCheckRequestObject) (api.HealthCheckResponseObject, error) {
	return api.HealthCheck200JSONResponse(true), nil
}

func (h *handlers) ServerVersion(context.Context, api.ServerVersionRequestObject) (api.ServerVersionResponseObject, error) {
	return api.ServerVersion200JSONResponse(APIVersion), nil
}

func (h *handlers) Hello(context.Context, api.HelloRequestObject) (api.HelloResponseObject, error) {
	return api.Hello200JSONResponse("👋"), nil
}

// readiness answers like Prefect: 200 {"message":"OK"} when the database
// answers, else 503.
type readiness struct {
	status int
	body   map[string]string
}

func (r readiness) VisitPerformReadinessCheckResponse(w http.ResponseWriter) error {
	writeJSON(w, r.status, r.body)
	return nil
}

func (h *handlers) PerformReadinessCheck(ctx context.Context, _ api.PerformReadinessCheckRequestObject) (api.PerformReadinessCheckResponseObject, error) {
	if err := h.store.Ping(ctx); err != nil {
		h.log.WarnContext(ctx, "readiness check failed", "error", err)
		return readiness{http.StatusServiceUnavailable, map[string]string{"message": "Database is not available"}}, nil
	}
	return readiness{http.StatusOK, map[string]string{"message": "OK"}}, nil
}

func (h *handlers) CreateCsrfToken(ctx context.Context, req api.CreateCsrfTokenRequestObject) (api.CreateCsrfTokenResponseObject, error) {
	// New refuses to start with CSRF protection on, so this is the only
	// answer: the client then stops asking and sends no token.
	return nil, errUnprocessable("CSRF protection is disabled.")
}

func (h *handlers) ReadVersion(context.Context, api.ReadVersionRequestObject) (api.ReadVersionResponseObject, error) {
	return api.ReadVersion200JSONResponse(Version), nil
}

// rawSettings writes the configuration tree as it is: it is produced by the
// config package, already shaped like Prefect's Settings model.
type rawSettings json.RawMessage

func (s rawSettings) VisitReadSettingsResponse(w http.ResponseWriter) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(s)
	return err
}

func (h *handlers) ReadSettings(ctx context.Context, _ api.ReadSettingsRequestObject) (api.ReadSettingsResponseObject, error) {
	if h.opts.Settings == nil {
		return rawSettings("{}"), nil
	}
	b, err := h.opts.Settings.JSON()
	if err != nil {
		return nil, err
	}
	return rawSettings(b), nil
}
