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
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/postgres"
	"github.com/socialrx/socialrx/outbox/sqlite"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server"
)

// openStore opens the store named by SOCIALRX_DATABASE_URL.
func openStore(ctx context.Context, s config.Settings, log *slog.Logger) (outbox.Store, error) {
	backend, target, err := config.ParseDatabaseURL(s.DatabaseURL)
	if err != nil {
		return nil, err
	}
	switch backend {
	case "sqlite":
		st, err := sqlite.Open(ctx, target, sqlite.Options{Logger: log, Notify: outbox.RenderNotification})
		if err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", target, err)
		}
		return st, nil
	case "postgres":
		st, err := postgres.Open(ctx, target, postgres.Options{Logger: log, Notify: outbox.RenderNotification, Warm: true})
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", redactedDB(s.DatabaseURL), err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("SOCIALRX_DATABASE_URL: the %s backend is not available in this build", backend)
}

// loadConfig loads the directory file, or the embedded demo with a warning.
func loadConfig(s config.Settings, log *slog.Logger) (*config.Config, error) {
	if s.ConfigPath == "" {
		log.Warn("SOCIALRX_CONFIG is not set: using the embedded DEMO configuration and its published dev tokens; never use this for real referrals")
		return config.LoadDemo()
	}
	return config.Load(s.ConfigPath)
}

// runServe runs the serve command: settings and directory, then Main until ctx is cancelled (SIGINT/SIGTERM)
// or the service stops on its own, then a graceful shutdown (Main.Close).
func runServe(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	apply := settingsFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	settings, err := apply(getenv)
	if err != nil {
		return usageError{err.Error()}
	}
	log := newLogger(settings, stderr)
	applyMemoryLimit(log, getenv, os.ReadFile)
	applyGCPercent(log, getenv)
	cfg, err := loadConfig(settings, log)
	if err != nil {
		return err
	}
	m := NewMain(settings, cfg, log)
	if err := m.Run(ctx); err != nil {
		_ = m.Close() // after a failed Run, Close only closes the store (logging a failure) and returns nil
		return err
	}
	return errors.Join(m.Wait(ctx), m.Close())
}

// Main is the running service, in benbjohnson/wtf's shape: NewMain assembles it from the process settings, the
// directory and a logger; Run opens the store, builds the HTTP server, the outbox dispatcher and the overdue
// sweeper, starts them and returns once the service is listening; Wait blocks until the process is told to stop
// or the service stops on its own; Close shuts it down gracefully. The serve command and the tests drive it the
// same way.
type Main struct {
	// Settings are the process settings: listen address, database, delivery bounds, body limit, token key.
	Settings config.Settings
	// Config is the directory: the clients that may call socialrx and the community services.
	Config *config.Config
	// Logger receives the service's log.
	Logger *slog.Logger

	store   outbox.Store
	audit   *outbox.AuditLog // this process's audit chain, closed after the server and the dispatcher
	httpSrv *http.Server
	addr    string
	// metricsSrv serves /metrics on its own listener (SOCIALRX_METRICS_ADDR); metricsAddr is where.
	metricsSrv  *http.Server
	metricsAddr string
	stopBg      context.CancelFunc // stops the dispatcher and the sweepers (overdue, heartbeats)
	dispDone    chan struct{}      // closed when the dispatcher's Run has returned dispErr
	dispErr     error
	sweepDone   chan struct{} // closed when the overdue sweeper has returned
	beatDone    chan struct{} // closed when the heartbeat sweeper has returned
	pruneDone   chan struct{} // closed when the retention sweeper has returned
	httpDone    chan struct{} // closed when the HTTP server's Serve has returned httpErr
	httpErr     error

	dispatcherRunning atomic.Bool // readiness: /readyz fails while the dispatcher is not running
	dispReported      atomic.Bool // Wait returned the dispatcher's stop, so Close does not report it again
	closeOnce         sync.Once
	closeErr          error
}

// NewMain returns a service that Run starts with the given settings, directory and logger.
func NewMain(settings config.Settings, cfg *config.Config, log *slog.Logger) *Main {
	return &Main{Settings: settings, Config: cfg, Logger: log}
}

// Addr is the address the HTTP server listens on (host:port, the real port when Settings.Addr asks for port
// 0), or "" before Run has started listening.
func (m *Main) Addr() string { return m.addr }

