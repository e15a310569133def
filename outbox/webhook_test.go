package outbox

import (
	"errors"
	"maps"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
)

// Known vectors, computed independently of this code.
const (
	// The Standard Webhooks specification's example. Reproduce with:
	//
	//	KEY=$(printf MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw | base64 -d | xxd -p -c 256)
	//	printf '%s' 'msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}' |
	//	  openssl dgst -sha256 -mac HMAC -macopt hexkey:$KEY -binary | base64
	specSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTimestamp = 1614265330
	specBody      = `{"test": 2432232314}`
	specSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

	// A socialrx-shaped vector. Reproduce with:
	//
	//	KEY=$(printf socialrx-test-signing-key-32byte | xxd -p -c 256)
	//	printf '%s' '01890a5d-ac96-774b-bcce-b302099a8057.1767225600.{"type":"referral.created","data":{"id":"r1"}}' |
	//	  openssl dgst -sha256 -mac HMAC -macopt hexkey:$KEY -binary | base64
	ownSecret    = "whsec_c29jaWFscngtdGVzdC1zaWduaW5nLWtleS0zMmJ5dGU=" // base64 of "socialrx-test-signing-key-32byte"
	ownID        = "01890a5d-ac96-774b-bcce-b302099a8057"
	ownTimestamp = 1767225600 // 2026-01-01T00:00:00Z
	ownBody      = `{"type":"referral.created","data":{"id":"r1"}}`
	ownSignature = "v1,XTt74pAN7RsufmKp4ZNhFkAmVQ1KKmw8ZCek1Y9JVag="
)

