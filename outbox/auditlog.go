package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/socialrx/socialrx/fault"
)

// DefaultAuditBatch is how many records an AuditLog appends in one transaction at most.
const DefaultAuditBatch = 256

// ErrAuditClosed: the AuditLog was closed; nothing more is recorded.
var ErrAuditClosed = fault.Sentinel(fault.Unavailable, "audit log closed")

// AuditLogOptions configure an AuditLog.
type AuditLogOptions struct {
	// Instance names the writing process in its chain's head (e.g. "serve", "cli"); the chain's name is
	// Instance, "-" and a new UUIDv7, so that no two processes ever share a chain.
	Instance string
	// Batch caps the records of one append (0: DefaultAuditBatch).
	Batch  int
	Logger *slog.Logger // default: discard
}

// AuditLog appends a process's audit records to its own chain. Record may be called from any number of
// goroutines: a single background appender takes whatever has queued up (up to Batch records) and appends it
// in one transaction, so concurrent requests share a commit instead of queueing on a lock; several processes
// on one database each append to their own chain and never wait for each other. Close flushes and stops it.
type AuditLog struct {
	store    Store
	chain    string
	instance string
	batch    int
	log      *slog.Logger

	in   chan auditItem
	stop chan struct{}
	done chan struct{}

	// lanes are the chains Lend lends that no one holds now, each with the head it was left at (at most
	// maxIdleLanes).
	lanes chan *laneHead

	mu     sync.Mutex
	closed bool

	// Appender state (the background goroutine's only).
	headSeq   int64
	headHash  string
	headKnown bool
}

type auditItem struct {
	recs []AuditRecord
	done chan error
}

// NewAuditLog starts an AuditLog over store.
func NewAuditLog(store Store, o AuditLogOptions) *AuditLog {
	if o.Instance == "" {
		o.Instance = "socialrx"
	}
	if o.Batch <= 0 {
		o.Batch = DefaultAuditBatch
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	a := &AuditLog{store: store, chain: newChainName(o.Instance), instance: o.Instance, batch: o.Batch,
		log: o.Logger, in: make(chan auditItem, o.Batch), stop: make(chan struct{}), done: make(chan struct{}),
		lanes: make(chan *laneHead, maxIdleLanes), headHash: AuditGenesis, headKnown: true}
	go a.run()
	return a
}

// newChainName names a new chain of instance's: instance, "-" and a new UUIDv7.
func newChainName(instance string) string {
	id, err := uuid.NewV7()
	if err != nil {
		id = uuid.New()
	}
	return instance + "-" + id.String()
}

// disclosureChain names a new chain for a dispatcher's disclosures (Disclosure), of the same instance as this
// AuditLog's: the store appends to it in the transactions that record attempts, and nothing else writes it.
func (a *AuditLog) disclosureChain() string { return newChainName(a.instance) }

// maxIdleLanes is how many lent chains an AuditLog keeps for the next Lend once returned; a chain returned
// when that many wait is not lent again (it stays in the trail as it is).
const maxIdleLanes = 64

// Lane is a chain an AuditLog lends (Lend) for records that a store appends in the transaction of the change
// they record (Disclosure): only its holder writes it until Release, so concurrent changes each append to a
// chain of their own and never wait for one another's commit.
type Lane struct {
	Instance string // the chain's writer, as AuditChain.Instance names it
	Chain    string
	head     *laneHead
	lanes    chan *laneHead
}

// laneHead is a lent chain and the head its last holder left it at (seq 0: not known).
type laneHead struct {
	chain string
	seq   int64
	hash  string
}

// Lend lends a chain of this AuditLog's instance that no one else holds: one returned earlier, or a new one.
// Its holder calls Release once the transaction that writes it has ended (committed or not).
func (a *AuditLog) Lend() Lane {
	var h *laneHead
	select {
	case h = <-a.lanes:
	default:
		h = &laneHead{chain: newChainName(a.instance)}
	}
	return Lane{Instance: a.instance, Chain: h.chain, head: h, lanes: a.lanes}
}

// Disclosure is r as a record for a store to append on the lane's chain (Store.CreateAuditedReferral),
// numbered and linked after the head the lane's last holder saw, when it is known: a store that finds the
// chain's head elsewhere appends after the head it finds.
func (l Lane) Disclosure(r AuditRecord) Disclosure {
	r.Chain = l.Chain
	r.ChainSeq, r.PrevHash = 0, ""
	if l.head.seq > 0 {
		r.ChainSeq, r.PrevHash = l.head.seq+1, l.head.hash
	}
	return Disclosure{Instance: l.Instance, Record: r}
}

// Release returns the lane to its AuditLog for the next Lend, with appended, the record its holder's
// transaction appended and committed (CreateResult.Audit), as its head; nil when it appended nothing, or
// its outcome is not known (the next holder's store reads the head).
func (l Lane) Release(appended *AuditRecord) {
	if appended != nil && appended.Chain == l.Chain {
		l.head.seq, l.head.hash = appended.ChainSeq, appended.Hash
	} else {
		l.head.seq, l.head.hash = 0, ""
	}
	select {
	case l.lanes <- l.head:
	default:
	}
}

// Chain is the name of the chain this AuditLog appends to.
func (a *AuditLog) Chain() string { return a.chain }

// Record appends recs (Chain, ChainSeq and the hashes are set here) and returns once they are committed,
// or with the append's error. A record whose caller gives up (ctx done) is still appended.
func (a *AuditLog) Record(ctx context.Context, recs ...AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	for _, r := range recs {
		if err := r.Validate(); err != nil {
			return err
		}
	}
	it := auditItem{recs: recs, done: make(chan error, 1)}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrAuditClosed
	}
	// Sending under mu: Close cannot close a.stop between the check and the send; the appender drains
	// a.in while it runs, so the send waits at most for one append.
	select {
	case a.in <- it:
	case <-ctx.Done():
		a.mu.Unlock()
		return fmt.Errorf("outbox: audit record: %w", ctx.Err())
	}
	a.mu.Unlock()
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("outbox: audit record: %w", ctx.Err())
	}
}

