// Package config loads socialrx's process settings (flags and SOCIALRX_* environment variables) and its
// directory file (who may call socialrx, and the community services referrals go to), validating both so that a
// bad setting stops the process at start with a message naming the setting, never later at 2 a.m.
package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.yaml.in/yaml/v3"

	"github.com/socialrx/socialrx/mapping"
)

// Role is what a client may do. The zero value is invalid.
type Role string

// Client roles.
const (
	RoleGP        Role = "gp"        // posts referrals for its practices, reads their Tasks
	RoleCommunity Role = "community" // sees and updates its one service's referrals
	RoleAdmin     Role = "admin"     // operates the outbox
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	switch r {
	case RoleGP, RoleCommunity, RoleAdmin:
		return true
	}
	return false
}

// Client is one caller of socialrx, identified by a bearer token.
type Client struct {
	ID          string
	Role        Role
	TokenSHA256 [32]byte // zero when the client authenticates only with signed JWTs (JWKS)
	Practices   []string // gp: ODS codes it may refer from and read
	Service     string   // community: its service id
	// JWKS are the public keys the client signs its SMART Backend Services client assertions with (RS384 or
	// ES384, each with a kid); empty when it uses only its static bearer token.
	JWKS []jose.JSONWebKey
}

// Practice is the client's practice ods as the directory spells it (ODS codes compare case-insensitively),
// or ods itself when the client does not act for it.
func (c Client) Practice(ods string) string {
	if i := slices.IndexFunc(c.Practices, func(p string) bool { return strings.EqualFold(p, ods) }); i >= 0 {
		return c.Practices[i]
	}
	return ods
}

// MayReferFrom reports whether a GP client may act for the practice with ODS code ods.
func (c Client) MayReferFrom(ods string) bool {
	return c.Role == RoleGP && slices.ContainsFunc(c.Practices, func(p string) bool { return strings.EqualFold(p, ods) })
}

// Config is the loaded directory file.
type Config struct {
	Clients   []Client
	Directory mapping.Directory
	// Outbound is the directory's outbound policy (outbound: in the file).
	Outbound Outbound
	// Demo is true when the embedded demo configuration is in use (no SOCIALRX_CONFIG).
	Demo bool
	// Source names where the configuration came from (a path, or "embedded demo").
	Source string
}

// Authenticate returns the client whose token this is. It hashes the presented token and compares against every
// client in constant time, so timing reveals neither which client nor how much of a hash matched.
func (c *Config) Authenticate(token string) (Client, bool) {
	if token == "" {
		return Client{}, false
	}
	sum := sha256.Sum256([]byte(token))
	var found Client
	ok := false
	var none [32]byte
	for _, cl := range c.Clients {
		if cl.TokenSHA256 != none && subtle.ConstantTimeCompare(sum[:], cl.TokenSHA256[:]) == 1 {
			found, ok = cl, true
		}
	}
	return found, ok
}

// HashToken returns the SHA-256 hex of a token, the form the directory file stores (socialrx hash-token).
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

//go:embed demo.yaml
var demoYAML []byte

// DemoYAML returns the embedded demo directory file (README documents its tokens).
func DemoYAML() []byte { return slices.Clone(demoYAML) }

// LoadDemo loads the embedded demo configuration.
func LoadDemo() (*Config, error) {
	c, err := Parse(demoYAML, "")
	if err != nil {
		return nil, fmt.Errorf("embedded demo configuration: %w", err)
	}
	c.Demo, c.Source = true, "embedded demo"
	return c, nil
}

// Load reads and validates a directory file. Relative secret_file paths are resolved against its folder. A
// file that gives a client one of the embedded demo's published token hashes is refused: those tokens are in
// the README, so anyone could use them (the demo itself runs only without SOCIALRX_CONFIG).
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read directory file: %w", err)
	}
	c, err := Parse(b, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("directory file %s: %w", path, err)
	}
	if err := refuseDemoTokens(c); err != nil {
		return nil, fmt.Errorf("directory file %s: %w", path, err)
	}
	c.Source = path
	return c, nil
}

type fileIdentifier struct {
	System string `yaml:"system"`
	Value  string `yaml:"value"`
}

