// Package outboxtest is the outbox.Store conformance suite: every store behaviour, written once and run on
// every backend against a real database (outbox/sqlite and outbox/postgres):
//
//	func TestStore(t *testing.T) {
//		outboxtest.Run(t, func(t *testing.T, opts outboxtest.Options) outbox.Store {
//			s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "db"), sqlite.Options{FailAfter: opts.FailAfter})
//			...
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// Each subtest opens its own empty store and runs in parallel. Times come from a fixed clock (whole
// microseconds, UTC); nothing sleeps.
package outboxtest

import (
	"testing"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// Steps of CreateReferral's (and CreateAuditedReferral's) transaction after which a backend calls
// Options.FailAfter, in this order.
const (
	StageReferral    = "referral"    // the referral row is written
	StageIdentifiers = "identifiers" // its identifiers are written
	StageMessages    = "messages"    // its outbox messages are written
	StageEvents      = "events"      // its timeline entry is written (the last step of CreateReferral)
	StageAudit       = "audit"       // its audit record is appended (CreateAuditedReferral's last step)
)

// Options are what the suite needs from a backend beyond the Store contract.
type Options struct {
	// FailAfter must be called by the backend after each step of CreateReferral's transaction (the Stage
	// constants) with the intake being created; a non-nil error must fail that create (returned wrapped or
	// as is, matching errors.Is) and roll back everything it wrote, and nothing else.
	FailAfter func(stage string, in mapping.Intake) error
	// Notify, when not nil, must be the backend's subscription notification renderer (its fan-out calls it
	// for every notification); nil: the backend's default.
	Notify outbox.NotifyFunc
}

// Opener opens a new, empty store for one subtest and closes it when the subtest ends.
type Opener func(t *testing.T, opts Options) outbox.Store

// Run runs every conformance test against stores made by open.
func Run(t *testing.T, open func(t *testing.T, opts Options) outbox.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Opener)
	}{
		{"CreateAndGet", testCreateAndGet},
		{"IdempotentResend", testIdempotentResend},
		{"Conflict", testConflict},
		{"IdentifiersPerPractice", testIdentifiersPerPractice},
		{"IdentifiersPerPracticeConcurrent", testIdentifiersPerPracticeConcurrent},
		{"ConcurrentIdenticalCreates", testConcurrentIdenticalCreates},
		{"ConcurrentCreatesSharingIdentifiers", testConcurrentCreatesSharingIdentifiers},
		{"AtomicCreate", testAtomicCreate},
		{"GroupCommitFailureIsolated", testGroupCommitFailureIsolated},
		{"SearchFilters", testSearchFilters},
		{"KeysetPaging", testKeysetPaging},
		{"UpdatedAtFollowsCommitOrder", testUpdatedAtFollowsCommitOrder},
		{"UpdateReferral", testUpdateReferral},
		{"UpdateReferralUnchanged", testUpdateReferralUnchanged},
		{"ErrNoChange", testErrNoChange},
		{"ClaimOrderPerReferral", testClaimOrderPerReferral},
		{"ClaimDeadBlocks", testClaimDeadBlocks},
		{"ClaimAcrossReferrals", testClaimAcrossReferrals},
		{"ClaimNamesPractice", testClaimNamesPractice},
		{"ClaimFiltered", testClaimFiltered},
		{"ClaimFilteredInterleaved", testClaimFilteredInterleaved},
		{"LeaseExpiryAndLeaseLost", testLeaseExpiryAndLeaseLost},
		{"CompleteAttemptStates", testCompleteAttemptStates},
		{"CompleteAttemptUpdate", testCompleteAttemptUpdate},
		{"CompleteAttempts", testCompleteAttempts},
		{"CompleteAttemptsBatch", testCompleteAttemptsBatch},
		{"CompleteAttemptsVersions", testCompleteAttemptsVersions},
		{"ReleaseMessages", testReleaseMessages},
		{"ReplayMessages", testReplayMessages},
		{"ReplayByFilter", testReplayByFilter},
		{"ListMessages", testListMessages},
		{"CountAndNextDue", testCountAndNextDue},
		{"Changes", testChanges},
		{"Ping", testPing},
		{"SubscriptionCRUD", testSubscriptionCRUD},
		{"SubscriptionLimit", testSubscriptionLimit},
		{"SubscriptionFanOut", testSubscriptionFanOut},
		{"SubscriptionFanOutAtomic", testSubscriptionFanOutAtomic},
		{"SubscriptionNumberingConcurrent", testSubscriptionNumberingConcurrent},
		{"SubscriptionClaimOrder", testSubscriptionClaimOrder},
		{"WithdrawPending", testWithdrawPending},
		{"WithdrawDead", testWithdrawDead},
		{"CancelAfterDelivery", testCancelAfterDelivery},
		{"CancelWhileInflight", testCancelWhileInflight},
		{"CancelAfterAcknowledgement", testCancelAfterAcknowledgement},
		{"Nonces", testNonces},
		{"DiscardMessages", testDiscardMessages},
		{"DiscardUnblocks", testDiscardUnblocks},
		{"PauseHoldsClaims", testPauseHoldsClaims},
		{"ResumeKeepsBudgetAndOrder", testResumeKeepsBudgetAndOrder},
		{"AttemptResponse", testAttemptResponse},
		{"OverviewCounts", testOverviewCounts},
		{"ListByType", testListByType},
		{"ReplayPaced", testReplayPaced},
		{"Sessions", testSessions},
		{"SessionsPrune", testSessionsPrune},
		{"SignInFailures", testSignInFailures},
		{"CountByStatus", testCountByStatus},
		{"ReferralVersions", testReferralVersions},
		{"SearchListsAndCount", testSearchListsAndCount},
		{"SubscriptionHandshakeAndError", testSubscriptionHandshakeAndError},
		{"SubscriptionHeartbeats", testSubscriptionHeartbeats},
		{"Retention", testRetention},
		{"AuditAppendAndList", testAuditAppendAndList},
		{"CompleteAttemptsDisclosures", testCompleteAttemptsDisclosures},
		{"CreateAuditedReferral", testCreateAuditedReferral},
		{"CreateAuditedReferralConcurrent", testCreateAuditedReferralConcurrent},
		{"AuditChainsConcurrent", testAuditChainsConcurrent},
		{"AuditHeadConflict", testAuditHeadConflict},
		{"MeasuresKept", testMeasuresKept},
		{"CapacityStates", testCapacityStates},
		{"CapacityMaxOpenConcurrent", testCapacityMaxOpenConcurrent},
		{"RouteCapacities", testRouteCapacities},
		{"ReferralPractice", testReferralPractice},
		{"CreateRefusesTakenIDs", testCreateRefusesTakenIDs},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open)
		})
	}
}
