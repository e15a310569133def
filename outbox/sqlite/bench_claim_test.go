package sqlite

import (
	"context"
	"fmt"
	"sync"
	"syscall"
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

// BenchmarkClaimAndCompleteBatch is the dispatcher's store round under a backlog, per message: claim 8
// messages (the default per-destination cap), record their 8 deliveries in one CompleteAttempts, each writing
// its Task version (businessStatus delivered). Besides the wall time (two durable commits a round) it reports
// the process's CPU per message (cpu-µs/msg), which is what the one writer spends: the figure to compare
// (issue 12).
func BenchmarkClaimAndCompleteBatch(b *testing.B) {
	const batch = 8
	s, _ := benchStore(b)
	ctx := context.Background()
	n := b.N * batch
	for i := range n {
		if _, err := s.CreateReferral(ctx, benchIntake(i+1, benchPayload)); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now().Add(time.Hour)
	f := outbox.ClaimFilter{PerDestination: batch, Room: map[mapping.Destination]int{}}
	cpu0 := processCPU(b)
	b.ResetTimer()
	for range b.N {
		ms, err := s.ClaimMessages(ctx, "bench", now, time.Minute, batch, f)
		if err != nil || len(ms) != batch {
			b.Fatalf("claim: %d, %v", len(ms), err)
		}
		cs := make([]outbox.Completion, len(ms))
		for i, m := range ms {
			cs[i] = outbox.Completion{ID: m.ID, Now: now, Result: outbox.AttemptResult{Owner: "bench",
				State: outbox.StateDelivered, Attempt: outbox.Attempt{StatusCode: 204}, Update: outbox.MarkDelivered}}
		}
		for _, err := range s.CompleteAttempts(ctx, cs) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(n), "cpu-µs/msg")
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "messages/s")
}

// processCPU is the process's user and system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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

// BenchmarkOverviewCounts is what the console's overview asks of the store on every reload, on 20,000
// messages (created by 32 concurrent writers, group-committed): counts by state, by destination and state,
// the deliveries of the last minute, the pauses and the inboxes.
func BenchmarkOverviewCounts(b *testing.B) {
	s, _ := benchStore(b)
	ctx := context.Background()
	const total = 20000
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < total; i += 32 {
				if _, err := s.CreateReferral(ctx, benchIntake(i+1, benchPayload)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, q := range []struct {
		name string
		run  func() error
	}{
		{"CountMessages", func() error { _, _, err := s.CountMessages(ctx); return err }},
		{"CountByDestination", func() error { _, err := s.CountByDestination(ctx); return err }},
		{"CountDelivered", func() error { _, err := s.CountDelivered(ctx, time.Now().Add(-time.Minute)); return err }},
		{"ListPauses", func() error { _, err := s.ListPauses(ctx); return err }},
		{"InboxStats", func() error { _, err := s.InboxStats(ctx); return err }},
	} {
		b.Run(q.name, func(b *testing.B) {
			for b.Loop() {
				if err := q.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkClaimBacklog is the dispatcher's store round for one message with a backlog of pending messages
// for one service whose in-flight room is one: claim (limit 32, as the dispatcher asks when it has free
// workers) and record a successful attempt. The claim's cost must not grow with the backlog (issue 12).
func BenchmarkClaimBacklog(b *testing.B) {
	for _, backlog := range []int{2000, 20000} {
		b.Run(fmt.Sprintf("pending=%d", backlog), func(b *testing.B) {
			s, _ := benchStore(b)
			ctx := context.Background()
			var wg sync.WaitGroup
			for w := range 32 {
				wg.Go(func() {
					for i := w; i < backlog; i += 32 {
						if _, err := s.CreateReferral(ctx, benchIntake(i+1, benchPayload)); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			now := time.Now().Add(time.Hour)
			walks := mapping.Destination{Kind: mapping.DestinationService, ID: "walks"}
			f := outbox.ClaimFilter{PerDestination: 8, Room: map[mapping.Destination]int{walks: 1}}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if i >= backlog {
					b.Fatal("backlog drained: lower -benchtime")
				}
				ms, err := s.ClaimMessages(ctx, "bench", now, time.Minute, 32, f)
				if err != nil || len(ms) != 1 {
					b.Fatalf("claim: %d, %v", len(ms), err)
				}
				if err := s.CompleteAttempt(ctx, ms[0].ID, now, outbox.AttemptResult{Owner: "bench", State: outbox.StateDelivered,
					Attempt: outbox.Attempt{StatusCode: 204}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "messages/s")
		})
	}
}