type fileClient struct {
	ID          string         `yaml:"id"`
	Role        string         `yaml:"role"`
	TokenSHA256 string         `yaml:"token_sha256"`
	Practices   []string       `yaml:"practices"`
	Service     string         `yaml:"service"`
	JWKS        map[string]any `yaml:"jwks"`      // a JWK Set ({keys: [...]}) written as YAML or JSON
	JWKSFile    string         `yaml:"jwks_file"` // or a JWK Set JSON file
}

type fileService struct {
	ID          string           `yaml:"id"`
	Name        string           `yaml:"name"`
	Identifiers []fileIdentifier `yaml:"identifiers"`
	Codes       []string         `yaml:"codes"`
	Default     bool             `yaml:"default"`
	// Sharing lists the record's fields the service receives (mapping.SharingField names, or "all");
	// absent: the safe default (mapping.DefaultSharingFields).
	Sharing *[]string `yaml:"sharing"`
	// Capacity is the service's initial capacity (issue 13): stored at start when the service has never set
	// one; what the group later says through the community API or the inbox wins.
	Capacity *fileCapacity `yaml:"capacity"`
	// Meets are the support needs the service can meet (mapping.SupportNeed codes); left out: not declared,
	// so routing does not check them; [] declares none.
	Meets *[]string `yaml:"meets"`
	// WhenUnavailable is what to do with a referral that names the service while it has no room: link-worker
	// (the default) or waitlist.
	WhenUnavailable string `yaml:"when_unavailable"`
	// Contact is how the GP and the referrer reach the group (a phone number, an email address: free text,
	// printed on the GP letter); left out: the letter says none was given.
	Contact string `yaml:"contact"`
	// LinkWorker marks the link-worker service, told of escalations and automatic declines (at most one;
	// without one, the default service is).
	LinkWorker bool `yaml:"link_worker"`
	// Deadlines are the service's response deadlines ("2d", "36h"); left out: mapping.DefaultDeadlines.
	Deadlines *fileDeadlines `yaml:"deadlines"`
	Delivery  struct {
		URL        string `yaml:"url"`
		Secret     string `yaml:"secret"`
		SecretFile string `yaml:"secret_file"`
		// MaxInFlight caps the webhook requests in flight to the service at once (1 to
		// mapping.MaxDeliveryInFlight); left out: the dispatcher's default (8).
		MaxInFlight *int `yaml:"max_in_flight"`
	} `yaml:"delivery"`
}

// fileCapacity is a service's capacity block: status open | waitlist | full | paused, expected_wait_days
// (waitlist), until (paused: YYYY-MM-DD, the first day it takes referrals again), max_open (0: none).
type fileCapacity struct {
	Status           string `yaml:"status"`
	ExpectedWaitDays int    `yaml:"expected_wait_days"`
	Until            string `yaml:"until"`
	MaxOpen          int    `yaml:"max_open"`
}

// fileDeadlines is a service's deadlines block: durations from the referral's creation, in days ("2d") or
// Go durations ("36h"); one left out keeps its default.
type fileDeadlines struct {
	RemindAfter   string `yaml:"remind_after"`
	EscalateAfter string `yaml:"escalate_after"`
	DeclineAfter  string `yaml:"decline_after"`
}

type file struct {
	Clients  []fileClient  `yaml:"clients"`
	Services []fileService `yaml:"services"`
	Outbound Outbound      `yaml:"outbound"`
}

var (
	idPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	odsPattern = regexp.MustCompile(`^[A-Za-z0-9]{3,10}$`)
	hexPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Parse validates a directory file's bytes. base resolves relative secret_file paths ("" = current folder).
// Every problem is reported, each naming its place in the file.
func Parse(b []byte, base string) (*Config, error) {
	var f file
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, namedYAMLErrors(b, err)
	}
	p := &parser{base: base, serviceIDs: map[string]bool{}, clientIDs: map[string]bool{}, hashes: map[string]string{}}
	c := &Config{}
	defaults, linkWorkers := 0, 0
	for i, s := range f.Services {
		svc := p.service(fmt.Sprintf("services[%d]", i), s)
		if svc.Default {
			defaults++
		}
		if svc.LinkWorker {
			linkWorkers++
		}
		c.Directory.Services = append(c.Directory.Services, svc)
	}
	if defaults > 1 {
		p.bad("services: %d services have default: true; at most one may", defaults)
	}
	if linkWorkers > 1 {
		p.bad("services: %d services have link_worker: true; at most one may", linkWorkers)
	}
	for i, fc := range f.Clients {
		c.Clients = append(c.Clients, p.client(fmt.Sprintf("clients[%d]", i), fc))
	}
	c.Outbound = f.Outbound
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return c, nil
}