func TestSignKnownVectors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, secret, id string
		ts               int64
		body, want       string
	}{
		{"standard webhooks spec", specSecret, specID, specTimestamp, specBody, specSignature},
		{"socialrx", ownSecret, ownID, ownTimestamp, ownBody, ownSignature},
		{"secret without prefix", ownSecret[len(SecretPrefix):], ownID, ownTimestamp, ownBody, ownSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Sign(tt.secret, tt.id, time.Unix(tt.ts, 0), []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Sign = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSignInvalidSecret(t *testing.T) {
	t.Parallel()
	for _, secret := range []string{"", "whsec_", "whsec_not base64!", "whsec_%%%%"} {
		if _, err := Sign(secret, "id", time.Unix(0, 0), nil); !errors.Is(err, ErrInvalidSecret) {
			t.Errorf("Sign(%q) error = %v, want ErrInvalidSecret", secret, err)
		}
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	now := time.Unix(ownTimestamp, 0)
	hdr := func(id, ts, sig string) http.Header {
		h := http.Header{}
		if id != "" {
			h.Set(HeaderWebhookID, id)
		}
		if ts != "" {
			h.Set(HeaderWebhookTimestamp, ts)
		}
		if sig != "" {
			h.Set(HeaderWebhookSignature, sig)
		}
		return h
	}
	ts := strconv.Itoa(ownTimestamp)
	otherSig, err := Sign("whsec_"+"b3RoZXIta2V5", ownID, now, []byte(ownBody))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		secret    string
		header    http.Header
		body      string
		now       time.Time
		tolerance time.Duration
		want      error
	}{
		{"valid", ownSecret, hdr(ownID, ts, ownSignature), ownBody, now, 0, nil},
		{"spec vector", specSecret, hdr(specID, strconv.Itoa(specTimestamp), specSignature), specBody, time.Unix(specTimestamp+60, 0), 0, nil},
		{"several signatures, one matches", ownSecret, hdr(ownID, ts, otherSig+" v2,abc "+ownSignature), ownBody, now, 0, nil},
		{"only other versions", ownSecret, hdr(ownID, ts, "v1a,"+ownSignature[3:]), ownBody, now, 0, ErrNoMatchingSignature},
		{"wrong secret", "whsec_b3RoZXIta2V5", hdr(ownID, ts, ownSignature), ownBody, now, 0, ErrNoMatchingSignature},
		{"body changed", ownSecret, hdr(ownID, ts, ownSignature), ownBody + " ", now, 0, ErrNoMatchingSignature},
		{"id changed", ownSecret, hdr("other", ts, ownSignature), ownBody, now, 0, ErrNoMatchingSignature},
		{"garbage signature", ownSecret, hdr(ownID, ts, "v1,!!!"), ownBody, now, 0, ErrNoMatchingSignature},
		{"missing id", ownSecret, hdr("", ts, ownSignature), ownBody, now, 0, ErrMissingHeader},
		{"missing timestamp", ownSecret, hdr(ownID, "", ownSignature), ownBody, now, 0, ErrMissingHeader},
		{"missing signature", ownSecret, hdr(ownID, ts, ""), ownBody, now, 0, ErrMissingHeader},
		{"bad timestamp", ownSecret, hdr(ownID, "yesterday", ownSignature), ownBody, now, 0, ErrInvalidTimestamp},
		{"stale", ownSecret, hdr(ownID, ts, ownSignature), ownBody, now.Add(DefaultTolerance + time.Second), 0, ErrTimestampOutOfTolerance},
		{"edge of tolerance", ownSecret, hdr(ownID, ts, ownSignature), ownBody, now.Add(DefaultTolerance), 0, nil},
		{"future", ownSecret, hdr(ownID, ts, ownSignature), ownBody, now.Add(-DefaultTolerance - time.Second), 0, ErrTimestampOutOfTolerance},
		{"custom tolerance", ownSecret, hdr(ownID, ts, ownSignature), ownBody, now.Add(time.Minute), 30 * time.Second, ErrTimestampOutOfTolerance},
		{"bad secret", "whsec_", hdr(ownID, ts, ownSignature), ownBody, now, 0, ErrInvalidSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Verify(tt.secret, tt.header, []byte(tt.body), tt.now, tt.tolerance)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Errorf("Verify error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	body := []byte(`{"type":"referral.cancelled"}`)
	sig, err := Sign(ownSecret, "m-1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set(HeaderWebhookID, "m-1")
	h.Set(HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(HeaderWebhookSignature, sig)
	if err := Verify(ownSecret, h, body, now, time.Minute); err != nil {
		t.Fatal(err)
	}
}

// TestDirectoryInFlight: the services that set their own cap are named with it; one that sets none, or is
// pull-only, is left out (PerDestination applies).
func TestDirectoryInFlight(t *testing.T) {
	t.Parallel()
	dir := mapping.Directory{Services: []mapping.Service{
		{ID: "small", Delivery: mapping.Delivery{URL: "https://small.example/hook", Secret: ownSecret, MaxInFlight: 1}},
		{ID: "council", Delivery: mapping.Delivery{URL: "https://council.example/hook", Secret: ownSecret, MaxInFlight: 24}},
		{ID: "walks", Delivery: mapping.Delivery{URL: "https://walks.example/hook", Secret: ownSecret}},
		{ID: "inbox-only"},
	}}
	want := map[mapping.Destination]int{
		{Kind: mapping.DestinationService, ID: "small"}:   1,
		{Kind: mapping.DestinationService, ID: "council"}: 24,
	}
	if got := DirectoryInFlight(dir); !maps.Equal(got, want) {
		t.Errorf("DirectoryInFlight = %v, want %v", got, want)
	}
}

func TestDirectoryEndpoints(t *testing.T) {
	t.Parallel()
	dir := mapping.Directory{Services: []mapping.Service{
		{ID: "walks", Delivery: mapping.Delivery{URL: "https://walks.example/hook", Secret: ownSecret}},
		{ID: "inbox-only"},
	}}
	r := DirectoryEndpoints(dir)
	tests := []struct {
		dest   mapping.Destination
		want   Endpoint
		wantOK bool
	}{
		{mapping.Destination{Kind: mapping.DestinationService, ID: "walks"}, Endpoint{URL: "https://walks.example/hook", Secret: ownSecret}, true},
		{mapping.Destination{Kind: mapping.DestinationService, ID: "inbox-only"}, Endpoint{}, true},
		{mapping.Destination{Kind: mapping.DestinationService, ID: "nope"}, Endpoint{}, false},
		{mapping.Destination{Kind: mapping.DestinationSubscription, ID: "walks"}, Endpoint{}, false},
	}
	for _, tt := range tests {
		got, err := r.Endpoint(t.Context(), tt.dest)
		ok := err == nil
		if ok != tt.wantOK || got.URL != tt.want.URL || got.Secret != tt.want.Secret {
			t.Errorf("Endpoint(%s) = %+v, %v; want %+v, %v", tt.dest, got, ok, tt.want, tt.wantOK)
		}
		if !ok && !errors.Is(err, ErrUnknownDestination) {
			t.Errorf("Endpoint(%s): %v, want ErrUnknownDestination", tt.dest, err)
		}
	}
}

// FuzzVerify: Verify never panics, whatever a sender puts in the headers.
func FuzzVerify(f *testing.F) {
	f.Add(ownID, strconv.Itoa(ownTimestamp), ownSignature, ownBody)
	f.Add("", "", "", "")
	f.Add("x", "-99999999999999999999", "v1, v1,, ,", "{}")
	now := time.Unix(ownTimestamp, 0)
	f.Fuzz(func(t *testing.T, id, ts, sig, body string) {
		h := http.Header{}
		h.Set(HeaderWebhookID, id)
		h.Set(HeaderWebhookTimestamp, ts)
		h.Set(HeaderWebhookSignature, sig)
		err := Verify(ownSecret, h, []byte(body), now, 0)
		if err == nil && (id != ownID || body != ownBody) {
			t.Errorf("Verify accepted a forged request: id %q body %q", id, body)
		}
	})
}
