// Command prefect-server runs the Prefect 3 orchestration API: the server
// `prefect server start` runs, re-implemented in Go, configured by the same
// settings (environment, .env, prefect.toml, pyproject.toml, profiles).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prefect-go/prefect-server/server"
	"github.com/prefect-go/prefect-server/services/config"
	"github.com/prefect-go/prefect-server/services/events"
	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/open"
)

// shutdownGrace bounds how long in-flight requests may run after SIGTERM;
// orchestrators typically SIGKILL 30 s after SIGTERM, so stay well below.
const shutdownGrace = 20 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cwd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "prefect-server:", err)
		os.Exit(1)
	}
	os.Exit(run(ctx, os.Args[1:], os.Environ(), cwd, os.Stdout, os.Stderr))
}

// command is one subcommand; run returns the process exit code.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args, env []string, cwd string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"start", "run the API server (the default command)", runStart},
		{"migrate", "apply database migrations and exit", runMigrate},
		{"api-coverage", "list the OpenAPI operations the server implements and those it lacks", runCoverage},
		{"version", "print the Prefect version this server is compatible with", runVersion},
		{"sqlite-ceiling", "measure this machine's SQLite rate for a flow run's transactions, without HTTP (benchmark ceiling)", runCeiling},
	}
}

func run(ctx context.Context, args, env []string, cwd string, stdout, stderr io.Writer) int {
	name := "start"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	} else if len(args) > 0 && isHelp(args[0]) {
		usage(stdout)
		return 0
	}
	if name == "help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, args, env, cwd, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "prefect-server: unknown command %q\n\n", name)
	usage(stderr)
	return 2
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help"
}

// mainSettings are the settings worth listing in --help; all others are
// documented by Prefect and accepted all the same.
var mainSettings = []string{
	"home",
	"server.database.connection_url",
	"server.database.migrate_on_start",
	"server.api.host",
	"server.api.port",
	"server.api.base_path",
	"server.api.auth_string",
	"server.api.default_limit",
	"server.api.keepalive_timeout",
	"server.api.csrf_protection_enabled",
	"server.api.cors_allowed_origins",
	"server.api.cors_allowed_methods",
	"server.api.cors_allowed_headers",
	"server.logging_level",
	"server.ui.enabled",
	"server.ui.api_url",
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "prefect-server: the Prefect %s orchestration API server\n\n", server.Version)
	fmt.Fprintf(w, "Usage: prefect-server [command] [flags]\n\nCommands:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRun 'prefect-server start -h' for the flags of start.\n")
	fmt.Fprintf(w, "\nSettings come, highest priority first, from the environment, ./.env, ./prefect.toml,\n"+
		"./pyproject.toml [tool.prefect] and the active profile, exactly as in Prefect; every\n"+
		"Prefect setting is accepted. The main ones (env name, legacy aliases, default):\n\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, key := range mainSettings {
		f, ok := config.Lookup(key)
		if !ok {
			continue
		}
		names := f.EnvName()
		if len(f.Env) > 1 {
			names += " (also " + strings.Join(f.Env[1:], ", ") + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", names, defaultText(f))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nNot a Prefect setting: %s=host:port serves Go's net/http/pprof profiles\n"+
		"on that address (off by default; never expose it publicly).\n", pprofEnv)
}

func defaultText(f config.Field) string {
	raw := strings.TrimSpace(string(f.Default))
	switch {
	case f.Key() == "server.database.connection_url":
		return "sqlite+aiosqlite:///$PREFECT_HOME/prefect.db"
	case f.Key() == "server.ui.api_url":
		return "http://$HOST:$PORT/api"
	case raw == "null" && f.Key() == "server.api.base_path":
		return "/api"
	case raw == "null":
		return "unset"
	}
	return raw
}