// maxContact bounds a service's contact (it must fit on the GP letter's line).
const maxContact = 200

// parser collects every problem of one directory file, and what later entries are checked against.
type parser struct {
	base       string
	errs       []error
	serviceIDs map[string]bool
	clientIDs  map[string]bool
	hashes     map[string]string // token hash → client id
}

func (p *parser) bad(format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf(format, args...))
}

// id checks an entry's id: well-formed and not used before in seen.
func (p *parser) id(at, id string, seen map[string]bool) {
	if !idPattern.MatchString(id) {
		p.bad("%s.id: %q must be 1-64 letters, digits, '.', '_' or '-'", at, id)
	} else if seen[id] {
		p.bad("%s.id: %q is used twice", at, id)
	}
	seen[id] = true
}

// service checks one services[] entry.
func (p *parser) service(at string, s fileService) mapping.Service {
	p.id(at, s.ID, p.serviceIDs)
	if strings.TrimSpace(s.Name) == "" {
		p.bad("%s.name: required", at)
	}
	svc := mapping.Service{ID: s.ID, Name: s.Name, Default: s.Default}
	for j, id := range s.Identifiers {
		if id.Value == "" {
			p.bad("%s.identifiers[%d].value: required", at, j)
		}
		svc.Identifiers = append(svc.Identifiers, mapping.Identifier{System: id.System, Value: id.Value})
	}
	for j, code := range s.Codes {
		sys, val, ok := strings.Cut(code, "|")
		if !ok || sys == "" || val == "" {
			p.bad("%s.codes[%d]: %q must be \"system|code\"", at, j, code)
		}
		svc.Codes = append(svc.Codes, code)
	}
	svc.Delivery = p.delivery(at, s)
	if s.Sharing != nil {
		if len(*s.Sharing) == 0 {
			p.bad("%s.sharing: list the fields the service receives (or leave sharing out for the default: %s)",
				at, strings.Join(mapping.SharingProfile{}.Names(), ", "))
		}
		prof, err := mapping.ParseSharingFields(*s.Sharing)
		if err != nil {
			p.bad("%s.sharing: %v", at, err)
		}
		svc.Sharing = prof
	}
	svc.Capacity = p.capacity(at, s.Capacity)
	if s.Meets != nil {
		svc.CanMeet = []mapping.SupportNeed{}
		for j, code := range *s.Meets {
			n := mapping.SupportNeed(code)
			if !n.Valid() {
				p.bad("%s.meets[%d]: %q is not a support need (%s)", at, j, code, strings.Join(needCodes(), ", "))
				continue
			}
			svc.CanMeet = append(svc.CanMeet, n)
		}
	}
	svc.Contact = strings.TrimSpace(s.Contact)
	if len([]rune(svc.Contact)) > maxContact {
		p.bad("%s.contact: at most %d characters", at, maxContact)
	}
	svc.WhenUnavailable = mapping.UnavailablePolicy(s.WhenUnavailable)
	if !svc.WhenUnavailable.Valid() {
		p.bad("%s.when_unavailable: %q must be link-worker or waitlist", at, s.WhenUnavailable)
	}
	svc.LinkWorker = s.LinkWorker
	svc.Deadlines = p.deadlines(at+".deadlines", s.Deadlines)
	return svc
}