// Run opens the store named by Settings.DatabaseURL (migrating its schema), builds the HTTP server, the outbox
// dispatcher and the sweepers (overdue referrals, Subscription heartbeats), starts listening on Settings.Addr and
// starts the background goroutines.
// It returns once the service is serving; ctx bounds the start only (Close stops the service). Delivery
// settings that the dispatcher refuses are a usage error. Run may be called once; after an error, Close
// releases what Run opened.
func (m *Main) Run(ctx context.Context) error {
	if m.store != nil {
		return errors.New("a Main runs once: Run was already called")
	}
	if m.Config == nil || m.Logger == nil {
		return errors.New("a Main needs a Config and a Logger")
	}
	settings, cfg, log := m.Settings, m.Config, m.Logger
	if len(settings.TokenKey) == 0 && slices.ContainsFunc(cfg.Clients, func(c config.Client) bool { return len(c.JWKS) > 0 }) {
		log.Warn("SOCIALRX_TOKEN_KEY is not set: SMART access tokens are signed with a random key and work only on this instance until it restarts")
	}
	if err := demoFailsClosed(settings, cfg, log); err != nil {
		return err
	}
	secrets, err := keyring(settings, cfg, log)
	if err != nil {
		return err
	}
	store, err := openStore(ctx, settings, log)
	if err != nil {
		return err
	}
	m.store = store
	if err := referral.SeedCapacities(ctx, store, cfg.Directory, time.Now()); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	deliveries, err := server.NewDeliveryMetrics(reg, settings.Security.MetricsSubscriptionIDs)
	if err != nil {
		return err
	}
	retained, err := server.NewRetentionMetrics(reg)
	if err != nil {
		return err
	}
	m.audit = outbox.NewAuditLog(store, outbox.AuditLogOptions{Instance: "serve", Logger: log})
	dispOpts := outbox.DispatcherOptions{
		Audit:       m.audit,
		Logger:      log,
		Timeout:     settings.DeliveryTimeout,
		RetryBudget: settings.RetryBudget,
		Lease:       settings.DeliveryLease,
		Version:     version,
		Observer:    deliveries,
		Egress:      outbox.EgressPolicy{AllowLoopback: cfg.Outbound.AllowLoopback},
		InFlight:    outbox.DirectoryInFlight(cfg.Directory),
	}
	if err := dispOpts.Validate(); err != nil { // refuse bad delivery settings before serving anything
		return usageError{fmt.Sprintf("delivery settings (SOCIALRX_DELIVERY_TIMEOUT, SOCIALRX_DELIVERY_LEASE): %v", err)}
	}
	disp := outbox.NewDispatcher(store, outbox.WithSubscriptions(store, outbox.DirectoryEndpoints(cfg.Directory), secrets), dispOpts)

	ln, err := net.Listen("tcp", settings.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", settings.Addr, err)
	}
	m.addr = ln.Addr().String()
	// Every absolute URL socialrx writes is built on the public base URL, never on a request's Host or
	// X-Forwarded-* headers: SOCIALRX_BASE_URL, or this process's own address (fine for the demo on one machine).
	base, configured := settings.PublicBase(m.addr)
	if !configured && !(cfg.Demo && loopback(m.addr)) {
		log.Warn("SOCIALRX_BASE_URL is not set: absolute URLs (Location, Bundle links, Subscription notifications, the SMART token endpoint and the aud client assertions need) use "+base+"; set it to the URL GP systems reach socialrx at",
			"base_url", base)
	}
	srv, err := server.New(server.Options{
		Config: cfg, Store: store, Logger: log, Version: version, Registry: reg,
		MaxBodyBytes: settings.MaxBodyBytes, TokenKey: settings.TokenKey,
		BaseURL: base + "/fhir", CORSOrigins: settings.CORSOrigins,
		Ready:         m.ready,
		InboxSessions: referral.SessionPolicy{Idle: settings.InboxIdleTimeout, Max: settings.InboxSessionMax},
		Limits:        &settings.Limits, TrustedProxies: settings.Security.TrustedProxies,
		Auditor: m.audit,
		Secrets: secrets, SubscriptionOff: deliveries.Forget,
		MetricsToken: settings.Security.MetricsToken, NoMetricsRoute: settings.Security.MetricsAddr != "",
	})
	if err != nil {
		_ = ln.Close()
		return err
	}
	if err := m.serveMetrics(srv); err != nil {
		_ = ln.Close()
		return err
	}
	m.httpSrv = &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	// The background work outlives ctx: Close stops it, in order.
	bgCtx, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	m.stopBg = stopBg
	m.dispDone, m.sweepDone, m.beatDone, m.httpDone = make(chan struct{}), make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(m.dispDone)
		m.dispatcherRunning.Store(true)
		m.dispErr = disp.Run(bgCtx)
		m.dispatcherRunning.Store(false)
	}()
	go func() {
		defer close(m.sweepDone)
		_ = referral.OverdueSweeper{Store: store, Deadline: settings.AckDeadline, Logger: log, Directory: &cfg.Directory,
			Audit: m.audit}.Run(bgCtx)
	}()
	m.pruneDone = make(chan struct{})
	go func() {
		defer close(m.pruneDone)
		_ = referral.RetentionSweeper{Store: store, Retention: settings.Retention, Logger: log, Scrubbed: retained.Add}.Run(bgCtx)
	}()
	go func() {
		defer close(m.beatDone)
		_ = referral.HeartbeatSweeper{Store: store, Logger: log}.Run(bgCtx)
	}()
	go func() {
		defer close(m.httpDone)
		m.httpErr = m.httpSrv.Serve(ln)
	}()
	log.Info("listening", "addr", m.addr, "base_url", base, "database", redactedDB(settings.DatabaseURL),
		"config", cfg.Source, "version", version)
	return nil
}

