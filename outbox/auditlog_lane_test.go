package outbox

import (
	"strings"
	"testing"
)

// TestLend: a lane is lent to one holder at a time; one released is lent again, numbering its next record
// after the record released with it, or after nothing known (released with nil, or with another chain's
// record); released lanes beyond maxIdleLanes are not kept.
func TestLend(t *testing.T) {
	a := NewAuditLog(nopStore{}, AuditLogOptions{Instance: "serve"})
	defer a.Close()
	one, two := a.Lend(), a.Lend()
	if one.Chain == two.Chain || one.Chain == a.Chain() || !strings.HasPrefix(one.Chain, "serve-") || one.Instance != "serve" {
		t.Fatalf("lanes %s and %s (the AuditLog's chain %s): want two new chains of serve", one.Chain, two.Chain, a.Chain())
	}
	if d := one.Disclosure(AuditRecord{ChainSeq: 7, PrevHash: "x"}); d.Record.Chain != one.Chain || d.Record.ChainSeq != 0 ||
		d.Record.PrevHash != "" || d.Instance != "serve" {
		t.Errorf("a new lane's disclosure: %+v; want its chain, not numbered", d)
	}
	one.Release(&AuditRecord{Chain: one.Chain, ChainSeq: 3, Hash: "h3"})
	again := a.Lend()
	if d := again.Disclosure(AuditRecord{}); again.Chain != one.Chain || d.Record.ChainSeq != 4 || d.Record.PrevHash != "h3" {
		t.Errorf("the lane lent again: %s, %+v; want %s numbered 4 after h3", again.Chain, d.Record, one.Chain)
	}
	again.Release(&AuditRecord{Chain: two.Chain, ChainSeq: 9, Hash: "h9"})
	if d := a.Lend().Disclosure(AuditRecord{}); d.Record.ChainSeq != 0 {
		t.Errorf("a lane released with another chain's record: numbered %d, want not numbered", d.Record.ChainSeq)
	}
	var lanes []Lane
	for range maxIdleLanes + 5 {
		lanes = append(lanes, a.Lend())
	}
	for _, l := range lanes {
		l.Release(nil)
	}
	if len(a.lanes) != maxIdleLanes {
		t.Errorf("%d idle lanes kept, want %d", len(a.lanes), maxIdleLanes)
	}
}
