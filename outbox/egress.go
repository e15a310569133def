package outbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// Outbound policy (README "Security"): socialrx sends requests where an operator meant them to go. Community
// services' webhook URLs are the operator's (the directory file; config refuses plain http outside loopback).
// FHIR Subscription endpoints are a GP client's: they are checked when the Subscription is made (https only;
// http and loopback only when the directory allows loopback) and again at every connection, after DNS, by
// EgressPolicy: an endpoint whose name resolves to a private, loopback, link-local (cloud metadata), multicast,
// shared (CGNAT), reserved or otherwise non-public address is refused, whatever its name says; redirects are
// never followed; no proxy from the environment is used.

// ErrEgressRefused is a connection to an address the outbound policy refuses (EgressPolicy.CheckAddr).
var ErrEgressRefused = errors.New("outbound address refused by socialrx's outbound policy")

// Resolver looks a host name up (a *net.Resolver does; tests inject their own).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// EgressPolicy decides which addresses a request to a client-supplied URL may connect to. The zero value is
// the strict policy: public unicast addresses only.
type EgressPolicy struct {
	// AllowLoopback lets client-supplied endpoints reach loopback addresses (127.0.0.0/8, ::1): the demo, or
	// a directory that runs the GP's receiver on the same machine (outbound.allow_loopback). Private and
	// link-local addresses stay refused.
	AllowLoopback bool
	// Resolver looks names up; nil: net.DefaultResolver.
	Resolver Resolver
}

// refusedPrefixes are the special-purpose ranges (IANA IPv4 and IPv6 special-purpose address registries)
// that no client-supplied endpoint may reach, beyond what netip's predicates name.
var refusedPrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",          // "this network"
		"100.64.0.0/10",      // shared address space (carrier-grade NAT)
		"192.0.0.0/24",       // IETF protocol assignments
		"192.0.2.0/24",       // documentation (TEST-NET-1)
		"198.18.0.0/15",      // benchmarking
		"198.51.100.0/24",    // documentation (TEST-NET-2)
		"203.0.113.0/24",     // documentation (TEST-NET-3)
		"240.0.0.0/4",        // reserved, and the limited broadcast address
		"::/96",              // IPv4-compatible (deprecated)
		"64:ff9b:1::/48",     // local-use IPv4/IPv6 translation
		"100::/64",           // discard-only
		"2001::/23",          // IETF protocol assignments, Teredo (2001::/32) among them
		"2001:db8::/32",      // documentation
		"fec0::/10",          // site-local (deprecated)
		"3fff::/20",          // documentation
		"5f00::/16",          // segment routing SIDs
		"fd00:ec2::254/128",  // a cloud metadata service over IPv6 (also inside fc00::/7)
		"169.254.169.254/32", // cloud metadata services (also link-local)
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// Embedded IPv4: NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses reach the IPv4 address they carry.
var (
	nat64   = netip.MustParsePrefix("64:ff9b::/96")
	sixToV4 = netip.MustParsePrefix("2002::/16")
)

// CheckAddr says why a may not be connected to (an error wrapping ErrEgressRefused), or nil. IPv4-mapped
// and IPv4-embedding IPv6 forms are judged by the IPv4 address they reach.
func (p EgressPolicy) CheckAddr(a netip.Addr) error {
	a = a.Unmap()
	refuse := func(why string) error { return fmt.Errorf("%w: %s is %s", ErrEgressRefused, a, why) }
	switch {
	case !a.IsValid():
		return refuse("not an address")
	case a.Is6() && nat64.Contains(a):
		b := a.As16()
		return p.CheckAddr(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	case a.Is6() && sixToV4.Contains(a):
		b := a.As16()
		return p.CheckAddr(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
	case a.IsLoopback():
		if p.AllowLoopback {
			return nil
		}
		return refuse("a loopback address (this machine)")
	case a.IsUnspecified():
		return refuse("unspecified")
	case a.IsPrivate():
		return refuse("a private address")
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return refuse("a link-local address (cloud metadata services live there)")
	case a.IsMulticast(), a.IsInterfaceLocalMulticast():
		return refuse("a multicast address")
	}
	for _, pr := range refusedPrefixes {
		if pr.Contains(a) {
			return refuse("a special-purpose address (" + pr.String() + ")")
		}
	}
	if !a.IsGlobalUnicast() {
		return refuse("not a public unicast address")
	}
	return nil
}

// DialContext connects to address (host:port) only through addresses the policy allows: it resolves the host
// (a literal address is taken as it is), refuses the connection when any address the name resolves to is
// refused (a name that mixes public and private answers is a rebinding trick), and dials the checked
// addresses themselves (never the name again, so DNS cannot change its answer in between); the connection's
// real peer is checked once more as the socket connects.
func (p EgressPolicy) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		r := p.Resolver
		if r == nil {
			r = net.DefaultResolver
		}
		if addrs, err = r.LookupNetIP(ctx, "ip", host); err != nil {
			return nil, err
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("lookup %s: no addresses", host)
		}
	}
	for _, a := range addrs {
		if err := p.CheckAddr(a); err != nil {
			return nil, fmt.Errorf("%s: %w", host, err)
		}
	}
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: p.control}
	var firstErr error
	for _, a := range addrs {
		conn, err := d.DialContext(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

// control checks the address a socket is about to connect to (the last word: whatever resolved it).
func (p EgressPolicy) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unreadable address %q", ErrEgressRefused, address)
	}
	return p.CheckAddr(ap.Addr())
}

// Transport is an HTTP transport for client-supplied endpoints: every connection through DialContext, no
// proxy from the environment (a proxy would connect on socialrx's behalf where the policy cannot see),
// bounded idle connections.
func (p EgressPolicy) Transport() *http.Transport {
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            p.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
}
