package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/outbox"
)

func TestCheckAddr(t *testing.T) {
	t.Parallel()
	strict, loop := outbox.EgressPolicy{}, outbox.EgressPolicy{AllowLoopback: true}
	for _, tc := range []struct {
		addr          string
		strict, loopk bool // allowed by the strict policy, by the loopback-allowing one
	}{
		{"93.184.216.34", true, true},
		{"2606:4700:4700::1111", true, true},
		{"127.0.0.1", false, true},
		{"127.8.9.10", false, true},
		{"::1", false, true},
		{"::ffff:127.0.0.1", false, true}, // IPv4-mapped: judged as 127.0.0.1
		{"0.0.0.0", false, false},
		{"::", false, false},
		{"10.1.2.3", false, false},
		{"172.16.0.1", false, false},
		{"192.168.1.1", false, false},
		{"::ffff:192.168.1.1", false, false},
		{"fc00::1", false, false},
		{"fd00:ec2::254", false, false}, // a cloud metadata service over IPv6
		{"169.254.169.254", false, false},
		{"::ffff:169.254.169.254", false, false},
		{"169.254.1.1", false, false},
		{"fe80::1", false, false},
		{"100.64.0.1", false, false}, // CGNAT
		{"100.127.255.254", false, false},
		{"224.0.0.1", false, false},
		{"ff02::1", false, false},
		{"255.255.255.255", false, false},
		{"240.0.0.1", false, false},
		{"192.0.2.10", false, false},
		{"198.18.0.1", false, false},
		{"0.1.2.3", false, false},
		{"64:ff9b::7f00:1", false, true},     // NAT64 of 127.0.0.1
		{"64:ff9b::a9fe:a9fe", false, false}, // NAT64 of 169.254.169.254
		{"64:ff9b::5db8:d822", true, true},   // NAT64 of a public address
		{"2002:a00:1::1", false, false},      // 6to4 of 10.0.0.1
		{"2001:db8::1", false, false},
		{"2001::1", false, false}, // Teredo
		{"::127.0.0.1", false, false},
	} {
		a := netip.MustParseAddr(tc.addr)
		for _, c := range []struct {
			name string
			p    outbox.EgressPolicy
			want bool
		}{{"strict", strict, tc.strict}, {"loopback allowed", loop, tc.loopk}} {
			err := c.p.CheckAddr(a)
			if (err == nil) != c.want {
				t.Errorf("%s, %s: %v, want allowed=%v", tc.addr, c.name, err, c.want)
			}
			if err != nil && !errors.Is(err, outbox.ErrEgressRefused) {
				t.Errorf("%s: %v does not match ErrEgressRefused", tc.addr, err)
			}
		}
	}
}

// fakeDNS is a resolver with fixed answers (the names of these tests resolve nowhere else).
type fakeDNS map[string][]string

func (f fakeDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	as, ok := f[host]
	if !ok {
		return nil, fmt.Errorf("lookup %s: no such host", host)
	}
	out := make([]netip.Addr, len(as))
	for i, a := range as {
		out[i] = netip.MustParseAddr(a)
	}
	return out, nil
}