// deadlines checks a service's deadlines block (nil: none given, the defaults apply).
func (p *parser) deadlines(at string, fd *fileDeadlines) *mapping.Deadlines {
	if fd == nil {
		return nil
	}
	d := mapping.DefaultDeadlines()
	ok := true
	for _, f := range []struct {
		name, v string
		to      *time.Duration
	}{{"remind_after", fd.RemindAfter, &d.RemindAfter}, {"escalate_after", fd.EscalateAfter, &d.EscalateAfter},
		{"decline_after", fd.DeclineAfter, &d.DeclineAfter}} {
		if f.v == "" {
			continue
		}
		v, err := parseDays(f.v)
		if err != nil || v <= 0 {
			p.bad("%s.%s: %q must be a positive duration in days (\"2d\") or hours (\"36h\")", at, f.name, f.v)
			ok = false
			continue
		}
		*f.to = v
	}
	if msg := d.Check(); ok && msg != "" {
		p.bad("%s: %s", at, msg)
	}
	return &d
}

// parseDays reads a duration in whole days ("14d") or as a Go duration ("36h").
func parseDays(v string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil {
			return 0, fmt.Errorf("days: %w", err)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	return time.ParseDuration(v)
}

// needCodes are the support needs' codes.
func needCodes() []string {
	var out []string
	for _, n := range mapping.AllSupportNeeds() {
		out = append(out, string(n))
	}
	return out
}

// capacity checks a service's initial capacity (mapping.CheckCapacity, with until any valid date: a pause
// that has ended simply reads as open).
func (p *parser) capacity(at string, fc *fileCapacity) *mapping.Capacity {
	if fc == nil {
		return nil
	}
	c := mapping.Capacity{Status: mapping.CapacityStatus(fc.Status), ExpectedWaitDays: fc.ExpectedWaitDays, MaxOpen: fc.MaxOpen}
	if fc.Until != "" {
		u, err := time.Parse(time.DateOnly, fc.Until)
		if err != nil {
			p.bad("%s.capacity.until: %q must be a date, YYYY-MM-DD", at, fc.Until)
			return nil
		}
		c.Until = u
	}
	if field, why := mapping.CheckCapacity(c, time.Time{}); field != "" {
		p.bad("%s.capacity.%s: %s", at, field, why)
		return nil
	}
	return &c
}

// delivery checks a service's delivery: a webhook URL with its signing secret, or nothing (pull-only).
func (p *parser) delivery(at string, s fileService) mapping.Delivery {
	if s.Delivery.URL == "" {
		if s.Delivery.Secret != "" || s.Delivery.SecretFile != "" {
			p.bad("%s.delivery: a secret without a url (pull-only services need neither)", at)
		}
		if s.Delivery.MaxInFlight != nil {
			p.bad("%s.delivery.max_in_flight: without a url (pull-only services are sent nothing)", at)
		}
		return mapping.Delivery{}
	}
	inFlight := 0
	if n := s.Delivery.MaxInFlight; n != nil {
		if *n < 1 || *n > mapping.MaxDeliveryInFlight {
			p.bad("%s.delivery.max_in_flight: %d must be from 1 to %d (requests in flight at once)", at, *n, mapping.MaxDeliveryInFlight)
		}
		inFlight = *n
	}
	u, err := url.Parse(s.Delivery.URL)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		p.bad("%s.delivery.url: must be an absolute http(s) URL", at)
	case u.User != nil:
		p.bad("%s.delivery.url: must not carry credentials (the webhook is signed with the secret)", at)
	case u.Scheme == "http" && !LoopbackHost(u.Hostname()):
		p.bad("%s.delivery.url: %s must use https: referrals carry patient data, and plain http is only for a receiver on this machine (localhost, 127.0.0.1, ::1)", at, u.Redacted())
	}
	secret := s.Delivery.Secret
	switch {
	case secret != "" && s.Delivery.SecretFile != "":
		p.bad("%s.delivery: give secret or secret_file, not both", at)
	case s.Delivery.SecretFile != "":
		path := s.Delivery.SecretFile
		if !filepath.IsAbs(path) && p.base != "" {
			path = filepath.Join(p.base, path)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			p.bad("%s.delivery.secret_file: %w", at, err)
		}
		secret = strings.TrimSpace(string(raw))
	}
	if err := ValidateSecret(secret); err != nil {
		p.bad("%s.delivery.secret: %w", at, err)
	}
	return mapping.Delivery{URL: s.Delivery.URL, Secret: secret, MaxInFlight: inFlight}
}

