package postgres_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/socialrx/socialrx/outbox/postgres"
	"github.com/socialrx/socialrx/outbox/postgres/pgtest"
)

// BenchmarkCreateReferralParallel is PostgreSQL intake at the store: 1, 8 and 64 concurrent writers, each
// creating referrals with their outbox message, one transaction (one commit) each. Before issue 12 every
// referral write held one advisory lock per schema from its stamp to its commit, so writers queued behind
// each other's fsync.
func BenchmarkCreateReferralParallel(b *testing.B) {
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s, err := postgres.Open(b.Context(), pgtest.FreshSchema(b), postgres.Options{Logger: quiet, MaxConns: writers + 2, NoListen: true})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var next atomic.Int64
			total := int64(b.N)
			b.ResetTimer()
			var wg sync.WaitGroup
			for range writers {
				wg.Go(func() {
					for {
						n := next.Add(1)
						if n > total {
							return
						}
						if _, err := s.CreateReferral(b.Context(), testIntake(int(n))); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "referrals/s")
		})
	}
}
