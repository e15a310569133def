package outbox

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/socialrx/socialrx/mapping"
)

// Standard Webhooks headers (https://www.standardwebhooks.com/) sent with every delivery.
const (
	// HeaderWebhookID carries the outbox message id: identical on every retry and replay, so a receiver
	// dedupes on it.
	HeaderWebhookID = "webhook-id"
	// HeaderWebhookTimestamp carries the attempt's time in unix seconds.
	HeaderWebhookTimestamp = "webhook-timestamp"
	// HeaderWebhookSignature carries one or more space-separated "v1,<base64 HMAC-SHA256>" signatures.
	HeaderWebhookSignature = "webhook-signature"
)

// SecretPrefix is the conventional prefix of a Standard Webhooks signing secret ("whsec_<base64 key>").
const SecretPrefix = "whsec_"

// DefaultTolerance is how far a webhook-timestamp may be from the receiver's clock before Verify rejects it.
const DefaultTolerance = 5 * time.Minute

// Errors returned by Sign and Verify. Verify wraps them, so match with errors.Is.
var (
	// ErrInvalidSecret: the secret is not "whsec_" followed by a non-empty base64 key.
	ErrInvalidSecret = errors.New("invalid webhook signing secret")
	// ErrMissingHeader: webhook-id, webhook-timestamp or webhook-signature is absent.
	ErrMissingHeader = errors.New("missing webhook header")
	// ErrInvalidTimestamp: webhook-timestamp is not an integer number of unix seconds.
	ErrInvalidTimestamp = errors.New("invalid webhook timestamp")
	// ErrTimestampOutOfTolerance: webhook-timestamp is too old (a replayed request) or too far in the future.
	ErrTimestampOutOfTolerance = errors.New("webhook timestamp outside tolerance")
	// ErrNoMatchingSignature: no v1 signature in webhook-signature matches the body.
	ErrNoMatchingSignature = errors.New("no matching webhook signature")
)

// signingKey decodes a "whsec_<base64>" secret (the prefix is optional, as in the reference libraries).
func signingKey(secret string) ([]byte, error) {
	raw := strings.TrimPrefix(secret, SecretPrefix)
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		key, err = base64.RawStdEncoding.DecodeString(raw)
	}
	if err != nil || len(key) == 0 {
		return nil, ErrInvalidSecret
	}
	return key, nil
}

func mac(key []byte, msgID string, ts int64, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msgID))
	h.Write([]byte{'.'})
	h.Write([]byte(strconv.FormatInt(ts, 10)))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Sign returns the webhook-signature value for one delivery: "v1," followed by the base64 HMAC-SHA256 of
// "msgID.timestamp.body" (timestamp in unix seconds), keyed with the base64-decoded part of secret after
// "whsec_". It fails only with ErrInvalidSecret.
func Sign(secret string, msgID string, ts time.Time, body []byte) (string, error) {
	key, err := signingKey(secret)
	if err != nil {
		return "", err
	}
	return "v1," + base64.StdEncoding.EncodeToString(mac(key, msgID, ts.Unix(), body)), nil
}

// Verify is what a receiver does with a socialrx webhook: it checks that header carries webhook-id,
// webhook-timestamp and webhook-signature, that the timestamp is within tolerance of now (0: DefaultTolerance),
// and that at least one of the space-separated "v1,…" signatures matches body under secret. It compares in
// constant time. Signatures of other versions are ignored. The body must be the raw bytes received.
func Verify(secret string, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	key, err := signingKey(secret)
	if err != nil {
		return err
	}
	id, tsText, sigs := header.Get(HeaderWebhookID), header.Get(HeaderWebhookTimestamp), header.Get(HeaderWebhookSignature)
	switch {
	case id == "":
		return fmt.Errorf("%w: %s", ErrMissingHeader, HeaderWebhookID)
	case tsText == "":
		return fmt.Errorf("%w: %s", ErrMissingHeader, HeaderWebhookTimestamp)
	case sigs == "":
		return fmt.Errorf("%w: %s", ErrMissingHeader, HeaderWebhookSignature)
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrInvalidTimestamp, tsText)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if tol, n := int64(tolerance/time.Second), now.Unix(); ts < n-tol || ts > n+tol {
		return fmt.Errorf("%w: timestamp %d, now %d, tolerance %s", ErrTimestampOutOfTolerance, ts, n, tolerance)
	}
	want := mac(key, id, ts, body)
	for _, s := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			continue
		}
		if hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrNoMatchingSignature
}