func runStart(ctx context.Context, args, env []string, cwd string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	fs.SetOutput(stderr)
	host := fs.String("host", "", "listen address (overrides PREFECT_SERVER_API_HOST)")
	port := fs.String("port", "", "listen port, 0 for any free port (overrides PREFECT_SERVER_API_PORT)")
	format := fs.String("log-format", "text", "log format on stderr: text or json")
	noServices := fs.Bool("no-services", false, "serve only the API, without background services (prefect server start --no-services)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *format != "text" && *format != "json" {
		fmt.Fprintf(stderr, "prefect-server: --log-format must be text or json, not %q\n", *format)
		return 2
	}
	// Flags become settings so /api/admin/settings shows what is in effect,
	// as Prefect's CLI does.
	if *host != "" {
		env = append(env, "PREFECT_SERVER_API_HOST="+*host)
	}
	if *port != "" {
		env = append(env, "PREFECT_SERVER_API_PORT="+*port)
	}
	cfg, err := config.Load(env, cwd)
	if err != nil {
		fmt.Fprintln(stderr, "prefect-server:", err)
		return 1
	}
	logger, lifecycle := newLoggers(stderr, *format, cfg.LoggingLevel())
	for _, w := range cfg.Warnings() {
		logger.Warn(w)
	}
	// Prefect creates its home at startup; results and the default SQLite
	// database live there. Like Prefect, failing is only a warning: the
	// database may well be elsewhere.
	if err := os.MkdirAll(cfg.Home(), 0o700); err != nil {
		logger.Warn("Failed to create the Prefect home directory", "path", cfg.Home(), "error", err)
	}
	if addr := pprofAddr(env); addr != "" {
		stopPprof, err := startPprof(addr, lifecycle)
		if err != nil {
			lifecycle.Error("pprof listener failed", "address", addr, "error", err)
			return 1
		}
		defer stopPprof()
	}
	if err := serve(ctx, cfg, logger, lifecycle, !*noServices); err != nil {
		lifecycle.Error("server failed", "error", err)
		return 1
	}
	return 0
}

