package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fault"
)

// Rate and concurrency limits (README "Security", config.Limits): each authenticated client has a token bucket
// by its role; the token endpoint and failed authentications have one per client address; requests that carry
// a body take a slot, in all and per client, from before the body is read until the answer is written. What is
// refused gets 429 (the client's own limit) or 503 (everyone's), with Retry-After, in the API's error format,
// before any body is read: a flood costs its sender, not the server's memory or the other clients.

// Codes of the limit refusals.
const (
	codeRateLimited  fault.Code = "rate_limited"
	codeBusy         fault.Code = "too_many_concurrent_requests"
	codeServerBusy   fault.Code = "server_busy"
	codeAuthThrottle fault.Code = "too_many_failed_authentications"
)

// maxDelayed bounds the refusals held back at once (Limits.RefusalDelay): beyond it, refusals are answered at
// once, so that holding them never costs more than a few megabytes of connections.
const maxDelayed = 512

// maxAddrBuckets bounds the per-address buckets kept at once (an attacker with many addresses cannot grow
// the map without bound: full buckets are forgotten first, then the least recently seen).
const maxAddrBuckets = 16384

// limiter holds the server's limits. It is safe for concurrent use.
type limiter struct {
	lim     config.Limits
	now     func() time.Time // real time, or a test's
	trusted []netip.Prefix

	mu        sync.Mutex
	clients   map[string]*rate.Limiter // by client id (bounded by the directory)
	bodyBytes map[string]*rate.Limiter // body bytes, by client key (bounded: clients, and addresses of public routes evicted with addrBuckets' rule)
	bodies    map[string]int           // requests with a body in progress, by client key
	inBody    int                      // in all

	tokens   *addrBuckets // the token endpoint, per client address
	failures *addrBuckets // failed authentications, per client address

	delayed chan struct{} // the refusals being held back (Limits.RefusalDelay), at most maxDelayed
}

func newLimiter(lim config.Limits, now func() time.Time, trusted []netip.Prefix) *limiter {
	if now == nil {
		now = time.Now
	}
	return &limiter{
		lim: lim, now: now, trusted: trusted,
		clients:   map[string]*rate.Limiter{},
		bodyBytes: map[string]*rate.Limiter{},
		bodies:    map[string]int{},
		tokens:    newAddrBuckets(lim.Token, maxAddrBuckets),
		failures:  newAddrBuckets(lim.AuthFailures, maxAddrBuckets),
		delayed:   make(chan struct{}, maxDelayed),
	}
}