// client checks one clients[] entry (after every service: a community client names one).
func (p *parser) client(at string, fc fileClient) Client {
	p.id(at, fc.ID, p.clientIDs)
	cl := Client{ID: fc.ID, Role: Role(fc.Role)}
	if !cl.Role.Valid() {
		p.bad("%s.role: %q must be gp, community or admin", at, fc.Role)
	}
	keys, err := clientJWKS(fc, p.base)
	if err != nil {
		p.bad("%s.%w", at, err)
	}
	cl.JWKS = keys
	h := strings.ToLower(fc.TokenSHA256)
	if h == "" && (len(keys) > 0 || err != nil) {
		// A client that signs JWTs (SMART Backend Services) needs no static token.
	} else if !hexPattern.MatchString(h) {
		p.bad("%s.token_sha256: must be 64 hex digits (socialrx hash-token), unless the client has jwks", at)
	} else {
		if other, dup := p.hashes[h]; dup {
			p.bad("%s.token_sha256: same token as client %q", at, other)
		}
		p.hashes[h] = fc.ID
		raw, _ := hex.DecodeString(h)
		copy(cl.TokenSHA256[:], raw)
	}
	p.scope(at, fc, &cl)
	return cl
}

// scope checks what a client acts for, by role: a GP client its practices, a community client its service.
func (p *parser) scope(at string, fc fileClient, cl *Client) {
	switch cl.Role {
	case RoleGP:
		if len(fc.Practices) == 0 {
			p.bad("%s.practices: a gp client needs at least one ODS code", at)
		}
		for j, ods := range fc.Practices {
			if !odsPattern.MatchString(ods) {
				p.bad("%s.practices[%d]: %q is not an ODS code", at, j, ods)
			}
		}
		if fc.Service != "" {
			p.bad("%s.service: only community clients have a service", at)
		}
		cl.Practices = fc.Practices
	case RoleCommunity:
		if !p.serviceIDs[fc.Service] {
			p.bad("%s.service: %q is not a service in services[]", at, fc.Service)
		}
		if len(fc.Practices) > 0 {
			p.bad("%s.practices: only gp clients have practices", at)
		}
		cl.Service = fc.Service
	case RoleAdmin:
		if fc.Service != "" || len(fc.Practices) > 0 {
			p.bad("%s: an admin client has neither service nor practices", at)
		}
	}
}

// Signing algorithms a client assertion may use (SMART Backend Services requires servers to support both).
const (
	AlgRS384 = "RS384"
	AlgES384 = "ES384"
)

// SigningAlg returns the algorithm a client signs its assertions with for a public key: RS384 for RSA of at
// least 2048 bits, ES384 for EC on P-384; any other key is an error saying why.
func SigningAlg(pub any) (string, error) {
	switch pk := pub.(type) {
	case *rsa.PublicKey:
		if pk.N.BitLen() < 2048 {
			return "", fmt.Errorf("RSA key of %d bits; use at least 2048", pk.N.BitLen())
		}
		return AlgRS384, nil
	case *ecdsa.PublicKey:
		if pk.Curve != elliptic.P384() {
			return "", fmt.Errorf("EC key on %s; ES384 needs P-384", pk.Curve.Params().Name)
		}
		return AlgES384, nil
	}
	return "", fmt.Errorf("key type %T is not supported; use RSA (RS384) or EC P-384 (ES384)", pub)
}

