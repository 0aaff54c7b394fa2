package server

import (
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
)

// statusRecorder remembers the status for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (websockets,
// flushing) through the recorder.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func accessLog(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rec := &statusRecorder{ResponseWriter: w}
			next.ServeHTTP(rec, r)
			if !log.Enabled(r.Context(), slog.LevelInfo) {
				return
			}
			log.LogAttrs(r.Context(), slog.LevelInfo, "request",
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.Int("status", rec.status),
				slog.Int("bytes", rec.bytes),
				slog.Duration("duration", time.Since(start)),
				slog.String("remote", r.RemoteAddr),
			)
		})
	}
}

// recoverer turns a panic into Prefect's 500 answer instead of a dropped
// connection, and logs the stack.
func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					log.ErrorContext(r.Context(), "panic serving request", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
					writeJSON(w, http.StatusInternalServerError, map[string]string{"exception_message": "Internal Server Error"})
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// cors mirrors Starlette's CORSMiddleware as Prefect configures it
// (allow_credentials off, origins/methods/headers from settings).
func cors(c CORS) func(http.Handler) http.Handler {
	anyOrigin := contains(c.AllowedOrigins, "*")
	methods := strings.Join(c.AllowedMethods, ", ")
	if contains(c.AllowedMethods, "*") {
		methods = "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
	}
	anyHeader := contains(c.AllowedHeaders, "*")
	headers := strings.Join(c.AllowedHeaders, ", ")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			origin := r.Header.Get("Origin")
			if origin == "" {
				next.ServeHTTP(w, r)
				return
			}
			allowed := anyOrigin || contains(c.AllowedOrigins, origin)
			preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
			if preflight {
				h := w.Header()
				h.Set("Vary", "Origin")
				if !allowed {
					writePlain(w, http.StatusBadRequest, "Disallowed CORS origin")
					return
				}
				if anyOrigin {
					h.Set("Access-Control-Allow-Origin", "*")
				} else {
					h.Set("Access-Control-Allow-Origin", origin)
				}
				h.Set("Access-Control-Allow-Methods", methods)
				if anyHeader {
					if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
						h.Set("Access-Control-Allow-Headers", req)
					}
				} else if headers != "" {
					h.Set("Access-Control-Allow-Headers", headers)
				}
				h.Set("Access-Control-Max-Age", "600")
				writePlain(w, http.StatusOK, "OK")
				return
			}
			if allowed {
				if anyOrigin {
					w.Header().Set("Access-Control-Allow-Origin", "*")
				} else {
					w.Header().Set("Access-Control-Allow-Origin", origin)
					w.Header().Add("Vary", "Origin")
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

func writePlain(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// unversioned paths answer without the X-PREFECT-API-VERSION check, as in
// Prefect where /health and /version are declared outside the routers.
var unversioned = map[string]bool{"/health": true, "/version": true}

func checkAPIVersion(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.Header.Get("X-Prefect-Api-Version")
		if v == "" || unversioned[strings.TrimSuffix(routePath(r), "/")] {
			next.ServeHTTP(w, r)
			return
		}
		parts := strings.Split(v, ".")
		var got [3]int
		ok := len(parts) == 3
		for i := 0; ok && i < 3; i++ {
			n, err := strconv.Atoi(strings.TrimSpace(parts[i]))
			ok = err == nil
			got[i] = n
		}
		if !ok {
			writeJSON(w, http.StatusBadRequest, detail{"Invalid X-PREFECT-API-VERSION header format.Expected header in format 'x.y.z' but received " + v})
			return
		}
		for i := 0; i < 3; i++ {
			if got[i] != minimumClientAPIVersion[i] {
				if got[i] < minimumClientAPIVersion[i] {
					writeJSON(w, http.StatusBadRequest, detail{fmt.Sprintf("The request specified API version %s but this server requires version %d.%d.%d or higher.", v, minimumClientAPIVersion[0], minimumClientAPIVersion[1], minimumClientAPIVersion[2])})
					return
				}
				break
			}
		}
		next.ServeHTTP(w, r)
	})
}

// basicAuth is PREFECT_SERVER_API_AUTH_STRING: every API request but the
// health probes needs "Authorization: Basic base64(auth_string)".
func basicAuth(secret, basePath string, next http.Handler) http.Handler {
	unauthorized := func(w http.ResponseWriter) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"exception_message": "Unauthorized"})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := routePath(r)
		// Websockets authenticate in-band with their first message, as
		// Prefect's HTTP-only auth middleware never sees them.
		if r.Method == http.MethodGet && (p == "/health" || p == "/ready" || strings.EqualFold(r.Header.Get("Upgrade"), "websocket")) {
			next.ServeHTTP(w, r)
			return
		}
		scheme, creds, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || scheme != "Basic" {
			unauthorized(w)
			return
		}
		decoded, err := base64.StdEncoding.DecodeString(strings.TrimSpace(creds))
		if err != nil || subtle.ConstantTimeCompare(decoded, []byte(secret)) != 1 {
			unauthorized(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func limitBody(max int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > max {
			writeJSON(w, http.StatusRequestEntityTooLarge, detail{"Request Entity Too Large"})
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, max)
		}
		next.ServeHTTP(w, r)
	})
}

// routePath is the request path below the API mount point.
func routePath(r *http.Request) string {
	if rctx := chi.RouteContext(r.Context()); rctx != nil && rctx.RoutePath != "" {
		return rctx.RoutePath
	}
	return r.URL.Path
}
