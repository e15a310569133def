package server_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/postgres"
	"github.com/socialrx/socialrx/outbox/postgres/pgtest"
	"github.com/socialrx/socialrx/outbox/sqlite"
	"github.com/socialrx/socialrx/server"
)

// backend opens a fresh store of one kind for a test.
type backend struct {
	name string
	open func(t *testing.T) outbox.Store
}

// backends are both stores: a real SQLite file and a fresh schema of the test PostgreSQL (skipped without
// one, failed when CI is set: pgtest).
func backends() []backend {
	return []backend{
		{"sqlite", func(t *testing.T) outbox.Store {
			st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "socialrx.db"), sqlite.Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return st
		}},
		{"postgres", func(t *testing.T) outbox.Store {
			st, err := postgres.Open(context.Background(), pgtest.FreshSchema(t), postgres.Options{Logger: slog.New(slog.DiscardHandler),
				MaxConns: 4, NoListen: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return st
		}},
	}
}

// logSink collects log lines (safe for the server's goroutines).
type logSink struct {
	mu    sync.Mutex
	lines []byte
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, p...)
	return len(p), nil
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.lines)
}

// hostile is a harness for the issue 9 tests: a real server on loopback over st with the demo directory,
// limits lim (nil: none) that run on a clock that stands still unless the test moves it (no bucket refills
// behind a test's back), and its log.
type hostile struct {
	*harness
	limitNow *atomic.Int64 // unix nanoseconds of the limits' clock
	log      *logSink
	srv      *server.Server
}

func newHostile(t *testing.T, st outbox.Store, lim *config.Limits, mod func(*server.Options)) *hostile {
	t.Helper()
	cfg, err := config.LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	h := &hostile{harness: &harness{t: t, store: st, clock: &atomic.Int64{}, cfg: cfg}, limitNow: &atomic.Int64{}, log: &logSink{}}
	h.clock.Store(time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC).UnixMicro())
	h.limitNow.Store(time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC).UnixNano())
	// The server's public base URL is configured (never a request's Host): its own loopback address.
	ts := httptest.NewUnstartedServer(nil)
	h.url = "http://" + ts.Listener.Addr().String()
	o := server.Options{Config: cfg, Store: st, Version: "test", Limits: lim, BaseURL: h.url + "/fhir",
		Logger:     slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Clock:      func() time.Time { return time.UnixMicro(h.clock.Add(1000)).UTC() },
		LimitClock: func() time.Time { return time.Unix(0, h.limitNow.Load()) }}
	if mod != nil {
		mod(&o)
	}
	srv, err := server.New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	ts.Config.Handler = srv.Handler()
	ts.Start()
	t.Cleanup(ts.Close)
	return h
}

// advance moves the limits' clock.
func (h *hostile) advance(d time.Duration) { h.limitNow.Add(int64(d)) }