// loopback reports whether a listen address (host:port) is on a loopback host.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// ready is the server's readiness check: the dispatcher must be running.
func (m *Main) ready(context.Context) error {
	if !m.dispatcherRunning.Load() {
		return errors.New("dispatcher not running")
	}
	return nil
}

// Wait blocks until ctx is done, then logs "shutting down" and returns nil, or until the service stops on its
// own (the HTTP server failed, or the dispatcher ended), then returns why. Call it between Run and Close.
func (m *Main) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		m.Logger.Info("shutting down")
		return nil
	case <-m.httpDone:
		return fmt.Errorf("http server: %w", m.httpErr)
	case <-m.dispDone:
		m.dispReported.Store(true)
		return fmt.Errorf("dispatcher stopped: %w", m.dispErr)
	}
}

// Close shuts the service down gracefully and closes the store. It stops taking requests and stops delivering
// at the same time, each with its own bound: in-flight requests get 15 s, after which their connections are
// closed; the dispatcher finishes or releases its in-flight deliveries within its shutdown timeout (anything it
// cannot release is leased again once the lease expires). It then waits for the sweepers and closes the
// store (a failure to close is logged). It returns what went wrong stopping the dispatcher. Close is safe to
// call more than once (later calls return the first result) and after a failed or missing Run.
func (m *Main) Close() error {
	m.closeOnce.Do(func() {
		if m.stopBg != nil {
			m.closeErr = m.shutdown()
		}
		if m.audit != nil {
			m.audit.Close()
		}
		if m.store != nil {
			if err := m.store.Close(); err != nil {
				m.Logger.Error("close database", "err", err)
			}
		}
	})
	return m.closeErr
}

// shutdown stops the HTTP server, the dispatcher and the sweepers that Run started (see Close).
func (m *Main) shutdown() error {
	// Stop taking requests and stop delivering at the same time, each with its own bound: a stalled upload
	// must not eat the dispatcher's time to finish or release its in-flight deliveries (which it does within
	// its ShutdownTimeout; anything it cannot release is re-leased after the lease expires).
	m.stopBg()
	httpStopped := make(chan struct{})
	go func() {
		defer close(httpStopped)
		shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := m.httpSrv.Shutdown(shutCtx); err != nil {
			m.Logger.Warn("http shutdown: closing connections still open", "err", err)
			_ = m.httpSrv.Close()
		}
	}()
	var err error
	if !m.dispReported.Load() {
		select {
		case <-m.dispDone:
			if m.dispErr != nil && !errors.Is(m.dispErr, context.Canceled) {
				m.Logger.Error("dispatcher", "err", m.dispErr)
				err = fmt.Errorf("dispatcher: %w", m.dispErr)
			}
		case <-time.After(outbox.DefaultShutdownTimeout + 5*time.Second):
			m.Logger.Error("dispatcher did not stop in time; its leases expire and other instances or the next start deliver")
			err = errors.New("dispatcher did not stop in time")
		}
	}
	<-m.sweepDone
	<-m.beatDone
	if m.pruneDone != nil {
		<-m.pruneDone
	}
	<-httpStopped
	if m.metricsSrv != nil {
		_ = m.metricsSrv.Close()
	}
	m.Logger.Info("stopped")
	return err
}

// redactedDB is the database URL fit for a log line: sqlite paths as they are, PostgreSQL as its backend name
// only (the URL may hold a password).
func redactedDB(u string) string {
	backend, target, err := config.ParseDatabaseURL(u)
	if err != nil || backend == "sqlite" {
		return u
	}
	_ = target
	return backend
}

// runMigrate creates or upgrades the schema.
func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	apply := settingsFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	settings, err := apply(getenv)
	if err != nil {
		return usageError{err.Error()}
	}
	backend, target, err := config.ParseDatabaseURL(settings.DatabaseURL)
	if err != nil {
		return usageError{err.Error()}
	}
	switch backend {
	case "sqlite":
		if err := sqlite.Migrate(ctx, target); err != nil {
			return err
		}
	case "postgres":
		if err := postgres.Migrate(ctx, target); err != nil {
			return err
		}
	default:
		return fmt.Errorf("the %s backend is not available in this build", backend)
	}
	fmt.Fprintln(stdout, "schema up to date:", redactedDB(settings.DatabaseURL))
	return nil
}
