package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore/sqlstoretest"
)

// BenchmarkRawInsertLoop is the baseline: a bare single-writer loop committing one small INSERT per
// transaction, on the same file settings as the store (WAL, synchronous=FULL, BEGIN IMMEDIATE).
func BenchmarkRawInsertLoop(b *testing.B) {
	ctx := context.Background()
	db, err := openDB(filepath.Join(b.TempDir(), "raw.db"), true, 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO t (v) VALUES (?)`, fmt.Sprint("row ", i)); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}

// benchPayload is a ServiceRequest-sized JSON document (~2 KB), used as both the stored ServiceRequest and
// the webhook payload.
var benchPayload = json.RawMessage(`{"resourceType":"ServiceRequest","note":"` + strings.Repeat("x", 2000) + `"}`)

func benchStore(b *testing.B) (*Store, *atomic.Int64) {
	b.Helper()
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "store.db"), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	var batches atomic.Int64
	s.afterBatch = func(int) { batches.Add(1) }
	return s, &batches
}

// BenchmarkCreateReferralSerial is one client creating referrals one after another: one commit each.
func BenchmarkCreateReferralSerial(b *testing.B) {
	s, batches := benchStore(b)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		if _, err := s.CreateReferral(ctx, benchIntake(i, benchPayload)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "referrals/s")
	b.ReportMetric(float64(batches.Load())/b.Elapsed().Seconds(), "commits/s")
}

// BenchmarkCreateReferralParallel is many concurrent clients (64 on 2 cores) creating referrals: the
// writer group-commits them. referrals/s is what intake gets; commits/s is the fsync rate it needs.
func BenchmarkCreateReferralParallel(b *testing.B) {
	s, batches := benchStore(b)
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.CreateReferral(ctx, benchIntake(int(n.Add(1)), benchPayload)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "referrals/s")
	b.ReportMetric(float64(batches.Load())/b.Elapsed().Seconds(), "commits/s")
	b.ReportMetric(float64(b.N)/float64(max(batches.Load(), 1)), "referrals/commit")
}

// BenchmarkSearchPageAndTotal measures what a GP system's search costs over 10,000 referrals of its practice
// (issue 8: every searchset carries Bundle.total): a page of 50 in (updated_at, id) order, the count of all
// matches, and the ServiceRequest status filter (in the query, so a page is full).
func BenchmarkSearchPageAndTotal(b *testing.B) {
	ctx := context.Background()
	s, _ := benchStore(b)
	dest := mapping.Destination{Kind: mapping.DestinationService, ID: "frome-walks"}
	t0 := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	const n = 10000
	for i := range n {
		in := sqlstoretest.Intake(i, t0.Add(time.Duration(i)*time.Millisecond), dest, json.RawMessage(`{}`))
		if i%10 == 0 {
			in.Referral.ServiceRequestStatus = "revoked"
		}
		if _, err := s.CreateReferral(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
	q := outbox.ReferralQuery{Practices: []string{"A81001"}, Limit: 50}
	b.Run("page", func(b *testing.B) {
		for b.Loop() {
			if refs, _, err := s.SearchReferrals(ctx, q); err != nil || len(refs) != 50 {
				b.Fatal(len(refs), err)
			}
		}
	})
	b.Run("total", func(b *testing.B) {
		for b.Loop() {
			if c, err := s.CountReferrals(ctx, q); err != nil || c != n {
				b.Fatal(c, err)
			}
		}
	})
	revoked := q
	revoked.ServiceRequestStatuses = []string{"revoked"}
	b.Run("revoked-page", func(b *testing.B) {
		for b.Loop() {
			if refs, _, err := s.SearchReferrals(ctx, revoked); err != nil || len(refs) != 50 {
				b.Fatal(len(refs), err)
			}
		}
	})
	b.Run("revoked-total", func(b *testing.B) {
		for b.Loop() {
			if c, err := s.CountReferrals(ctx, revoked); err != nil || c != n/10 {
				b.Fatal(c, err)
			}
		}
	})
}