// Close appends what is queued and stops the appender.
func (a *AuditLog) Close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		<-a.done
		return
	}
	a.closed = true
	close(a.stop)
	a.mu.Unlock()
	<-a.done
}

func (a *AuditLog) run() {
	defer close(a.done)
	for {
		var first auditItem
		select {
		case first = <-a.in:
		case <-a.stop:
			for {
				select {
				case it := <-a.in:
					a.flush([]auditItem{it})
				default:
					return
				}
			}
		}
		items, n := []auditItem{first}, len(first.recs)
	gather:
		for n < a.batch {
			select {
			case it := <-a.in:
				items = append(items, it)
				n += len(it.recs)
			default:
				break gather
			}
		}
		a.flush(items)
	}
}

// flush appends the records of items in one transaction and tells each item the outcome.
func (a *AuditLog) flush(items []auditItem) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := a.append(ctx, items)
	for _, it := range items {
		it.done <- err
	}
}

func (a *AuditLog) append(ctx context.Context, items []auditItem) error {
	if !a.headKnown {
		if err := a.reloadHead(ctx); err != nil {
			return err
		}
	}
	var recs []AuditRecord
	for _, it := range items {
		for _, r := range it.recs {
			r.Chain = a.chain
			recs = append(recs, r)
		}
	}
	ChainAudit(recs, a.headSeq, a.headHash)
	seq, prev := recs[len(recs)-1].ChainSeq, recs[len(recs)-1].Hash
	err := a.store.AppendAudit(ctx, a.instance, recs)
	if err == nil {
		a.headSeq, a.headHash = seq, prev
		return nil
	}
	// The outcome may be unknown (a commit whose answer was lost): the head in the store decides.
	if rerr := a.reloadHead(ctx); rerr == nil && a.headSeq == seq && a.headHash == prev {
		return nil
	}
	a.log.Error("audit records not appended", "chain", a.chain, "records", len(recs), "err", err)
	return fmt.Errorf("outbox: audit: %w", err)
}

