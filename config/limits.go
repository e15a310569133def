package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Rate is a token bucket: Per requests per second on average, up to Burst at once. The zero Rate is no limit.
type Rate struct {
	PerSecond float64
	Burst     int
}

// Off reports whether r sets no limit.
func (r Rate) Off() bool { return r.PerSecond <= 0 }

// String renders r as its setting is written ("50,200"; "off").
func (r Rate) String() string {
	if r.Off() {
		return "off"
	}
	return strconv.FormatFloat(r.PerSecond, 'f', -1, 64) + "," + strconv.Itoa(r.Burst)
}

// ParseRate reads a rate setting: "RATE,BURST" (requests per second, e.g. "50,200" or "0.5,10"), "RATE" (the
// burst is then twice the rate, at least 1), or "off".
func ParseRate(v string) (Rate, error) {
	v = strings.TrimSpace(v)
	if strings.EqualFold(v, "off") {
		return Rate{}, nil
	}
	rs, bs, hasBurst := strings.Cut(v, ",")
	r, err := strconv.ParseFloat(strings.TrimSpace(rs), 64)
	if err != nil || r <= 0 || r > 1e6 {
		return Rate{}, fmt.Errorf("%q must be RATE,BURST (requests per second, then how many at once; e.g. 50,200) or off", v)
	}
	burst := max(int(2*r), 1)
	if hasBurst {
		b, err := strconv.Atoi(strings.TrimSpace(bs))
		if err != nil || b < 1 || b > 1e6 {
			return Rate{}, fmt.Errorf("%q: the burst must be a whole number of requests from 1 (e.g. 50,200)", v)
		}
		burst = b
	}
	return Rate{PerSecond: r, Burst: burst}, nil
}

// Limits bound what one client, and everyone together, may take of the server (README "Security").
type Limits struct {
	// Role is each client role's request rate, per client (SOCIALRX_RATE_GP, SOCIALRX_RATE_COMMUNITY,
	// SOCIALRX_RATE_ADMIN): beyond it, 429 with Retry-After.
	Role map[Role]Rate
	// Token is the token endpoint's rate per client address (SOCIALRX_RATE_TOKEN).
	Token Rate
	// AuthFailures is the rate of failed authentications per client address (SOCIALRX_RATE_AUTH_FAILURES):
	// beyond it, requests from that address that carry no valid credentials get 429 instead of 401 (and no
	// log line each); valid credentials are still served.
	AuthFailures Rate
	// BodyBytes is each client's rate of request body bytes (SOCIALRX_RATE_BODY_BYTES: bytes per second, then
	// how many at once): a request's declared size is taken from it before the body is read (429 with
	// Retry-After beyond), so that one client's large bodies cannot take the CPU, memory and disk every other
	// client needs. Its burst must hold the largest body (SOCIALRX_MAX_BODY_BYTES).
	BodyBytes Rate
	// Bodies caps the requests reading or processing a body at once, in all (SOCIALRX_MAX_CONCURRENT_BODIES:
	// beyond it, 503 with Retry-After) and per client (SOCIALRX_MAX_CONCURRENT_BODIES_PER_CLIENT: 429).
	// 0: no cap.
	Bodies, BodiesPerClient int
	// SubscriptionsPerClient caps a GP client's active Subscriptions (SOCIALRX_SUBSCRIPTIONS_PER_CLIENT);
	// 0: no cap.
	SubscriptionsPerClient int
	// RefusalDelay holds a 429 back for up to this long (never longer than its Retry-After), at most a few
	// hundred at once (SOCIALRX_REFUSAL_DELAY): a client that ignores Retry-After and floods gets its answers at
	// the pace it was asked to keep, instead of making the server refuse thousands of requests a second.
	// 0: answer at once.
	RefusalDelay time.Duration
}

