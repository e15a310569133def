package outbox_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	"github.com/socialrx/socialrx/outbox"
)

// A community service's receiver: read the raw body, verify it, dedupe on webhook-id, answer 2xx quickly.
// In shell, the same check is:
//
//	KEY=$(printf %s "${SECRET#whsec_}" | base64 -d | xxd -p -c 256)
//	printf '%s' "$ID.$TS.$BODY" | openssl dgst -sha256 -mac HMAC -macopt hexkey:$KEY -binary | base64
//
// and the result must equal the part after "v1," of one of the webhook-signature values.
func ExampleVerify() {
	const secret = "whsec_c29jaWFscngtdGVzdC1zaWduaW5nLWtleS0zMmJ5dGU="
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "unreadable body", http.StatusBadRequest)
			return
		}
		if err := outbox.Verify(secret, r.Header, body, time.Now(), 5*time.Minute); err != nil {
			http.Error(w, "invalid signature", http.StatusUnauthorized) // 4xx: socialrx will not retry
			return
		}
		// Store the event keyed by r.Header.Get("webhook-id"), ignoring ids already seen, then:
		w.WriteHeader(http.StatusNoContent)
	})

	// What socialrx sends:
	body := `{"type":"referral.created","timestamp":"2026-01-05T09:00:00Z","data":{"id":"r1"}}`
	now := time.Now()
	sig, _ := outbox.Sign(secret, "01890a5d-ac96-774b-bcce-b302099a8057", now, []byte(body))
	req := httptest.NewRequest(http.MethodPost, "/hooks/referrals", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(outbox.HeaderWebhookID, "01890a5d-ac96-774b-bcce-b302099a8057")
	req.Header.Set(outbox.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(outbox.HeaderWebhookSignature, sig)
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	fmt.Println(rec.Code)
	// Output: 204
}
