package server

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fault"
)

// TestHoldBack: a 429 is held back for at most its Retry-After and the configured delay, not at all for other
// refusals, never once maxDelayed refusals are already held (so holding costs bounded memory), and no longer
// than the client waits.
func TestHoldBack(t *testing.T) {
	t.Parallel()
	l := newLimiter(config.Limits{RefusalDelay: time.Hour}, nil, nil)
	limited := fault.WithRetryAfter(fault.New(fault.RateLimited, codeRateLimited, "", "slow down"), time.Hour)
	done := func(what string, f func()) {
		t.Helper()
		ch := make(chan struct{})
		go func() { f(); close(ch) }()
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: holdBack did not return", what)
		}
	}
	done("a refusal of another kind", func() { l.holdBack(context.Background(), fault.New(fault.Unavailable, "x", "", "y")) })
	done("a Retry-After of zero", func() { l.holdBack(context.Background(), fault.WithRetryAfter(limited, 0)) })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done("a client that went away", func() { l.holdBack(ctx, limited) })
	for range maxDelayed {
		l.delayed <- struct{}{}
	}
	done("with maxDelayed refusals held already", func() { l.holdBack(context.Background(), limited) })
	if n := len(l.delayed); n != maxDelayed {
		t.Errorf("%d held after a refusal answered at once, want %d", n, maxDelayed)
	}
	off := newLimiter(config.Limits{}, nil, nil)
	done("no delay configured", func() { off.holdBack(context.Background(), limited) })
}

// TestClientAddr: the connection's address is the client's, unless it is a trusted proxy: then the last
// X-Forwarded-For hop that is not one (a client cannot choose its own address by sending the header).
func TestClientAddr(t *testing.T) {
	t.Parallel()
	l := newLimiter(config.Limits{}, nil, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	for _, tc := range []struct {
		remote, xff, want string
	}{
		{"203.0.113.9:5000", "", "203.0.113.9"},
		{"203.0.113.9:5000", "198.51.100.1", "203.0.113.9"}, // not from a proxy: the header is ignored
		{"10.0.0.2:5000", "198.51.100.1", "198.51.100.1"},
		{"10.0.0.2:5000", "1.2.3.4, 198.51.100.1, 10.0.0.3", "198.51.100.1"}, // a client-sent first hop is ignored
		{"10.0.0.2:5000", "", "10.0.0.2"},
		{"10.0.0.2:5000", "garbage", "10.0.0.2"},
		{"[::ffff:203.0.113.9]:5000", "", "203.0.113.9"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := l.clientAddr(r); got.String() != tc.want {
			t.Errorf("%s, X-Forwarded-For %q: %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
}

// TestAddrBucketsBounded: per-address buckets never exceed their maximum, however many addresses come.
func TestAddrBucketsBounded(t *testing.T) {
	t.Parallel()
	ab := newAddrBuckets(config.Rate{PerSecond: 1, Burst: 2}, 100)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		ab.take(a, now.Add(time.Duration(i)*time.Millisecond))
		if len(ab.m) > 100 {
			t.Fatalf("%d buckets after %d addresses", len(ab.m), i+1)
		}
	}
	// An IPv6 address counts by its /64.
	a1, a2 := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	ab2 := newAddrBuckets(config.Rate{PerSecond: 0.001, Burst: 1}, 100)
	if _, ok := ab2.take(a1, now); !ok {
		t.Fatal("first take")
	}
	if _, ok := ab2.take(a2, now); ok {
		t.Error("another address of the same /64 must share the bucket")
	}
}