// DefaultLimits are the limits when nothing is set: far above what a GP system, a community service or an
// operator does, far below what hurts the server.
func DefaultLimits() Limits {
	return Limits{
		Role: map[Role]Rate{
			RoleGP:        {PerSecond: 50, Burst: 200},
			RoleCommunity: {PerSecond: 20, Burst: 100},
			RoleAdmin:     {PerSecond: 20, Burst: 100},
		},
		Token:                  Rate{PerSecond: 2, Burst: 20},
		BodyBytes:              Rate{PerSecond: 1 << 20, Burst: 8 << 20},
		AuthFailures:           Rate{PerSecond: 1, Burst: 20},
		Bodies:                 16,
		BodiesPerClient:        4,
		SubscriptionsPerClient: 10,
		RefusalDelay:           time.Second,
	}
}

// Unlimited sets no limit at all (tests and benchmarks that measure something else).
func Unlimited() Limits { return Limits{Role: map[Role]Rate{}} }

// limitsFromEnv applies the limit settings over l.
func limitsFromEnv(l Limits, getenv func(string) string) (Limits, []error) {
	var errs []error
	out := l
	out.Role = map[Role]Rate{}
	for k, v := range l.Role {
		out.Role[k] = v
	}
	rate := func(name string, dst *Rate) {
		if v := getenv(name); v != "" {
			r, err := ParseRate(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				return
			}
			*dst = r
		}
	}
	for _, role := range []Role{RoleGP, RoleCommunity, RoleAdmin} {
		r := out.Role[role]
		rate("SOCIALRX_RATE_"+strings.ToUpper(string(role)), &r)
		out.Role[role] = r
	}
	rate("SOCIALRX_RATE_TOKEN", &out.Token)
	rate("SOCIALRX_RATE_AUTH_FAILURES", &out.AuthFailures)
	rate("SOCIALRX_RATE_BODY_BYTES", &out.BodyBytes)
	count := func(name string, dst *int) {
		if v := getenv(name); v != "" {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 0 || n > 1e6 {
				errs = append(errs, fmt.Errorf("%s: %q must be a whole number (0: no cap)", name, v))
				return
			}
			*dst = n
		}
	}
	count("SOCIALRX_MAX_CONCURRENT_BODIES", &out.Bodies)
	count("SOCIALRX_MAX_CONCURRENT_BODIES_PER_CLIENT", &out.BodiesPerClient)
	count("SOCIALRX_SUBSCRIPTIONS_PER_CLIENT", &out.SubscriptionsPerClient)
	if v := getenv("SOCIALRX_REFUSAL_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > time.Minute {
			errs = append(errs, fmt.Errorf("SOCIALRX_REFUSAL_DELAY: %q must be a duration from 0s to 1m, like 1s", v))
		} else {
			out.RefusalDelay = d
		}
	}
	if out.Bodies > 0 && out.BodiesPerClient > out.Bodies {
		errs = append(errs, fmt.Errorf("SOCIALRX_MAX_CONCURRENT_BODIES_PER_CLIENT (%d) must not exceed SOCIALRX_MAX_CONCURRENT_BODIES (%d)",
			out.BodiesPerClient, out.Bodies))
	}
	return out, errs
}