// holdBack waits, before a 429 is answered, for Limits.RefusalDelay or the refusal's Retry-After as the client
// reads it (whole seconds, at least one), whichever is shorter, or until the client goes away; when maxDelayed
// refusals are already held, it does not wait.
func (l *limiter) holdBack(ctx context.Context, err error) {
	d := min(l.lim.RefusalDelay, time.Duration(fault.RetryAfterSeconds(err, time.Second))*time.Second)
	if ra, ok := fault.RetryAfterOf(err); ok && ra <= 0 {
		d = 0
	}
	if d <= 0 || fault.KindOf(err) != fault.RateLimited {
		return
	}
	select {
	case l.delayed <- struct{}{}:
	default:
		return
	}
	defer func() { <-l.delayed }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// bucket is a new token bucket for r (nil for no limit).
func bucket(r config.Rate) *rate.Limiter {
	if r.Off() {
		return nil
	}
	return rate.NewLimiter(rate.Limit(r.PerSecond), max(r.Burst, 1))
}

// take takes a token from b at now, or returns how long until one is there.
func take(b *rate.Limiter, now time.Time) (time.Duration, bool) {
	if b == nil {
		return 0, true
	}
	res := b.ReserveN(now, 1)
	if !res.OK() {
		return time.Second, false
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}

// allowClient takes one request from cl's bucket (its role's rate): fault.RateLimited with the delay when
// it is empty.
func (l *limiter) allowClient(cl config.Client) error {
	r, ok := l.lim.Role[cl.Role]
	if !ok || r.Off() {
		return nil
	}
	l.mu.Lock()
	b, ok := l.clients[cl.ID]
	if !ok {
		b = bucket(r)
		l.clients[cl.ID] = b
	}
	l.mu.Unlock()
	if d, ok := take(b, l.now()); !ok {
		return fault.WithRetryAfter(fault.New(fault.RateLimited, codeRateLimited, "",
			fmt.Sprintf("too many requests from this client (a %s client may make %s a second, %d at once); retry after the Retry-After delay",
				cl.Role, trimFloat(r.PerSecond), r.Burst)), d)
	}
	return nil
}

// allowToken takes one token request from the client address's bucket.
func (l *limiter) allowToken(addr netip.Addr) error {
	if d, ok := l.tokens.take(addr, l.now()); !ok {
		return fault.WithRetryAfter(fault.New(fault.RateLimited, codeRateLimited, "",
			"too many token requests from this address; retry after the Retry-After delay"), d)
	}
	return nil
}

// authFailed counts a failed authentication from addr: nil while the address has failures to spare (the
// caller answers 401 and logs it), else fault.RateLimited (429: the caller answers that, without a log line
// each).
func (l *limiter) authFailed(addr netip.Addr) error {
	if d, ok := l.failures.take(addr, l.now()); !ok {
		return fault.WithRetryAfter(fault.New(fault.RateLimited, codeAuthThrottle, "",
			"too many failed authentications from this address; check the token, then retry after the Retry-After delay"), d)
	}
	return nil
}

// takeBodyBytes takes n body bytes from key's bucket (config.Limits.BodyBytes): fault.RateLimited with the delay
// when the client has sent too much too fast.
func (l *limiter) takeBodyBytes(key string, n int64) error {
	r := l.lim.BodyBytes
	if r.Off() {
		return nil
	}
	n = min(max(n, 1), int64(r.Burst))
	l.mu.Lock()
	b, ok := l.bodyBytes[key]
	if !ok {
		if len(l.bodyBytes) >= maxAddrBuckets {
			clear(l.bodyBytes) // only public routes' addresses can grow it: forgetting them resets their budget
		}
		b = bucket(r)
		l.bodyBytes[key] = b
	}
	l.mu.Unlock()
	now := l.now()
	res := b.ReserveN(now, int(n))
	if !res.OK() {
		return fault.New(fault.RateLimited, codeRateLimited, "", "the request body is larger than this client may send at once")
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return fault.WithRetryAfter(fault.New(fault.RateLimited, codeRateLimited, "",
			fmt.Sprintf("this client sent more request bodies than it may (%s bytes a second, %d at once); retry after the Retry-After delay",
				trimFloat(r.PerSecond), r.Burst)), d)
	}
	return nil
}

// enterBody takes a body slot for key (a client id, or an address for public routes): fault.RateLimited when
// key has BodiesPerClient in progress, fault.Unavailable when everyone together has Bodies. The caller
// calls release when the answer is written.
func (l *limiter) enterBody(key string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.lim.BodiesPerClient; n > 0 && l.bodies[key] >= n {
		return nil, fault.WithRetryAfter(fault.New(fault.RateLimited, codeBusy, "",
			fmt.Sprintf("this client already has %d requests with a body in progress, the most it may; retry when one has finished", n)), time.Second)
	}
	if n := l.lim.Bodies; n > 0 && l.inBody >= n {
		return nil, fault.WithRetryAfter(fault.New(fault.Unavailable, codeServerBusy, "",
			"the server is busy with other clients' requests; retry after the Retry-After delay"), time.Second)
	}
	l.bodies[key]++
	l.inBody++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.bodies[key]--; l.bodies[key] <= 0 {
			delete(l.bodies, key)
		}
		l.inBody--
	}, nil
}

// clientAddr is the request's client address: the connection's, or, when that is a trusted proxy, the last
// address in X-Forwarded-For that is not one (so a client cannot choose its own address by sending the header).
func (l *limiter) clientAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	addr = addr.Unmap()
	if !l.isTrusted(addr) {
		return addr
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return addr // a garbled hop: trust no further than the proxy
		}
		a = a.Unmap()
		if !l.isTrusted(a) {
			return a
		}
		addr = a
	}
	return addr
}

func (l *limiter) isTrusted(a netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// addrBuckets are token buckets per client address (an IPv6 address counts by its /64, which one
// subscriber usually holds whole), at most max of them.
type addrBuckets struct {
	r   config.Rate
	max int
	mu  sync.Mutex
	m   map[netip.Prefix]*addrBucket
}

type addrBucket struct {
	b    *rate.Limiter
	seen time.Time
}

func newAddrBuckets(r config.Rate, max int) *addrBuckets {
	return &addrBuckets{r: r, max: max, m: map[netip.Prefix]*addrBucket{}}
}

// addrKey is the bucket key of a: the address itself (IPv4), or its /64 (IPv6).
func addrKey(a netip.Addr) netip.Prefix {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

// take takes a token from addr's bucket at now.
func (ab *addrBuckets) take(addr netip.Addr, now time.Time) (time.Duration, bool) {
	if ab.r.Off() {
		return 0, true
	}
	key := addrKey(addr)
	ab.mu.Lock()
	defer ab.mu.Unlock()
	e, ok := ab.m[key]
	if !ok {
		if len(ab.m) >= ab.max {
			ab.evict(now)
		}
		e = &addrBucket{b: bucket(ab.r)}
		ab.m[key] = e
	}
	e.seen = now
	return take(e.b, now)
}

// evict forgets full buckets (as good as new), and if that is not enough the least recently seen half.
func (ab *addrBuckets) evict(now time.Time) {
	for k, e := range ab.m {
		if e.b.TokensAt(now) >= float64(ab.r.Burst) {
			delete(ab.m, k)
		}
	}
	if len(ab.m) < ab.max {
		return
	}
	seen := make([]time.Time, 0, len(ab.m))
	for _, e := range ab.m {
		seen = append(seen, e.seen)
	}
	slices.SortFunc(seen, time.Time.Compare)
	cutoff := seen[len(seen)/2]
	for k, e := range ab.m {
		if !e.seen.After(cutoff) {
			delete(ab.m, k)
		}
	}
}

// trimFloat renders a rate without trailing zeros.
func trimFloat(f float64) string {
	s := fmt.Sprintf("%.3f", f)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}