// TestEgressRefusesInternalAddresses: a client-supplied endpoint (Guarded) whose name resolves to this
// machine, a private address, a cloud metadata address (including IPv4-mapped and NAT64 spellings), or a mix
// of public and internal answers is never connected to: the message goes dead at once with the policy's
// reason, and the internal receiver (a real server on loopback, reachable as the positive control shows)
// never sees a request. Plain http is refused too, except to a loopback host the directory allows.
func TestEgressRefusesInternalAddresses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, e.clock.Now, nil)
	port := strings.TrimPrefix(rc.URL, "http://127.0.0.1:")
	dns := fakeDNS{
		"gp-internal.example":  {"127.0.0.1"},
		"metadata.example":     {"169.254.169.254"},
		"private.example":      {"10.0.0.7"},
		"mapped.example":       {"::ffff:127.0.0.1"},
		"nat64.example":        {"64:ff9b::a9fe:a9fe"},
		"mixed.example":        {"93.184.216.34", "127.0.0.1"},
		"metadata-v6.example":  {"fd00:ec2::254"},
		"localhost.gp.example": {"::1"},
	}
	var endpoints []string
	for name := range dns {
		endpoints = append(endpoints, "https://"+name+":"+port+"/hook")
	}
	endpoints = append(endpoints,
		"https://127.0.0.1:"+port+"/hook",             // a loopback literal
		"http://gp-internal.example:"+port+"/hook",    // plain http to a name
		"http://127.0.0.1:"+port+"/admin/v1/replay",   // plain http to loopback, not allowed here
		"https://[::ffff:7f00:1]:"+port+"/hook",       // a mapped literal
		"https://169.254.169.254/latest/meta-data/",   // the metadata service itself
		"https://[fd00:ec2::254]/latest/meta-data/",   // and over IPv6
		"https://user@gp-internal.example:"+port+"/x", // credentials do not change the address
	)
	run := e.start(func(o *outbox.DispatcherOptions) { o.Egress = outbox.EgressPolicy{Resolver: dns} })
	for i, u := range endpoints {
		id := fmt.Sprintf("svc-%d", i)
		e.route(service(id), outbox.Endpoint{URL: u, Guarded: true})
		mid := e.refer(fmt.Sprintf("ref-%d", i), created(id))[0]
		a := run.expect(mid, outbox.OutcomeDead, 0)
		if !strings.Contains(a.Error, "refused by socialrx's outbound policy") && !strings.Contains(a.Error, "plain http") {
			t.Errorf("%s: dead with %q, want the outbound policy's reason", u, a.Error)
		}
	}
	if n := len(rc.hits); n != 0 {
		t.Fatalf("the internal receiver got %d requests from endpoints the policy refuses", n)
	}

	// Positive control: the same receiver, where the directory allows loopback (the demo), gets its message.
	e2 := newEnv(t)
	run2 := e2.start(func(o *outbox.DispatcherOptions) {
		o.Egress = outbox.EgressPolicy{AllowLoopback: true, Resolver: dns}
	})
	e2.route(service("demo"), outbox.Endpoint{URL: rc.URL + "/hook", Guarded: true})
	mid := e2.refer("ref-demo", created("demo"))[0]
	run2.expect(mid, outbox.OutcomeDelivered, http.StatusNoContent)
	if h := rc.next(t); h.ID != mid {
		t.Errorf("the allowed loopback endpoint got %s", h.ID)
	}
	// Even where loopback is allowed, private and metadata addresses are not.
	e2.route(service("meta"), outbox.Endpoint{URL: "https://metadata.example:" + port + "/", Guarded: true})
	mid = e2.refer("ref-meta", created("meta"))[0]
	run2.expect(mid, outbox.OutcomeDead, 0)
}

// TestEgressNoRedirects: an allowed endpoint that redirects (to socialrx's own admin API, say) is not
// followed: the attempt is a permanent failure and the redirect's target never sees a request.
func TestEgressNoRedirects(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	target := newReceiver(t, e.clock.Now, nil)
	redirector := newReceiver(t, e.clock.Now, func(_ int, _ hit, w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		http.Redirect(w, r, target.URL+"/admin/v1/replay", http.StatusTemporaryRedirect)
	})
	run := e.start(func(o *outbox.DispatcherOptions) { o.Egress = outbox.EgressPolicy{AllowLoopback: true} })
	e.route(service("gp"), outbox.Endpoint{URL: redirector.URL + "/hook", Guarded: true})
	mid := e.refer("ref-1", created("gp"))[0]
	a := run.expect(mid, outbox.OutcomeDead, http.StatusTemporaryRedirect)
	if !strings.Contains(a.Error, "redirects are not followed") {
		t.Errorf("error %q", a.Error)
	}
	redirector.next(t)
	if n := len(target.hits); n != 0 {
		t.Errorf("the redirect's target got %d requests", n)
	}
	if u, _ := url.Parse(target.URL); u == nil {
		t.Fatal("bad target")
	}
}