// Security are the settings of the outbound policy, stored secrets, metrics and the demo (README "Security").
type Security struct {
	// SecretKey encrypts stored credentials (Subscription channel.header values) with AES-256-GCM
	// (SOCIALRX_SECRET_KEY: standard base64 of 32 random bytes). PreviousSecretKeys still decrypt what older
	// keys encrypted (SOCIALRX_SECRET_KEY_PREVIOUS: a comma list), for a rotation.
	SecretKey          []byte
	PreviousSecretKeys [][]byte
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names the client address (per-address
	// limits and the failed-authentication log); SOCIALRX_TRUSTED_PROXIES, a comma list of addresses or CIDR
	// prefixes. Empty: the connection's address is the client's.
	TrustedProxies []netip.Prefix
	// MetricsToken, if set, is the bearer token /metrics requires (SOCIALRX_METRICS_TOKEN).
	MetricsToken string
	// MetricsAddr, if set, serves /metrics on its own listener instead of the API's (SOCIALRX_METRICS_ADDR).
	MetricsAddr string
	// MetricsSubscriptionIDs labels delivery metrics with each Subscription's id instead of "subscription"
	// (SOCIALRX_METRICS_SUBSCRIPTION_IDS=true); a deleted Subscription's series are removed.
	MetricsSubscriptionIDs bool
	// DemoPublic lets the embedded demo configuration listen on a non-loopback address
	// (SOCIALRX_DEMO_PUBLIC=1): its tokens are published, so anyone who reaches it can use them.
	DemoPublic bool
}

// securityFromEnv reads the Security settings.
func securityFromEnv(getenv func(string) string) (Security, []error) {
	var s Security
	var errs []error
	key := func(name, v string) []byte {
		k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
		if err != nil || len(k) != 32 {
			errs = append(errs, fmt.Errorf("%s: must be standard base64 of exactly 32 random bytes (e.g. openssl rand -base64 32)", name))
			return nil
		}
		return k
	}
	if v := getenv("SOCIALRX_SECRET_KEY"); v != "" {
		s.SecretKey = key("SOCIALRX_SECRET_KEY", v)
	}
	if v := getenv("SOCIALRX_SECRET_KEY_PREVIOUS"); v != "" {
		for _, part := range strings.Split(v, ",") {
			if k := key("SOCIALRX_SECRET_KEY_PREVIOUS", part); k != nil {
				s.PreviousSecretKeys = append(s.PreviousSecretKeys, k)
			}
		}
		if s.SecretKey == nil && len(errs) == 0 {
			errs = append(errs, errors.New("SOCIALRX_SECRET_KEY_PREVIOUS: set SOCIALRX_SECRET_KEY too (the key new secrets are encrypted with)"))
		}
	}
	if v := getenv("SOCIALRX_TRUSTED_PROXIES"); v != "" {
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			p, err := netip.ParsePrefix(part)
			if err != nil {
				a, aerr := netip.ParseAddr(part)
				if aerr != nil {
					errs = append(errs, fmt.Errorf("SOCIALRX_TRUSTED_PROXIES: %q is not an address or CIDR prefix", part))
					continue
				}
				p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
			}
			s.TrustedProxies = append(s.TrustedProxies, p.Masked())
		}
	}
	s.MetricsToken = getenv("SOCIALRX_METRICS_TOKEN")
	s.MetricsAddr = getenv("SOCIALRX_METRICS_ADDR")
	flag := func(name string, dst *bool) {
		switch v := strings.ToLower(strings.TrimSpace(getenv(name))); v {
		case "":
		case "1", "true", "yes":
			*dst = true
		case "0", "false", "no":
			*dst = false
		default:
			errs = append(errs, fmt.Errorf("%s: %q must be true or false", name, v))
		}
	}
	flag("SOCIALRX_METRICS_SUBSCRIPTION_IDS", &s.MetricsSubscriptionIDs)
	flag("SOCIALRX_DEMO_PUBLIC", &s.DemoPublic)
	return s, errs
}

// Outbound is the directory file's outbound policy (README "Security").
type Outbound struct {
	// AllowLoopback lets GP clients' FHIR Subscriptions use endpoints on this machine (plain http to
	// localhost, 127.0.0.1 or ::1, and names that resolve to a loopback address): the demo, or a GP receiver
	// deployed beside socialrx. Off by default: a Subscription could otherwise reach socialrx's own admin API
	// or any service listening on loopback.
	AllowLoopback bool `yaml:"allow_loopback"`
}

// LoopbackHost reports whether a URL's host names this machine: "localhost" (or a name under it) or a
// loopback address, IPv4-mapped forms included.
func LoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && a.Unmap().IsLoopback()
}

// refuseDemoTokens is an error naming every client of c whose token hash is one of the embedded demo's.
func refuseDemoTokens(c *Config) error {
	demo, err := Parse(demoYAML, "")
	if err != nil {
		return fmt.Errorf("embedded demo configuration: %w", err)
	}
	published := map[[32]byte]string{}
	for _, cl := range demo.Clients {
		published[cl.TokenSHA256] = cl.ID
	}
	var none [32]byte
	var errs []error
	for i, cl := range c.Clients {
		if d, ok := published[cl.TokenSHA256]; ok && cl.TokenSHA256 != none {
			errs = append(errs, fmt.Errorf("clients[%d].token_sha256: client %q uses the published demo token of %q (it is in the README); make a new token and hash it with `socialrx hash-token`", i, cl.ID, d))
		}
	}
	return errors.Join(errs...)
}