// reloadHead reads the chain's head from the store (a chain not yet written starts at the genesis).
func (a *AuditLog) reloadHead(ctx context.Context) error {
	h, err := a.store.AuditHead(ctx, a.chain)
	switch {
	case errors.Is(err, ErrNotFound):
		a.headSeq, a.headHash, a.headKnown = 0, AuditGenesis, true
		return nil
	case err != nil:
		a.headKnown = false
		return fmt.Errorf("outbox: audit head: %w", err)
	}
	a.headSeq, a.headHash, a.headKnown = h.HeadSeq, h.HeadHash, true
	return nil
}

// AuditProblem is one thing VerifyAudit found wrong in a chain.
type AuditProblem struct {
	Chain    string `json:"chain"`
	ChainSeq int64  `json:"chain_seq"` // the record concerned (0: the chain as a whole)
	Problem  string `json:"problem"`
}

// AuditChainReport is what VerifyAudit found in one chain.
type AuditChainReport struct {
	Chain    string         `json:"chain"`
	Instance string         `json:"instance"`
	Records  int64          `json:"records"`
	HeadSeq  int64          `json:"head_seq"`
	HeadHash string         `json:"head_hash"`
	Problems []AuditProblem `json:"problems,omitempty"`
}

// AuditReport is VerifyAudit's answer.
type AuditReport struct {
	Chains  []AuditChainReport `json:"chains"`
	Records int64              `json:"records"`
	OK      bool               `json:"ok"`
}

// VerifyAudit walks every chain of the store's audit trail and reports each record that was changed (its
// hash no longer matches its content), deleted (a gap in its chain's numbers, or a chain shorter than its
// head says), inserted (a record after the head, a chain without a head) or reordered (a record that does
// not follow the one before it). progress, if set, is called after each page with the records checked.
func VerifyAudit(ctx context.Context, store Store, progress func(records int64)) (AuditReport, error) {
	chains, err := store.AuditChains(ctx)
	if err != nil {
		return AuditReport{}, err
	}
	rep := AuditReport{OK: true}
	for _, c := range chains {
		cr := AuditChainReport{Chain: c.Chain, Instance: c.Instance, HeadSeq: c.HeadSeq, HeadHash: c.HeadHash}
		add := func(seq int64, format string, args ...any) {
			cr.Problems = append(cr.Problems, AuditProblem{Chain: c.Chain, ChainSeq: seq, Problem: fmt.Sprintf(format, args...)})
		}
		if c.Headless {
			add(0, "the chain has records but no head: records were inserted, or its head deleted")
		}
		var last int64
		prev := AuditGenesis
		for {
			page, err := store.ChainRecords(ctx, c.Chain, last, 1000)
			if err != nil {
				return AuditReport{}, err
			}
			for _, r := range page {
				switch {
				case r.ChainSeq > last+1:
					add(r.ChainSeq, "records %d to %d are missing (deleted)", last+1, r.ChainSeq-1)
				case r.ChainSeq < 1:
					add(r.ChainSeq, "a record numbered %d cannot be in a chain (inserted or changed)", r.ChainSeq)
				}
				if r.PrevHash != prev {
					add(r.ChainSeq, "the record does not follow the one before it (a record before it was changed, deleted, inserted or reordered)")
				}
				if AuditHash(r) != r.Hash {
					add(r.ChainSeq, "the record's content does not match its hash (changed)")
				}
				last, prev = r.ChainSeq, r.Hash
				cr.Records++
			}
			rep.Records += int64(len(page))
			if progress != nil && len(page) > 0 {
				progress(rep.Records)
			}
			if len(page) < 1000 {
				break
			}
		}
		if !c.Headless {
			switch {
			case last < c.HeadSeq:
				add(last, "the chain ends at record %d but its head is record %d (records deleted from its end)", last, c.HeadSeq)
			case last > c.HeadSeq:
				add(c.HeadSeq+1, "records after the head (record %d) were added (inserted)", c.HeadSeq)
			case prev != c.HeadHash:
				add(last, "the last record's hash is not the head's (changed)")
			}
		}
		if len(cr.Problems) > 0 {
			rep.OK = false
		}
		rep.Chains = append(rep.Chains, cr)
	}
	return rep, nil
}