// newLoggers returns the server's logger at PREFECT_SERVER_LOGGING_LEVEL and
// one for start/stop lines, which are always shown (uvicorn prints its
// startup lines whatever Prefect's level, and the default is WARNING).
func newLoggers(w io.Writer, format, level string) (logger, lifecycle *slog.Logger) {
	lvl := slogLevel(level)
	mk := func(l slog.Level) *slog.Logger {
		opts := &slog.HandlerOptions{Level: l}
		if format == "json" {
			return slog.New(slog.NewJSONHandler(w, opts))
		}
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return mk(lvl), mk(min(lvl, slog.LevelInfo))
}

func slogLevel(prefectLevel string) slog.Level {
	switch prefectLevel {
	case "DEBUG":
		return slog.LevelDebug
	case "INFO":
		return slog.LevelInfo
	case "ERROR":
		return slog.LevelError
	case "CRITICAL":
		return slog.LevelError + 4
	}
	return slog.LevelWarn
}

// serve runs the server until ctx ends, then shuts down in reverse order of
// start: stop accepting and drain requests, flush and stop the background
// services, stop the broker, close the store.
func serve(ctx context.Context, cfg *config.Settings, logger, lifecycle *slog.Logger, withServices bool) error {
	st, err := open.Open(ctx, cfg.DatabaseURL())
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer closeLogged(lifecycle, "database", st)
	broker := events.NewMemoryBroker(0)
	defer closeLogged(lifecycle, "event broker", broker)

	var svcs []backgroundService
	if withServices {
		svcs = backgroundServices(cfg, st, broker, logger)
	}
	stopServices, err := startServices(ctx, broker, svcs, lifecycle)
	if err != nil {
		return err
	}
	// Services stop after the API has drained (so events it accepted are
	// recorded) and before the broker and the store close.
	defer stopServices()

	handler, err := server.New(serverOptions(cfg, st, broker, logger))
	if err != nil {
		return err
	}
	// Start-up leaves tens of MB of garbage (the parsed OpenAPI document,
	// migrations) that the runtime would hand back to the OS only minutes
	// later; collect and return it once, now, so an idle server is small.
	// This is one call at start, not a GC setting: steady-state behaviour
	// is untouched.
	debug.FreeOSMemory()
	addr := net.JoinHostPort(cfg.APIHost(), strconv.Itoa(cfg.APIPort()))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		// Idle keep-alive connections close like uvicorn's
		// --timeout-keep-alive. No ReadTimeout/WriteTimeout: both would cut
		// long-lived websocket connections.
		IdleTimeout:    cfg.KeepAliveTimeout(),
		MaxHeaderBytes: 1 << 20,
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BaseContext:    func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	lifecycle.Info("server started", "address", "http://"+ln.Addr().String()+cfg.APIBasePath(), "database", redactedURL(cfg.DatabaseURL()))

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	lifecycle.Info("shutting down", "grace", shutdownGrace.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		// Requests still running after the grace period are cut off;
		// that is the point of the deadline, not a failure to report as
		// a non-zero exit.
		lifecycle.Warn("in-flight requests cut off at shutdown deadline", "error", err)
		srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	lifecycle.Info("server stopped")
	return nil
}

func serverOptions(cfg *config.Settings, st store.Store, broker events.Broker, logger *slog.Logger) server.Options {
	return server.Options{
		Store:          st,
		Settings:       cfg,
		Logger:         logger,
		BasePath:       cfg.APIBasePath(),
		DefaultLimit:   cfg.DefaultLimit(),
		CSRFProtection: cfg.CSRFProtectionEnabled(),
		AuthString:     cfg.APIAuthString(),
		CORS: server.CORS{
			AllowedOrigins: cfg.CORSAllowedOrigins(),
			AllowedMethods: cfg.CORSAllowedMethods(),
			AllowedHeaders: cfg.CORSAllowedHeaders(),
		},
		Broker: broker,
		EventLimits: events.Limits{
			MaxNameLength:        cfg.Int("server.events.maximum_event_name_length"),
			MaxLabelsPerResource: cfg.Int("server.events.maximum_labels_per_resource"),
			MaxRelatedResources:  cfg.Int("server.events.maximum_related_resources"),
			MaxSizeBytes:         cfg.Int("server.events.maximum_size_bytes"),
		},
	}
}

func closeLogged(log *slog.Logger, what string, c io.Closer) {
	if err := c.Close(); err != nil {
		log.Error("close "+what, "error", err)
	}
}

// redactedURL hides a database password for logs.
func redactedURL(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return raw
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return raw
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}

func runMigrate(ctx context.Context, args, env []string, cwd string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := config.Load(env, cwd)
	if err != nil {
		fmt.Fprintln(stderr, "prefect-server:", err)
		return 1
	}
	// Opening a store applies the embedded migrations.
	st, err := open.Open(ctx, cfg.DatabaseURL())
	if err != nil {
		fmt.Fprintln(stderr, "prefect-server: migrate:", err)
		return 1
	}
	if err := st.Close(); err != nil {
		fmt.Fprintln(stderr, "prefect-server: migrate:", err)
		return 1
	}
	fmt.Fprintf(stdout, "database at %s is up to date\n", redactedURL(cfg.DatabaseURL()))
	return 0
}

func runCoverage(_ context.Context, args, _ []string, _ string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if isHelp(args[0]) {
			fmt.Fprintln(stdout, "Usage: prefect-server api-coverage")
			return 0
		}
		fmt.Fprintln(stderr, "prefect-server: api-coverage takes no arguments")
		return 2
	}
	if err := server.Coverage(stdout); err != nil {
		fmt.Fprintln(stderr, "prefect-server:", err)
		return 1
	}
	return 0
}

func runVersion(_ context.Context, args, _ []string, _ string, stdout, stderr io.Writer) int {
	if len(args) > 0 && !isHelp(args[0]) {
		fmt.Fprintln(stderr, "prefect-server: version takes no arguments")
		return 2
	}
	fmt.Fprintf(stdout, "prefect-server %s (API %s, settings of prefect %s)\n", server.Version, server.APIVersion, config.PrefectVersion())
	return 0
}
