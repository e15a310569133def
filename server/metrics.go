package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// httpMetrics holds the server's Prometheus collectors. Labels carry route names, never ids or patient data.
type httpMetrics struct {
	registry  *prometheus.Registry
	requests  *prometheus.CounterVec
	durations *prometheus.HistogramVec
	referrals *prometheus.CounterVec
}

func newHTTPMetrics(reg *prometheus.Registry, op referral.Operator) (*httpMetrics, error) {
	m := &httpMetrics{
		registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "socialrx_http_requests_total", Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "socialrx_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		referrals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "socialrx_referrals_total", Help: "Referral submissions by outcome (created, resent, rejected).",
		}, []string{"outcome"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.durations, m.referrals, &outboxCollector{op: op}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *httpMetrics) observe(route, method string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	if d > 0 {
		m.durations.WithLabelValues(route).Observe(d.Seconds())
	}
}

// statusRecorder captures the status code a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// instrument counts and times requests of one named route, and logs each: a request that ends in 4xx or 5xx
// at info (request id, route, method, status, client), so that the id a client quotes from an error is in the
// default log; the others at debug. The line holds no path, query or body (they may carry patient data), and
// no token.
func (s *Server) instrument(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		note := &web.LogNote{}
		next.ServeHTTP(rec, r.WithContext(web.WithLogNote(r.Context(), note)))
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		s.metrics.observe(route, r.Method, rec.status, time.Since(start))
		s.logRequest(r, route, rec.status, note.ClientID, time.Since(start))
	})
}

// logRequest writes a request's log line (see instrument).
func (s *Server) logRequest(r *http.Request, route string, status int, client string, d time.Duration) {
	level := slog.LevelDebug
	if status >= 400 {
		level = slog.LevelInfo
	}
	if client == "" {
		client = "-"
	}
	attrs := []any{"request_id", web.RequestID(r.Context()), "route", route,
		"method", r.Method, "status", status, "client", client, "duration", d}
	if cid := web.ClientRequestID(r.Context()); cid != "" {
		attrs = append(attrs, "client_request_id", cid)
	}
	s.log.Log(r.Context(), level, "request", attrs...)
}

// outboxCollector reports outbox depth at scrape time, straight from the store.
type outboxCollector struct{ op referral.Operator }

var (
	descMessages = prometheus.NewDesc("socialrx_outbox_messages", "Outbox messages by state (discarded: retired by an engineer).", []string{"state"}, nil)
	descOldest   = prometheus.NewDesc("socialrx_outbox_oldest_pending_age_seconds",
		"Age of the oldest pending outbox message (0 when none).", nil, nil)
	descPaused = prometheus.NewDesc("socialrx_outbox_destination_paused",
		"1 for each paused destination (its messages are held pending).", []string{"destination"}, nil)
	descPausedCount = prometheus.NewDesc("socialrx_outbox_paused_destinations", "Number of paused destinations.", nil, nil)
	descWaiting     = prometheus.NewDesc("socialrx_inbox_referrals_waiting",
		"Referrals still requested (not acknowledged) per community service; every pull-only service is listed.",
		[]string{"service", "delivery"}, nil)
	descOverdue = prometheus.NewDesc("socialrx_inbox_referrals_overdue",
		"Waiting referrals past SOCIALRX_ACK_DEADLINE (businessStatus overdue) per community service.", []string{"service", "delivery"}, nil)
	descOldestWait = prometheus.NewDesc("socialrx_inbox_oldest_wait_seconds",
		"How long the oldest waiting referral of each community service has waited (0 when none).", []string{"service", "delivery"}, nil)
)

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMessages, descOldest, descPaused, descPausedCount, descWaiting, descOverdue, descOldestWait} {
		ch <- d
	}
}

func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, oldest, err := c.op.Counts(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descMessages, err)
		return
	}
	for _, st := range outbox.AllStates() {
		ch <- prometheus.MustNewConstMetric(descMessages, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
	age := 0.0
	if !oldest.IsZero() {
		age = time.Since(oldest).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, age)
	pauses, err := c.op.Pauses(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descPaused, err)
		return
	}
	for _, p := range pauses {
		ch <- prometheus.MustNewConstMetric(descPaused, prometheus.GaugeValue, 1, p.Destination.String())
	}
	ch <- prometheus.MustNewConstMetric(descPausedCount, prometheus.GaugeValue, float64(len(pauses)))
	inboxes, err := c.op.Inboxes(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descWaiting, err)
		return
	}
	for _, in := range inboxes {
		delivery := "webhook"
		if in.PullOnly {
			delivery = "pull"
		}
		ch <- prometheus.MustNewConstMetric(descWaiting, prometheus.GaugeValue, float64(in.Waiting), in.ServiceID, delivery)
		ch <- prometheus.MustNewConstMetric(descOverdue, prometheus.GaugeValue, float64(in.Overdue), in.ServiceID, delivery)
		ch <- prometheus.MustNewConstMetric(descOldestWait, prometheus.GaugeValue, in.OldestWait.Seconds(), in.ServiceID, delivery)
	}
}

// MetricsHandler serves /metrics in the Prometheus text format; with a metrics token (Options.MetricsToken)
// only to a scraper that sends it as a bearer token (401 otherwise, compared in constant time). Serve it on the
// API listener (the default) or on its own (Options.NoMetricsRoute and SOCIALRX_METRICS_ADDR).
func (s *Server) MetricsHandler() http.Handler {
	h := promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{ErrorLog: nil})
	if s.metricsToken == "" {
		return h
	}
	want := sha256.Sum256([]byte(s.metricsToken))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		got := sha256.Sum256([]byte(strings.TrimSpace(token)))
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="socialrx metrics"`)
			web.WriteJSON(w, s.log, http.StatusUnauthorized, web.APIError{Error: "unauthorized",
				Message: "send Authorization: Bearer <the metrics token (SOCIALRX_METRICS_TOKEN)>", RequestID: web.RequestID(r.Context())})
			return
		}
		h.ServeHTTP(w, r)
	})
}
