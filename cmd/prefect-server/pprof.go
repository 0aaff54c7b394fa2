package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"
)

// pprofEnv names the address of the optional profiling listener. It is
// deliberately not a Prefect setting: profiles expose internals, so the
// endpoint is off unless an operator asks for it, and it never shares the
// API's listener (or its auth and base path).
const pprofEnv = "PREFECT_SERVER_GO_PPROF_ADDR"

// pprofAddr returns the profiling address from env, or "" when unset.
func pprofAddr(env []string) string {
	addr := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, pprofEnv+"="); ok {
			addr = strings.TrimSpace(v) // later entries win, as with os.Getenv
		}
	}
	return addr
}

// startPprof serves net/http/pprof on addr until the returned stop is
// called. A dedicated mux keeps the handlers off http.DefaultServeMux.
func startPprof(addr string, lifecycle *slog.Logger) (stop func(), err error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			lifecycle.Warn("pprof listener stopped", "error", err)
		}
	}()
	lifecycle.Info("pprof listening", "address", "http://"+ln.Addr().String()+"/debug/pprof/")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-done
	}, nil
}
