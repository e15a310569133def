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
