package postgres_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/postgres"
)

// wireCounter is a TCP proxy in front of the test server that counts the round trips its clients make:
// the Sync messages (the end of an extended-protocol exchange: a prepared statement's Bind and Execute)
// and the simple Query messages (BEGIN, COMMIT) they send, read from the PostgreSQL wire protocol.
type wireCounter struct {
	ln     net.Listener
	target string
	trips  atomic.Int64
	wg     sync.WaitGroup
}

// newWireCounter starts a proxy to dsn's server and returns it with dsn pointed at it (TLS off: the proxy
// reads the protocol).
func newWireCounter(t *testing.T, dsn string) (*wireCounter, string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if u.Host == "" {
		t.Skipf("the test server is not reached over TCP (%s): no proxy can count its round trips", u.Redacted())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &wireCounter{ln: ln, target: u.Host}
	w.wg.Go(w.accept)
	t.Cleanup(func() {
		ln.Close()
		w.wg.Wait()
	})
	u.Host = ln.Addr().String()
	q := u.Query()
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	return w, u.String()
}

func (w *wireCounter) accept() {
	for {
		c, err := w.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", w.target)
		if err != nil {
			c.Close()
			continue
		}
		w.wg.Go(func() {
			_, _ = io.Copy(c, s)
			c.Close()
		})
		w.wg.Go(func() {
			_ = w.relay(s, c)
			s.Close()
		})
	}
}

// relay copies the client's messages to the server, counting Sync and Query messages: first the untyped
// startup message, then typed messages (a type byte, a length that counts itself, the body).
func (w *wireCounter) relay(dst io.Writer, src io.Reader) error {
	r := bufio.NewReader(src)
	head := make([]byte, 5)
	if _, err := io.ReadFull(r, head[:4]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(head[:4])
	if n < 4 {
		return errors.New("short startup message")
	}
	if _, err := dst.Write(head[:4]); err != nil {
		return err
	}
	if _, err := io.CopyN(dst, r, int64(n-4)); err != nil {
		return err
	}
	for {
		if _, err := io.ReadFull(r, head); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(head[1:])
		if n < 4 {
			return fmt.Errorf("message %q: length %d", head[0], n)
		}
		if head[0] == 'S' || head[0] == 'Q' {
			w.trips.Add(1)
		}
		if _, err := dst.Write(head); err != nil {
			return err
		}
		if _, err := io.CopyN(dst, r, int64(n-4)); err != nil {
			return err
		}
	}
}

// count is how many round trips fn made through the proxy.
func (w *wireCounter) count(fn func()) int64 {
	before := w.trips.Load()
	fn()
	return w.trips.Load() - before
}

// TestRoundTrips counts, through a proxy reading the wire protocol, the round trips a store makes to the
// server for the calls of every referral's life: a create (one identifier, one message, no subscription),
// an audit append, a claim and NextDue as the dispatcher makes them, and a delivery's completion that writes
// the Task version. Each round trip costs both
// processes system calls and wake-ups, which on a small machine were most of a delivery's cost. A create
// took 11 (BEGIN, the identifier lock, the lookup, the stamp, a statement per row, the subscriptions, the
// NOTIFY, COMMIT), an audit append 4, a claim and NextDue 2 each (the pauses read first) and a completion 6
// (the identifier lock went last: a concurrent duplicate now fails on the identifiers' key and runs again).
// A create's NOTIFY is now its announcement, sent after the commit on the announcer's connection: the
// count waits for it. A create that appends its audit record after the head its lane knows took one round
// trip more than a create (the record's statement); the record now goes in the statement that writes the
// rows.
func TestRoundTrips(t *testing.T) {
	t.Parallel()
	w, dsn := newWireCounter(t, freshSchema(t))
	s := openStore(t, dsn, postgres.Options{NoListen: true, VacuumEvery: -1})
	ctx := t.Context()
	chain := "c-roundtrips"
	prev := outbox.AuditGenesis
	var seq int64
	appendAudit := func() error {
		seq++
		r := outbox.AuditRecord{Chain: chain, ChainSeq: seq, At: time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC),
			RequestID: fmt.Sprint("req-", seq), ActorID: "practice-a81001", ActorRole: "gp", Via: "fhir",
			Action: outbox.AuditRead, ResourceType: "ServiceRequest", ResourceID: "sr-1", PrevHash: prev}
		r.Hash = outbox.AuditHash(r)
		prev = r.Hash
		return s.AppendAudit(ctx, "test", []outbox.AuditRecord{r})
	}
	now := time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC)
	var creates, audits, claims, dues, completions []int64
	for n := 1; n <= 6; n++ {
		var err error
		creates = append(creates, w.count(func() {
			before := postgres.Announced(s)
			if _, err = s.CreateReferral(ctx, testIntake(n)); err == nil {
				waitAnnounced(t, s, before+1)
			}
		}))
		if err != nil {
			t.Fatal(err)
		}
		audits = append(audits, w.count(func() { err = appendAudit() }))
		if err != nil {
			t.Fatal(err)
		}
		var ms []outbox.Message
		claims = append(claims, w.count(func() {
			ms, err = s.ClaimMessages(ctx, "owner", now, time.Minute, 10, outbox.ClaimFilter{PerDestination: 8})
		}))
		if err != nil || len(ms) != 1 {
			t.Fatalf("claim: %d messages, %v", len(ms), err)
		}
		// The claim names the referral's practice, so that the delivery's audit record needs no read of it.
		if want := testIntake(n).Referral.PracticeODS; ms[0].PracticeODS != want {
			t.Errorf("claimed %s names practice %q, want %q", ms[0].ID, ms[0].PracticeODS, want)
		}
		dues = append(dues, w.count(func() { _, err = s.NextDue(ctx) }))
		if err != nil {
			t.Fatal(err)
		}
		completions = append(completions, w.count(func() {
			err = s.CompleteAttempt(ctx, ms[0].ID, now, outbox.AttemptResult{Owner: "owner", State: outbox.StateDelivered,
				Attempt: outbox.Attempt{StatusCode: 204}, Update: outbox.MarkDelivered})
		}))
		if err != nil {
			t.Fatal(err)
		}
	}
	// Creates that append their record in their transaction, on a lane lent again and again, as serve's are:
	// after the chain's first, the record goes after the head the lane knows, in one statement.
	lender := outbox.NewAuditLog(s, outbox.AuditLogOptions{Instance: "test"})
	defer lender.Close()
	var audited []int64
	for n := 7; n <= 12; n++ {
		var err error
		audited = append(audited, w.count(func() {
			before := postgres.Announced(s)
			lane := lender.Lend()
			in := testIntake(n)
			rec := outbox.AuditRecord{At: now, RequestID: fmt.Sprint("req-create-", n), ActorID: "practice-a81001",
				ActorRole: "gp", Via: "fhir", Action: outbox.AuditCreate, ResourceType: "ServiceRequest",
				ResourceID: in.Referral.Record.ServiceRequestID, ReferralID: in.Referral.Record.ID}
			var res outbox.CreateResult
			res, err = s.CreateAuditedReferral(ctx, in, lane.Disclosure(rec))
			lane.Release(res.Audit)
			if err == nil {
				waitAnnounced(t, s, before+1)
			}
		}))
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("round trips: creates %v, audit appends %v, claims %v, next due %v, completions %v, audited creates %v (the first calls prepare their statements)",
		creates, audits, claims, dues, completions, audited)
	// The first calls prepare their statements (a round trip more per statement; an audit chain's first
	// append, which creates the chain, takes the script's way, so its second prepares); from the third on,
	// the steady state.
	for _, c := range []struct {
		what string
		got  []int64
		want int64
	}{
		{"a create (BEGIN, lookup, stamp, the rows, COMMIT) and, after it, its announcement", creates, 6},
		{"an audit append (one statement)", audits, 1},
		{"a claim as the dispatcher makes it (one statement, pauses read in it)", claims, 1},
		{"NextDue (one statement, pauses read in it)", dues, 1},
		{"a delivery's completion (BEGIN, record, stamp, version, COMMIT)", completions, 5},
		{"a create that appends its record after the head its lane knows (the create's 6: the record goes with the rows)", audited, 6},
	} {
		for _, n := range c.got[2:] {
			if n > c.want {
				t.Errorf("%s: %d round trips, want at most %d (all: %v)", c.what, n, c.want, c.got)
				break
			}
		}
	}
}

// waitAnnounced waits until s has made n announcements (postgres.Announced).
func waitAnnounced(t *testing.T, s *postgres.Store, n int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); postgres.Announced(s) < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d announcements after 10s, want %d", postgres.Announced(s), n)
		}
		time.Sleep(time.Millisecond)
	}
}
