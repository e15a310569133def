package outbox

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/socialrx/socialrx/mapping"
)

// nopStore is an empty Store for tests that never reach the database: reads find nothing, writes do
// nothing.
type nopStore struct{}

func (nopStore) CreateReferral(context.Context, mapping.Intake) (CreateResult, error) {
	return CreateResult{}, nil
}
func (nopStore) CreateAuditedReferral(context.Context, mapping.Intake, Disclosure) (CreateResult, error) {
	return CreateResult{}, nil
}
func (nopStore) GetReferral(context.Context, string) (Referral, error) {
	return Referral{}, ErrNotFound
}
func (nopStore) ReferralPractice(context.Context, string) (string, error) { return "", ErrNotFound }
func (nopStore) SearchReferrals(context.Context, ReferralQuery) ([]Referral, *Cursor, error) {
	return nil, nil, nil
}
func (nopStore) UpdateReferral(context.Context, string, int, time.Time, ReferralUpdate) (Referral, error) {
	return Referral{}, ErrNotFound
}
func (nopStore) Timeline(context.Context, string) ([]TimelineEntry, error) { return nil, ErrNotFound }
func (nopStore) ClaimMessages(context.Context, string, time.Time, time.Duration, int, ClaimFilter) ([]Message, error) {
	return nil, nil
}
func (nopStore) CompleteAttempt(context.Context, string, time.Time, AttemptResult) error { return nil }
func (nopStore) CompleteAttempts(_ context.Context, cs []Completion) []error {
	return make([]error, len(cs))
}
func (nopStore) ReleaseMessages(context.Context, string, time.Time) (int, error) { return 0, nil }
func (nopStore) ListMessages(context.Context, MessageQuery) ([]Message, error)   { return nil, nil }
func (nopStore) GetMessage(context.Context, string) (MessageDetail, error) {
	return MessageDetail{}, ErrNotFound
}
func (nopStore) ReplayMessages(context.Context, time.Time, ReplayRequest) ([]Message, error) {
	return nil, nil
}
func (nopStore) CountMessages(context.Context) (map[MessageState]int, time.Time, error) {
	return nil, time.Time{}, nil
}
func (nopStore) NextDue(context.Context) (time.Time, error) { return time.Time{}, nil }
func (nopStore) CreateSubscription(_ context.Context, sub Subscription, _ int) (Subscription, error) {
	return sub, nil
}
func (nopStore) GetSubscription(context.Context, string) (Subscription, error) {
	return Subscription{}, ErrNotFound
}
func (nopStore) UpdateSubscriptionStatus(context.Context, string, SubscriptionStatus, time.Time) (Subscription, error) {
	return Subscription{}, ErrNotFound
}
func (nopStore) ListSubscriptions(context.Context, SubscriptionQuery) ([]Subscription, error) {
	return nil, nil
}
func (nopStore) UseNonce(context.Context, string, time.Time, time.Time) (bool, error) {
	return true, nil
}
func (nopStore) CountByStatus(context.Context, string) (map[mapping.TaskStatus]int, error) {
	return map[mapping.TaskStatus]int{}, nil
}
func (nopStore) CreateSession(context.Context, Session) error { return nil }
func (nopStore) TouchSession(context.Context, string, time.Time, time.Duration) (Session, error) {
	return Session{}, ErrNotFound
}
func (nopStore) DeleteSession(context.Context, string) error                      { return nil }
func (nopStore) PruneSessions(context.Context, time.Time, time.Time) (int, error) { return 0, nil }
func (nopStore) RecordSignInFailure(context.Context, []string, time.Time, time.Time) ([]FailureCount, error) {
	return nil, nil
}
func (nopStore) SignInFailures(context.Context, []string, time.Time) ([]FailureCount, error) {
	return nil, nil
}
func (nopStore) CountReferrals(context.Context, ReferralQuery) (int, error) { return 0, nil }
func (nopStore) ReferralVersions(context.Context, string) ([]Referral, error) {
	return nil, ErrNotFound
}
func (nopStore) ReferralVersion(context.Context, string, int) (Referral, error) {
	return Referral{}, ErrNotFound
}
func (nopStore) QueueHeartbeats(context.Context, time.Time, HeartbeatFunc) (int, error) {
	return 0, nil
}
func (nopStore) Changes() <-chan struct{}                            { return nil }
func (nopStore) Ping(context.Context) error                          { return nil }
func (nopStore) CheckWrite(context.Context, string, time.Time) error { return nil }
func (nopStore) Close() error                                        { return nil }

var _ Store = nopStore{}

func testLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// status answers with code, and a Retry-After header when retryAfter is not empty.
func status(code int, retryAfter string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(code)
	}
}

func redirect(location string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Location", location)
		w.WriteHeader(http.StatusFound)
	}
}

func newTestRequest(url string) (*retryablehttp.Request, error) {
	return retryablehttp.NewRequestWithContext(context.Background(), http.MethodPost, url, []byte(`{}`))
}