// clientJWKS reads and checks a client's jwks or jwks_file: public RSA (at least 2048 bits) or P-384 EC keys,
// each with a unique kid and, when it names one, the algorithm that fits it.
func clientJWKS(fc fileClient, base string) ([]jose.JSONWebKey, error) {
	var raw []byte
	switch {
	case fc.JWKS != nil && fc.JWKSFile != "":
		return nil, errors.New("jwks: give jwks or jwks_file, not both")
	case fc.JWKSFile != "":
		p := fc.JWKSFile
		if !filepath.IsAbs(p) && base != "" {
			p = filepath.Join(base, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("jwks_file: %w", err)
		}
		raw = b
	case fc.JWKS != nil:
		b, err := json.Marshal(fc.JWKS)
		if err != nil {
			return nil, fmt.Errorf("jwks: %w", err)
		}
		raw = b
	default:
		return nil, nil
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("jwks: not a JWK Set: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("jwks: no keys")
	}
	kids := map[string]bool{}
	for i, k := range set.Keys {
		at := fmt.Sprintf("jwks.keys[%d]", i)
		if k.KeyID == "" {
			return nil, fmt.Errorf("%s: kid is required (client assertions name their key by kid)", at)
		}
		if kids[k.KeyID] {
			return nil, fmt.Errorf("%s: kid %q is used twice", at, k.KeyID)
		}
		kids[k.KeyID] = true
		if _, sym := k.Key.([]byte); sym {
			return nil, fmt.Errorf("%s: a shared-secret (oct) key is not supported; use RSA (RS384) or EC P-384 (ES384) public keys", at)
		}
		if !k.IsPublic() {
			return nil, fmt.Errorf("%s: is a private key; the directory holds public keys only", at)
		}
		want, err := SigningAlg(k.Key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		if k.Algorithm != "" && k.Algorithm != want {
			return nil, fmt.Errorf("%s: alg %q does not fit this key; use %s", at, k.Algorithm, want)
		}
		set.Keys[i].Algorithm = want
	}
	return set.Keys, nil
}

// ValidateSecret checks a Standard Webhooks secret: "whsec_" followed by base64 of 24 to 64 bytes.
func ValidateSecret(secret string) error {
	rest, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return errors.New(`must start with "whsec_"`)
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return errors.New(`the part after "whsec_" must be standard base64`)
	}
	if len(key) < 24 || len(key) > 64 {
		return fmt.Errorf("key is %d bytes; use 24 to 64", len(key))
	}
	return nil
}

// Settings are the process settings (docs/design.md#binary-and-settings): flags override SOCIALRX_* environment variables.
type Settings struct {
	Addr        string // SOCIALRX_ADDR
	DatabaseURL string // SOCIALRX_DATABASE_URL: sqlite:PATH or postgres://…
	ConfigPath  string // SOCIALRX_CONFIG; empty: embedded demo
	LogLevel    string // SOCIALRX_LOG_LEVEL: debug, info, warn, error
	LogFormat   string // SOCIALRX_LOG_FORMAT: text, json
	// RetryBudget is how long a webhook is retried before it is dead-lettered (SOCIALRX_RETRY_BUDGET).
	RetryBudget time.Duration
	// DeliveryTimeout bounds one webhook attempt (SOCIALRX_DELIVERY_TIMEOUT).
	DeliveryTimeout time.Duration
	// AckDeadline is how long a referral may wait unacknowledged before it is overdue (SOCIALRX_ACK_DEADLINE).
	AckDeadline time.Duration
	// MaxBodyBytes limits request bodies (SOCIALRX_MAX_BODY_BYTES).
	MaxBodyBytes int64
	// DeliveryLease is how long a claimed outbox message stays with this process before another may take it
	// (SOCIALRX_DELIVERY_LEASE); after a crash, its in-flight deliveries are retried once it expires. It must
	// exceed the longest attempt (3 × SOCIALRX_DELIVERY_TIMEOUT + 4s). Zero: the dispatcher's default, twice the longest
	// attempt and at least 60s (68s with the default timeout).
	DeliveryLease time.Duration
	// TokenKey signs SMART Backend Services access tokens (SOCIALRX_TOKEN_KEY: standard base64 of at least 32
	// random bytes). Instances sharing a database must share it; empty: a random key per process.
	TokenKey []byte
	// InboxIdleTimeout ends an inbox sign-in not used for this long (SOCIALRX_INBOX_IDLE_TIMEOUT; zero: 30
	// minutes, referral.DefaultSessionPolicy).
	InboxIdleTimeout time.Duration
	// InboxSessionMax ends an inbox sign-in this long after it began, however much it is used
	// (SOCIALRX_INBOX_SESSION_MAX; zero: 8 hours).
	InboxSessionMax time.Duration
	// BaseURL is the public URL GP systems and browsers reach socialrx at (SOCIALRX_BASE_URL), e.g.
	// "https://socialrx.example.org" (no trailing slash; a path prefix is allowed when a proxy strips it): the
	// base of every absolute URL socialrx writes (Location, fullUrl, links, notification references, SMART
	// discovery) and the audience of SMART client assertions. Never derived from a request's Host or
	// X-Forwarded-* headers. Empty: http://<the listen address> (see PublicBase).
	BaseURL string
	// CORSOrigins are the browser origins (scheme://host[:port]) allowed to call the FHIR API and the token
	// endpoint cross-origin (SOCIALRX_CORS_ORIGINS, comma-separated). Empty: CORS is off.
	CORSOrigins []string
	// Limits bound rates, concurrent bodies and Subscriptions (limits.go).
	Limits Limits
	// Security holds the outbound, secrets, metrics and demo settings (limits.go).
	Security Security
	// Retention holds the retention periods (retention.go).
	Retention Retention
}

// Defaults returns the settings used when nothing is set.
func Defaults() Settings {
	return Settings{
		Addr:            "127.0.0.1:8080",
		DatabaseURL:     "sqlite:socialrx.db",
		LogLevel:        "info",
		LogFormat:       "text",
		RetryBudget:     72 * time.Hour,
		DeliveryTimeout: 10 * time.Second,
		AckDeadline:     72 * time.Hour,
		MaxBodyBytes:    1 << 20,
		Limits:          DefaultLimits(),
		Retention:       DefaultRetention(),
	}
}

// FromEnv applies SOCIALRX_* variables (read through getenv) over s and validates the result.
func FromEnv(s Settings, getenv func(string) string) (Settings, error) {
	var errs []error
	str := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	dur := func(name string, dst *time.Duration) {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("%s: %q is not a positive duration like 72h or 30s", name, v))
				return
			}
			*dst = d
		}
	}
	str("SOCIALRX_ADDR", &s.Addr)
	str("SOCIALRX_DATABASE_URL", &s.DatabaseURL)
	str("SOCIALRX_CONFIG", &s.ConfigPath)
	str("SOCIALRX_LOG_LEVEL", &s.LogLevel)
	str("SOCIALRX_LOG_FORMAT", &s.LogFormat)
	dur("SOCIALRX_RETRY_BUDGET", &s.RetryBudget)
	dur("SOCIALRX_DELIVERY_TIMEOUT", &s.DeliveryTimeout)
	dur("SOCIALRX_ACK_DEADLINE", &s.AckDeadline)
	dur("SOCIALRX_DELIVERY_LEASE", &s.DeliveryLease)
	dur("SOCIALRX_INBOX_IDLE_TIMEOUT", &s.InboxIdleTimeout)
	dur("SOCIALRX_INBOX_SESSION_MAX", &s.InboxSessionMax)
	if v := getenv("SOCIALRX_TOKEN_KEY"); v != "" {
		k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
		if err != nil || len(k) < 32 {
			errs = append(errs, errors.New("SOCIALRX_TOKEN_KEY: must be standard base64 of at least 32 random bytes (e.g. openssl rand -base64 32)"))
		} else {
			s.TokenKey = k
		}
	}
	if v := getenv("SOCIALRX_BASE_URL"); v != "" {
		u, err := ParseBaseURL(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("SOCIALRX_BASE_URL: %w", err))
		} else {
			s.BaseURL = u
		}
	}
	if v := getenv("SOCIALRX_CORS_ORIGINS"); v != "" {
		origins, err := ParseOrigins(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("SOCIALRX_CORS_ORIGINS: %w", err))
		} else {
			s.CORSOrigins = origins
		}
	}
	if v := getenv("SOCIALRX_MAX_BODY_BYTES"); v != "" {
		var n int64
		if _, err := fmt.Sscan(v, &n); err != nil || n < 1024 {
			errs = append(errs, fmt.Errorf("SOCIALRX_MAX_BODY_BYTES: %q must be a whole number of bytes, at least 1024", v))
		} else {
			s.MaxBodyBytes = n
		}
	}
	var more []error
	s.Limits, more = limitsFromEnv(s.Limits, getenv)
	errs = append(errs, more...)
	s.Security, more = securityFromEnv(getenv)
	errs = append(errs, more...)
	s.Retention, more = retentionFromEnv(s.Retention, getenv)
	errs = append(errs, more...)
	if b := s.Limits.BodyBytes; !b.Off() && int64(b.Burst) < s.MaxBodyBytes {
		errs = append(errs, fmt.Errorf("SOCIALRX_RATE_BODY_BYTES: the burst (%d bytes) must hold the largest body, SOCIALRX_MAX_BODY_BYTES (%d)", b.Burst, s.MaxBodyBytes))
	}
	if err := s.Validate(); err != nil {
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

// Validate checks the settings' values.
func (s Settings) Validate() error {
	var errs []error
	switch s.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("SOCIALRX_LOG_LEVEL: %q must be debug, info, warn or error", s.LogLevel))
	}
	switch s.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("SOCIALRX_LOG_FORMAT: %q must be text or json", s.LogFormat))
	}
	if _, _, err := ParseDatabaseURL(s.DatabaseURL); err != nil {
		errs = append(errs, err)
	}
	if s.Addr == "" {
		errs = append(errs, errors.New("SOCIALRX_ADDR: must not be empty"))
	}
	if s.InboxIdleTimeout > s.InboxSessionMax && s.InboxSessionMax > 0 {
		errs = append(errs, fmt.Errorf("SOCIALRX_INBOX_IDLE_TIMEOUT: %s must not exceed SOCIALRX_INBOX_SESSION_MAX (%s)",
			s.InboxIdleTimeout, s.InboxSessionMax))
	}
	return errors.Join(errs...)
}

