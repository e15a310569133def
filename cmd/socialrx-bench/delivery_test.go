package main

import (
	"io"
	"log/slog"
	"testing"
	"time"
)

// TestThroughputRunDelivers: the delivery benchmark's drain (its old flags, make bench-old) delivers a small
// backlog on a real SQLite file to the loopback sink within its timeout, each webhook once.
func TestThroughputRunDelivers(t *testing.T) {
	t.Parallel()
	o := deliveryOptions{messages: 20, timeout: time.Minute, log: slog.New(slog.DiscardHandler), out: io.Discard,
		dir: t.TempDir(), ctx: t.Context()}
	d, err := throughputRun(o, 8)
	if err != nil {
		t.Fatal(err)
	}
	if d.delivered != 20 || d.dups != 0 {
		t.Errorf("delivered %d (dups %d); want 20, none twice", d.delivered, d.dups)
	}
}
