package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/server"
)

// demoFailsClosed refuses to serve the embedded demo configuration, whose tokens are published in the
// README, on anything but a loopback address, unless SOCIALRX_DEMO_PUBLIC says the operator means it (then
// it warns loudly).
func demoFailsClosed(s config.Settings, cfg *config.Config, log *slog.Logger) error {
	if !cfg.Demo || loopbackAddr(s.Addr) {
		return nil
	}
	if !s.Security.DemoPublic {
		return usageError{fmt.Sprintf("SOCIALRX_ADDR %q is not a loopback address, and without SOCIALRX_CONFIG socialrx runs the embedded DEMO "+
			"directory whose tokens are published: anyone who reaches it could post and read referrals. Set SOCIALRX_CONFIG to your directory "+
			"file, listen on 127.0.0.1, or set SOCIALRX_DEMO_PUBLIC=1 if you really mean to expose the demo", s.Addr)}
	}
	log.Warn("DEMO CONFIGURATION EXPOSED BEYOND THIS MACHINE (SOCIALRX_DEMO_PUBLIC): its tokens are published in the README; anyone who reaches "+
		s.Addr+" can post and read referrals. Never put real patient data here.", "addr", s.Addr)
	return nil
}

// loopbackAddr reports whether a listen address (host:port) binds loopback only. An empty host (":8080")
// binds every interface.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// keyring builds the keyring that seals stored credentials (SOCIALRX_SECRET_KEY, SOCIALRX_SECRET_KEY_PREVIOUS).
// Without a key: the demo gets a random key of this process (what it seals does not survive a restart), a real
// directory none (Subscriptions with channel.header are refused), each with a warning.
func keyring(s config.Settings, cfg *config.Config, log *slog.Logger) (*outbox.Keyring, error) {
	if len(s.Security.SecretKey) > 0 {
		return outbox.NewKeyring(s.Security.SecretKey, s.Security.PreviousSecretKeys...)
	}
	if cfg.Demo {
		log.Warn("SOCIALRX_SECRET_KEY is not set: the demo seals Subscription channel.header values with a random key of this process; they do not survive a restart")
		return outbox.RandomKeyring()
	}
	log.Warn("SOCIALRX_SECRET_KEY is not set: Subscriptions with channel.header (the credentials of GP endpoints) are refused until it is")
	return nil, nil
}

// serveMetrics starts /metrics on its own listener when SOCIALRX_METRICS_ADDR is set (the API listener then
// has none), so that it can be bound where only the scraper reaches.
func (m *Main) serveMetrics(srv *server.Server) error {
	addr := m.Settings.Security.MetricsAddr
	if addr == "" {
		if m.Settings.Security.MetricsToken == "" && !m.Config.Demo {
			m.Logger.Warn("/metrics is open on the API listener: set SOCIALRX_METRICS_TOKEN or SOCIALRX_METRICS_ADDR to protect it")
		}
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on SOCIALRX_METRICS_ADDR %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", srv.MetricsHandler())
	m.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second}
	m.metricsAddr = ln.Addr().String()
	go func() {
		if err := m.metricsSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("metrics listener", "err", err)
		}
	}()
	m.Logger.Info("metrics listening", "addr", m.metricsAddr)
	return nil
}

// MetricsAddr is where /metrics listens on its own (SOCIALRX_METRICS_ADDR), or "".
func (m *Main) MetricsAddr() string { return m.metricsAddr }