// Endpoint is where and how one destination receives its messages, looked up at delivery time.
type Endpoint struct {
	// URL receives a POST of each message's payload. Empty: nothing can deliver (the message goes dead).
	URL string
	// Secret is the Standard Webhooks signing secret ("whsec_<base64>"). Empty: requests are not signed
	// (for destinations such as FHIR Subscription rest-hooks that authenticate by Header instead).
	Secret string
	// Header holds extra request headers (for example a FHIR Subscription's channel.header). It cannot
	// override the webhook-* headers.
	Header http.Header
	// Guarded says the URL came from a client (a FHIR Subscription's channel.endpoint), not the operator: the
	// dispatcher connects only through its outbound policy (DispatcherOptions.Egress), and plain http only to
	// a loopback host the policy allows.
	Guarded bool
}

// EndpointResolver looks up a destination's endpoint at delivery time, so that a rotated secret or a moved
// URL applies to messages already queued. The dispatcher calls it with the attempt's context (a lookup may
// do I/O: a Subscription is read from the store). An error matching ErrUnknownDestination or
// ErrDestinationOff is permanent (the message goes dead at once; replay it once the destination is back);
// any other error is a failed lookup, retried like a network error.
type EndpointResolver interface {
	Endpoint(ctx context.Context, d mapping.Destination) (Endpoint, error)
}

// EndpointFunc adapts a lookup that does no I/O to EndpointResolver: ok false means the destination is
// unknown (an error matching ErrUnknownDestination, "no endpoint for destination kind:id").
type EndpointFunc func(d mapping.Destination) (ep Endpoint, ok bool)

// Endpoint calls f.
func (f EndpointFunc) Endpoint(_ context.Context, d mapping.Destination) (Endpoint, error) {
	ep, ok := f(d)
	if !ok {
		return Endpoint{}, noEndpointError{d}
	}
	return ep, nil
}

// noEndpointError is EndpointFunc's unknown destination.
type noEndpointError struct{ dest mapping.Destination }

func (e noEndpointError) Error() string        { return "no endpoint for destination " + e.dest.String() }
func (e noEndpointError) Is(target error) bool { return target == ErrUnknownDestination }

// DirectoryInFlight is the directory's services' own caps on requests in flight (mapping.Delivery.MaxInFlight),
// for DispatcherOptions.InFlight: a service that sets none is left out, and gets PerDestination.
func DirectoryInFlight(dir mapping.Directory) map[mapping.Destination]int {
	caps := map[mapping.Destination]int{}
	for _, s := range dir.Services {
		if s.Delivery.URL != "" && s.Delivery.MaxInFlight > 0 {
			caps[mapping.Destination{Kind: mapping.DestinationService, ID: s.ID}] = s.Delivery.MaxInFlight
		}
	}
	return caps
}

// DirectoryEndpoints resolves service destinations from the community directory's delivery settings
// (a pull-only service resolves to an Endpoint with an empty URL). Other destination kinds are not found.
func DirectoryEndpoints(dir mapping.Directory) EndpointResolver {
	return EndpointFunc(func(d mapping.Destination) (Endpoint, bool) {
		switch d.Kind {
		case mapping.DestinationService:
			s, ok := dir.Service(d.ID)
			if !ok {
				return Endpoint{}, false
			}
			return Endpoint{URL: s.Delivery.URL, Secret: s.Delivery.Secret}, true
		case mapping.DestinationSubscription:
			return Endpoint{}, false
		}
		return Endpoint{}, false
	})
}
