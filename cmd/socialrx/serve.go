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
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/postgres"
	"github.com/socialrx/socialrx/outbox/sqlite"
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
		st, err := postgres.Open(ctx, target, postgres.Options{Logger: log, Notify: outbox.RenderNotification})
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

// runServe runs the service until ctx is cancelled (SIGINT/SIGTERM), then shuts down gracefully: stop taking
// requests, let in-flight requests and deliveries finish (bounded), release unfinished deliveries, close the
// database.
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
	cfg, err := loadConfig(settings, log)
	if err != nil {
		return err
	}
	if len(settings.TokenKey) == 0 && slices.ContainsFunc(cfg.Clients, func(c config.Client) bool { return len(c.JWKS) > 0 }) {
		log.Warn("SOCIALRX_TOKEN_KEY is not set: SMART access tokens are signed with a random key and work only on this instance until it restarts")
	}
	store, err := openStore(ctx, settings, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("close database", "err", err)
		}
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var dispatcherRunning atomic.Bool
	srv, err := server.New(server.Options{
		Config: cfg, Store: store, Logger: log, Version: version, Registry: reg,
		MaxBodyBytes: settings.MaxBodyBytes, TokenKey: settings.TokenKey,
		Ready: func(context.Context) error {
			if !dispatcherRunning.Load() {
				return errors.New("dispatcher not running")
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	obs, err := server.NewDeliveryMetrics(reg)
	if err != nil {
		return err
	}
	dispOpts := outbox.DispatcherOptions{
		Logger:      log,
		Timeout:     settings.DeliveryTimeout,
		RetryBudget: settings.RetryBudget,
		Lease:       settings.DeliveryLease,
		Version:     version,
		Observer:    obs,
	}
	if err := dispOpts.Validate(); err != nil { // refuse bad delivery settings before serving anything
		return usageError{fmt.Sprintf("delivery settings (SOCIALRX_DELIVERY_TIMEOUT, SOCIALRX_DELIVERY_LEASE): %v", err)}
	}
	disp := outbox.NewDispatcher(store, outbox.WithSubscriptions(store, outbox.DirectoryEndpoints(cfg.Directory)), dispOpts)

	ln, err := net.Listen("tcp", settings.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", settings.Addr, err)
	}
	httpSrv := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	dispCtx, stopDisp := context.WithCancel(context.WithoutCancel(ctx))
	dispDone := make(chan error, 1)
	go func() {
		dispatcherRunning.Store(true)
		dispDone <- disp.Run(dispCtx)
		dispatcherRunning.Store(false)
	}()
	sweepDone := make(chan error, 1)
	go func() {
		sweepDone <- outbox.OverdueSweeper{Store: store, Deadline: settings.AckDeadline, Logger: log}.Run(dispCtx)
	}()
	httpDone := make(chan error, 1)
	go func() { httpDone <- httpSrv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "database", redactedDB(settings.DatabaseURL),
		"config", cfg.Source, "version", version)

	var runErr error
	dispStopped := false
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-httpDone:
		runErr = fmt.Errorf("http server: %w", err)
	case err := <-dispDone:
		dispStopped = true
		runErr = fmt.Errorf("dispatcher stopped: %w", err)
	}
	// Stop taking requests and stop delivering at the same time, each with its own bound: a stalled upload
	// must not eat the dispatcher's time to finish or release its in-flight deliveries (which it does within
	// its ShutdownTimeout; anything it cannot release is re-leased after the lease expires).
	stopDisp()
	httpStopped := make(chan struct{})
	go func() {
		defer close(httpStopped)
		shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := httpSrv.Shutdown(shutCtx); err != nil {
			log.Warn("http shutdown: closing connections still open", "err", err)
			_ = httpSrv.Close()
		}
	}()
	if !dispStopped {
		select {
		case err := <-dispDone:
			if err != nil && !errors.Is(err, context.Canceled) {
				log.Error("dispatcher", "err", err)
				runErr = errors.Join(runErr, fmt.Errorf("dispatcher: %w", err))
			}
		case <-time.After(outbox.DefaultShutdownTimeout + 5*time.Second):
			log.Error("dispatcher did not stop in time; its leases expire and other instances or the next start deliver")
			runErr = errors.Join(runErr, errors.New("dispatcher did not stop in time"))
		}
	}
	<-sweepDone
	<-httpStopped
	log.Info("stopped")
	return runErr
}

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