// ParseBaseURL checks a public base URL: absolute http or https, a host, no credentials, query or fragment; a
// path prefix is kept. It returns it without a trailing slash.
func ParseBaseURL(v string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(v))
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "":
		return "", fmt.Errorf("%q must be an absolute http(s) URL such as https://socialrx.example.org", v)
	case u.User != nil:
		return "", fmt.Errorf("%q must not carry credentials", redactURL(v))
	case u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(v, "?") || strings.HasSuffix(v, "#"):
		return "", fmt.Errorf("%q must not have a query or fragment", v)
	}
	u.Host = strings.ToLower(u.Host)
	return strings.TrimRight(u.String(), "/"), nil
}

// PublicBase is the public base URL a process serves under: s.BaseURL when set, else http:// and the address
// it listens on (listenAddr, host:port; a wildcard host becomes 127.0.0.1). configured is false in the second
// case: the URL is a guess that only fits clients on this machine.
func (s Settings) PublicBase(listenAddr string) (base string, configured bool) {
	if s.BaseURL != "" {
		return s.BaseURL, true
	}
	host, port, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return "http://" + listenAddr, false
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), false
}

// ParseOrigins reads a comma-separated list of browser origins: each scheme://host[:port] (http or https),
// without a path; "*" is refused (an allowed origin is named).
func ParseOrigins(v string) ([]string, error) {
	var out []string
	for o := range strings.SplitSeq(v, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		u, err := url.Parse(o)
		if o == "*" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("%q is not an origin: name each one as scheme://host[:port], e.g. https://app.example.org", o)
		}
		origin := strings.ToLower(u.Scheme + "://" + u.Host)
		if !slices.Contains(out, origin) {
			out = append(out, origin)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("names no origin")
	}
	return out, nil
}

// ParseDatabaseURL splits SOCIALRX_DATABASE_URL into a backend ("sqlite" or "postgres") and what it opens.
func ParseDatabaseURL(u string) (backend, target string, err error) {
	switch {
	case strings.HasPrefix(u, "sqlite:"):
		p := strings.TrimPrefix(u, "sqlite:")
		if p == "" {
			return "", "", errors.New("SOCIALRX_DATABASE_URL: sqlite: needs a file path, e.g. sqlite:socialrx.db")
		}
		return "sqlite", p, nil
	case strings.HasPrefix(u, "postgres://"), strings.HasPrefix(u, "postgresql://"):
		return "postgres", u, nil
	}
	return "", "", fmt.Errorf("SOCIALRX_DATABASE_URL: %q must start with sqlite: or postgres://", redactURL(u))
}

func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return u
	}
	return p.Redacted()
}
