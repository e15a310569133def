package sqlite

import (
	"context"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// BenchmarkClaimAndComplete is the dispatcher's store round for one message: claim it (with the claim
// filter the dispatcher passes), record a successful attempt. Since issue 11 a claim also reads the paused
// destinations, so this measures what that costs on the hot path.
func BenchmarkClaimAndComplete(b *testing.B) {
	s, _ := benchStore(b)
	ctx := context.Background()
	n := b.N
	for i := range n {
		if _, err := s.CreateReferral(ctx, benchIntake(i+1, benchPayload)); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now().Add(time.Hour)
	f := outbox.ClaimFilter{PerDestination: 8, Room: map[mapping.Destination]int{}}
	b.ResetTimer()
	for range n {
		ms, err := s.ClaimMessages(ctx, "bench", now, time.Minute, 1, f)
		if err != nil || len(ms) != 1 {
			b.Fatalf("claim: %d, %v", len(ms), err)
		}
		if err := s.CompleteAttempt(ctx, ms[0].ID, now, outbox.AttemptResult{Owner: "bench", State: outbox.StateDelivered,
			Attempt: outbox.Attempt{StatusCode: 204}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "messages/s")
}

// BenchmarkPollIdle is what an idle dispatcher's loop costs the store each time it wakes with nothing to do:
// a claim that finds nothing due (1,000 messages wait for later) and NextDue. Both read the paused
// destinations since issue 11.
func BenchmarkPollIdle(b *testing.B) {
	s, _ := benchStore(b)
	ctx := context.Background()
	for i := range 1000 {
		if _, err := s.CreateReferral(ctx, benchIntake(i+1, benchPayload)); err != nil {
			b.Fatal(err)
		}
	}
	past := time.Unix(0, 0)
	f := outbox.ClaimFilter{PerDestination: 8, Room: map[mapping.Destination]int{}}
	for b.Loop() {
		ms, err := s.ClaimMessages(ctx, "bench", past, time.Minute, 32, f)
		if err != nil || len(ms) != 0 {
			b.Fatalf("claim: %d, %v", len(ms), err)
		}
		if _, err := s.NextDue(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
