package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestWaitServing holds the drain's clock until the last process answers /healthz: one answers at once, the
// other refuses (503) for its first calls, as a process still opening its store would not answer at all.
func TestWaitServing(t *testing.T) {
	var calls atomic.Int64
	var readyAt atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			t.Errorf("asked for %s, want /healthz", r.URL.Path)
		}
		if calls.Add(1) <= 5 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		readyAt.CompareAndSwap(0, time.Now().UnixNano())
	}))
	defer slow.Close()
	fast := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer fast.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	sp := &serveProcs{ctx: ctx, cancel: cancel, addrs: []string{hostPort(fast.URL), hostPort(slow.URL)}}
	got, err := sp.waitServing(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 6 {
		t.Errorf("the slow process was asked %d times, want 6 (5 refusals, then served)", n)
	}
	if at := time.Unix(0, readyAt.Load()); got.Before(at) {
		t.Errorf("serving from %v, before the slow process first answered 200 (%v)", got, at)
	}
}

// TestWaitServingGivesUp reports a process that never serves, naming it, once the wait runs out.
func TestWaitServingGivesUp(t *testing.T) {
	never := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer never.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	sp := &serveProcs{ctx: ctx, cancel: cancel, addrs: []string{hostPort(never.URL)}}
	_, err := sp.waitServing(100 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "serve process 1 not serving") {
		t.Fatalf("err = %v, want serve process 1 not serving", err)
	}
}

// TestWaitServingSeesAnExit says a process exited, not that the wait ran out, when one exits before serving
// (startServe cancels the processes' context as soon as any exits).
func TestWaitServingSeesAnExit(t *testing.T) {
	never := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer never.Close()
	ctx, cancel := context.WithCancel(t.Context())
	sp := &serveProcs{ctx: ctx, cancel: cancel, addrs: []string{hostPort(never.URL)}}
	time.AfterFunc(20*time.Millisecond, cancel)
	_, err := sp.waitServing(time.Minute)
	if err == nil || !strings.Contains(err.Error(), "a process exited") {
		t.Fatalf("err = %v, want a process exited", err)
	}
}

// TestArrivedBefore counts the first arrivals before a moment: those the serve drain leaves out of its rate.
func TestArrivedBefore(t *testing.T) {
	s := newSink(3)
	t0 := time.Now()
	s.arrived["a"], s.arrived["b"], s.arrived["c"] = t0.Add(-time.Second), t0, t0.Add(time.Millisecond)
	for _, c := range []struct {
		at   time.Time
		want int
	}{{t0.Add(-2 * time.Second), 0}, {t0, 1}, {t0.Add(time.Microsecond), 2}, {t0.Add(time.Second), 3}} {
		if got := s.arrivedBefore(c.at); got != c.want {
			t.Errorf("arrivedBefore(t0%+v) = %d, want %d", c.at.Sub(t0), got, c.want)
		}
	}
}

// TestShareOfCores gives each of n serve processes its share of this machine's cores, at least one.
func TestShareOfCores(t *testing.T) {
	cpus := runtime.NumCPU()
	for _, c := range []struct{ n, want int }{{0, cpus}, {1, cpus}, {cpus, 1}, {cpus + 1, 1}, {2, max(cpus/2, 1)}} {
		if got := shareOfCores(c.n); got != c.want {
			t.Errorf("shareOfCores(%d) = %d on %d cores, want %d", c.n, got, cpus, c.want)
		}
	}
}

// hostPort is a test server's URL without its scheme.
func hostPort(url string) string {
	return strings.TrimPrefix(url, "http://")
}
