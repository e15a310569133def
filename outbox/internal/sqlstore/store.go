package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// Steps of CreateReferral's transaction after which Config.FailAfter is called, in this order (the
// outboxtest Stage constants).
const (
	stageReferral    = "referral"
	stageIdentifiers = "identifiers"
	stageMessages    = "messages"
	stageEvents      = "events"
	stageAudit       = "audit"
)

// maxErrorLen caps stored error texts (they are short by contract; this keeps a bad caller from bloating rows).
const maxErrorLen = 512

// Config is what the scripts take from a backend's options.
type Config struct {
	// NewID makes outbox message ids for events that come without one (nil: NewUUIDv7).
	NewID func() string
	// Notify renders subscription notifications in the fan-out (nil: outbox.RenderNotification).
	Notify outbox.NotifyFunc
	// FailAfter, if set, is called after each step of CreateReferral's transaction ("referral",
	// "identifiers", "messages", "events", and "audit" after CreateAuditedReferral's record) with the intake;
	// a non-nil error fails that intake as if the database had. For tests only.
	FailAfter func(stage string, in mapping.Intake) error
}

// Store is outbox.Store's scripts and reads, written once for every SQL backend: a backend embeds it and
// adds what is its own (Changes, Ping, Close). Its exported methods are outbox.Store's.
type Store struct {
	d    Dialect
	b    Backend
	read Querier
	cfg  Config

	// failed counts the writes that failed for want of the database (kind fault.Unavailable at the edge);
	// checked is its value at the last CheckWrite (readiness).
	failed, checked atomic.Uint64
}

// ErrWritesFailing is CheckWrite's answer when writes failed for want of the database since the previous
// check, even though the probe's own small write went through.
var ErrWritesFailing = fault.Sentinel(fault.Unavailable, "writes failed since the last readiness check")

// write runs fn through the backend's write path, counting the failures that are the database's (see
// CheckWrite).
func (s *Store) write(ctx context.Context, fn func(ctx context.Context, w *Tx) error) error {
	err := s.b.Write(ctx, fn)
	s.noteFailure(err)
	return err
}

// noteFailure counts err when it is a write that failed for want of the database (see CheckWrite).
func (s *Store) noteFailure(err error) {
	var ke *kindError
	if err != nil && errors.As(err, &ke) && ke.kind == fault.Unavailable {
		s.failed.Add(1)
	}
}

// CheckWrite commits the readiness probe's write (instance's row of health_probes, stamped now) through the
// normal write path; it fails when that write fails, or with ErrWritesFailing when another write failed for
// want of the database since the previous check (outbox.Store.CheckWrite). A small probe may fit where a
// referral does not (a nearly full disk): the failures of real writes keep readiness honest meanwhile.
func (s *Store) CheckWrite(ctx context.Context, instance string, now time.Time) error {
	if instance == "" {
		return fmt.Errorf("%s: check write: an instance name is required", s.d.Name)
	}
	err := s.write(ctx, func(ctx context.Context, w *Tx) error {
		_, err := w.ExecContext(ctx, s.d.rebind(upsertProbe), instance, Micros(now))
		return s.d.DriverErr("check write", err)
	})
	if err != nil {
		return err
	}
	failed := s.failed.Load()
	if prev := s.checked.Swap(failed); prev != failed {
		return fmt.Errorf("%s: %d failed writes: %w", s.d.Name, failed-prev, ErrWritesFailing)
	}
	return nil
}

// New returns the scripts over backend b, spelled in d (compiled here), reading from read (a pool that sees
// committed state).
func New(d Dialect, b Backend, read Querier, cfg Config) *Store {
	if cfg.NewID == nil {
		cfg.NewID = NewUUIDv7
	}
	if cfg.Notify == nil {
		cfg.Notify = outbox.RenderNotification
	}
	return &Store{d: d.Compile(), b: b, read: read, cfg: cfg}
}

// CreateReferral writes the referral, its identifiers, its messages, its fan-out and its timeline entry in
// one transaction (identifiers looked up first: Store.existing). Identifiers are keys of the referring
// practice: another practice's referral with the same identifier is neither found nor a conflict. The referral is stored as version 1
// whatever the intake says, with its times truncated to the microsecond, UpdatedAt defaulting to CreatedAt
// and moved later if needed to follow commit order (Dialect.Stamp). Events without an id get one from
// Config.NewID. Messages are created pending and due at Record.CreatedAt.
func (s *Store) CreateReferral(ctx context.Context, in mapping.Intake) (outbox.CreateResult, error) {
	return s.createReferral(ctx, in, nil)
}

// CreateAuditedReferral is CreateReferral that appends audit on its chain in the creating transaction when it
// creates the referral (outbox.Referrals).
func (s *Store) CreateAuditedReferral(ctx context.Context, in mapping.Intake, audit outbox.Disclosure) (outbox.CreateResult, error) {
	if err := checkDisclosure(audit); err != nil {
		return outbox.CreateResult{}, fmt.Errorf("%s: create referral: a bug: %w", s.d.Name, err)
	}
	return s.createReferral(ctx, in, &audit)
}

// createReferral is CreateReferral, appending audit (when not nil) if it creates the referral.
func (s *Store) createReferral(ctx context.Context, in mapping.Intake, audit *outbox.Disclosure) (outbox.CreateResult, error) {
	d := s.d
	c, err := d.NewCreation(in, s.cfg.NewID)
	if err != nil {
		return outbox.CreateResult{}, err
	}
	hook := func(stage string) error {
		if s.cfg.FailAfter == nil {
			return nil
		}
		return s.cfg.FailAfter(stage, in)
	}
	if _, ok := s.b.(CreationWriter); ok && audit != nil {
		c.Audit = headKnown(*audit)
	}
	var res outbox.CreateResult
	err = s.write(ctx, func(ctx context.Context, w *Tx) error {
		var err error
		res, err = s.createIn(ctx, w, c, in.Fingerprint, hook)
		if err != nil || !res.Created || audit == nil {
			return err
		}
		if res.Audit == nil { // not appended with the rows
			rec, err := s.appendCreation(ctx, w, *audit, c.Audit != nil)
			if err != nil {
				return err
			}
			res.Audit = &rec
		}
		return hook(stageAudit)
	})
	if err != nil {
		return outbox.CreateResult{}, err
	}
	return res, nil
}

// Forward writes a link worker's onward referral in one transaction (outbox.Forwarder): the parent's new
// version (fn's, through the usual update path) and each child it returns.
func (s *Store) Forward(ctx context.Context, id string, expectVersion int, now time.Time, fn outbox.ForwardUpdate) (outbox.Referral, []outbox.Referral, error) {
	d := s.d
	var (
		parent   outbox.Referral
		children []outbox.Referral
	)
	err := s.write(ctx, func(ctx context.Context, w *Tx) error {
		cur, err := d.ReadReferral(ctx, w, byAnyID, true, id, id, id)
		if err != nil {
			return err
		}
		if expectVersion > 0 && cur.Record.Version != expectVersion {
			return fmt.Errorf("%s: forward referral: %w", d.Name, outbox.ErrVersionMismatch)
		}
		var intakes []mapping.Intake
		parent, err = s.applyUpdate(ctx, w, cur, now, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			next, kids, err := fn(cur)
			intakes = kids
			return next, nil, err
		}, outbox.CauseUpdate)
		if err != nil {
			return err
		}
		children = children[:0]
		for _, in := range intakes {
			c, err := d.NewCreation(in, s.cfg.NewID)
			if err != nil {
				return err
			}
			res, err := s.createIn(ctx, w, c, in.Fingerprint, func(string) error { return nil })
			if err != nil {
				return err
			}
			children = append(children, res.Referral)
		}
		return nil
	})
	if err != nil {
		return outbox.Referral{}, nil, err
	}
	return parent, children, nil
}

// createIn is CreateReferral's transaction body in w: the creation c (fingerprint: the intake's), with hook
// run after each stage.
func (s *Store) createIn(ctx context.Context, w *Tx, c Creation, fingerprint string, hook func(string) error) (outbox.CreateResult, error) {
	d := s.d
	res := c.Result
	err := func() error {
		existing, err := s.existing(ctx, w, c, fingerprint)
		if err != nil || existing != nil {
			if existing != nil {
				res = outbox.CreateResult{Referral: *existing, Created: false}
			}
			return err
		}
		// The referral's UpdatedAt follows commit order (Dialect.Stamp); CreatedAt is the intake's.
		cc, err := d.StampCreation(ctx, w, c)
		if err != nil {
			return err
		}
		row := cc.Row
		res = cc.Result
		v := Version{Row: row, Cause: outbox.CauseCreate, Reason: cc.Result.Referral.Record.StatusReason}
		if cw, ok := s.b.(CreationWriter); ok {
			audited, err := s.writeCreation(ctx, w, cw, cc, v, hook)
			if audited {
				res.Audit = &cc.Audit[0]
			}
			return err
		}
		if _, err := w.ExecContext(ctx, d.rebind(InsertReferral), row.InsertArgs()...); err != nil {
			if d.IsUnique(err) {
				return fmt.Errorf("%s: insert referral: referral, task or service request id already exists: %w", d.Name, err)
			}
			return d.DriverErr("insert referral", err)
		}
		if err := hook(stageReferral); err != nil {
			return err
		}
		for _, id := range c.Identifiers {
			if _, err := w.ExecContext(ctx, d.rebind(insertIdentifier), c.Practice, id.System, id.Value, row.ID); err != nil {
				if !d.IsUnique(err) {
					return d.DriverErr("insert identifier", err)
				}
				if d.Concurrent {
					// A concurrent create of the identifier committed first (IdentifierFinder): a fresh
					// run of the transaction finds its referral.
					return fmt.Errorf("%s: insert identifier: %w: %w", d.Name, ErrRetry, err)
				}
				// Unreachable with one writer; kept as a backstop.
				return fmt.Errorf("%s: insert identifier: %w", d.Name, outbox.ErrConflict)
			}
		}
		if err := hook(stageIdentifiers); err != nil {
			return err
		}
		if err := s.insertMessages(ctx, w, row.ID, 1, row.CreatedAt, c.Events); err != nil {
			return err
		}
		if err := s.fanOut(ctx, w, res.Referral, row.CreatedAt); err != nil {
			return err
		}
		if err := hook(stageMessages); err != nil {
			return err
		}
		if _, err := w.ExecContext(ctx, d.rebind(insertEvent), v.EventArgs()...); err != nil {
			return d.DriverErr("insert referral event", err)
		}
		return hook(stageEvents)
	}()
	return res, err
}

// existing finds the referral that already holds the creation's identifiers (nil when none does): looked
// up in one round trip by an IdentifierFinder (several writers), else one by one (one writer).
func (s *Store) existing(ctx context.Context, w *Tx, c Creation, fingerprint string) (*outbox.Referral, error) {
	f, ok := s.b.(IdentifierFinder)
	if !ok {
		return s.d.ExistingByIdentifiers(ctx, w, c.Practice, c.Identifiers, fingerprint)
	}
	if len(c.Identifiers) == 0 {
		return nil, nil
	}
	found, err := f.FindIdentifiers(ctx, w, c.Practice, c.Identifiers)
	if err != nil || len(found) == 0 {
		return nil, err
	}
	if len(found) > 1 {
		return nil, fmt.Errorf("%s: create referral: %w", s.d.Name, errSeveralReferrals)
	}
	return s.d.existingReferral(ctx, w, found[0], fingerprint)
}

// writeCreation is the rest of createIn on a backend that writes a creation's rows at once (cw): the rows
// (with c.Audit's records when their chain's head is where they say: audited), then the fan-out when the
// practice may have subscriptions, with hook run after each stage as createIn runs it.
func (s *Store) writeCreation(ctx context.Context, w *Tx, cw CreationWriter, c Creation, v Version, hook func(string) error) (audited bool, err error) {
	subscribed, audited, err := cw.WriteCreation(ctx, w, c, v)
	if errors.Is(err, ErrAuditNumberTaken) {
		return false, notAudited(err) // as appendCreation fails
	}
	if err != nil {
		return false, err
	}
	if len(c.Events) > 0 {
		w.Changed = true
	}
	for _, stage := range []string{stageReferral, stageIdentifiers} {
		if err := hook(stage); err != nil {
			return false, err
		}
	}
	if subscribed {
		if err := s.fanOut(ctx, w, c.Result.Referral, c.Row.CreatedAt); err != nil {
			return false, err
		}
	}
	if err := hook(stageMessages); err != nil {
		return false, err
	}
	return audited, hook(stageEvents)
}

// insertMessages writes events as pending messages due at now, for the referral's given version (referralID
// "": a message of no referral, a Subscription's handshake or heartbeat, stored with a NULL referral_id).
func (s *Store) insertMessages(ctx context.Context, w *Tx, referralID string, version int, now int64, rows []EventRow) error {
	d := s.d
	var ref any = referralID
	if referralID == "" {
		ref = nil
	}
	for _, e := range rows {
		if _, err := w.ExecContext(ctx, d.insertMessage, e.ID, ref, version, e.Kind, e.Dest, e.Type,
			e.Payload, now, now, now); err != nil {
			if d.IsUnique(err) {
				return fmt.Errorf("%s: insert message: duplicate message id: %w", d.Name, err)
			}
			return d.DriverErr("insert message", err)
		}
	}
	if len(rows) > 0 {
		w.Changed = true
	}
	return nil
}

// fanOut writes, inside the transaction that wrote ref's new version, one notification message for each
// active subscription of ref's practice: the subscription's next event number (incremented here, so numbers
// are gap-free and follow commit order), payload from Config.Notify, due at nowUS. A Notify error aborts the
// transaction.
func (s *Store) fanOut(ctx context.Context, w *Tx, ref outbox.Referral, nowUS int64) error {
	return s.d.FanOut(ctx, w, ref, nowUS, s.cfg.Notify, func(subID string, payload json.RawMessage) error {
		return s.insertMessages(ctx, w, ref.Record.ID, ref.Record.Version, nowUS, []EventRow{{
			ID: s.cfg.NewID(), Kind: string(mapping.DestinationSubscription), Dest: subID,
			Type: string(mapping.EventNotification), Payload: payload,
		}})
	})
}

// GetReferral returns one referral by referral id, task id or ServiceRequest id.
func (s *Store) GetReferral(ctx context.Context, id string) (outbox.Referral, error) {
	if id == "" {
		return outbox.Referral{}, fmt.Errorf("%s: referral: %w", s.d.Name, outbox.ErrNotFound)
	}
	return s.d.ReadReferral(ctx, s.read, byAnyID, false, id, id, id)
}

// ReferralPractice returns the referring practice of the referral with this referral id (outbox.Referrals).
func (s *Store) ReferralPractice(ctx context.Context, id string) (string, error) {
	var ods string
	err := s.read.QueryRowContext(ctx, s.d.rebind(`SELECT practice_ods FROM referrals WHERE id = ?`), id).Scan(&ods)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("%s: referral practice: %w", s.d.Name, outbox.ErrNotFound)
	}
	if err != nil {
		return "", s.d.DriverErr("referral practice", err)
	}
	return ods, nil
}

// SearchReferrals returns up to q.Limit referrals in (UpdatedAt, ID) order (default 100, at most 1000) and
// the cursor of the last one when more follow. A non-nil empty Practices matches nothing.
func (s *Store) SearchReferrals(ctx context.Context, q outbox.ReferralQuery) ([]outbox.Referral, *outbox.Cursor, error) {
	return s.d.SearchReferrals(ctx, s.read, q)
}

// CountReferrals counts the referrals matching q's filters (a search's total).
func (s *Store) CountReferrals(ctx context.Context, q outbox.ReferralQuery) (int, error) {
	return s.d.CountReferrals(ctx, s.read, q)
}

// ReferralVersions returns every kept version of the referral, oldest first (outbox.Timeliner).
func (s *Store) ReferralVersions(ctx context.Context, id string) ([]outbox.Referral, error) {
	if id == "" {
		return nil, fmt.Errorf("%s: referral: %w", s.d.Name, outbox.ErrNotFound)
	}
	return s.d.ReferralVersions(ctx, s.read, id)
}

// ReferralVersion returns one kept version of the referral (outbox.Timeliner).
func (s *Store) ReferralVersion(ctx context.Context, id string, version int) (outbox.Referral, error) {
	if id == "" {
		return outbox.Referral{}, fmt.Errorf("%s: referral: %w", s.d.Name, outbox.ErrNotFound)
	}
	return s.d.ReferralVersion(ctx, s.read, id, version)
}

// UpdateReferral applies fn to the referral (by referral, task or ServiceRequest id, its row locked) in one
// transaction. A change bumps the version, sets UpdatedAt to now (or just after the newest change, to follow
// commit order), enqueues fn's events (due at now) and adds a timeline entry; if fn returns
// outbox.ErrNoChange, or the referral unchanged and no events, nothing is written and the current referral
// is returned (with a nil error). fn may not change the referral's ids or creation time. A referral.cancelled
// to a service whose referral.created is still pending or dead withdraws that message instead of being
// queued (mapping.Withdrawal; see outbox.Store.UpdateReferral).
func (s *Store) UpdateReferral(ctx context.Context, id string, expectVersion int, now time.Time, fn outbox.ReferralUpdate) (outbox.Referral, error) {
	d := s.d
	if fn == nil {
		return outbox.Referral{}, fmt.Errorf("%s: update referral: nil update", d.Name)
	}
	if id == "" {
		return outbox.Referral{}, fmt.Errorf("%s: referral: %w", d.Name, outbox.ErrNotFound)
	}
	var out outbox.Referral
	err := s.write(ctx, func(ctx context.Context, w *Tx) error {
		cur, err := d.ReadReferral(ctx, w, byAnyID, true, id, id, id)
		if err != nil {
			return err
		}
		if expectVersion > 0 && cur.Record.Version != expectVersion {
			return fmt.Errorf("%s: update referral: %w", d.Name, outbox.ErrVersionMismatch)
		}
		out, err = s.applyUpdate(ctx, w, cur, now, fn, outbox.CauseUpdate)
		return err
	})
	if err != nil {
		return outbox.Referral{}, err
	}
	return out, nil
}

// applyUpdate runs fn on cur (read, and locked, in w) and writes the result: the new version and its
// timeline entry (Backend.WriteVersion), its messages, the withdrawals mapping.Withdrawal decided, and the
// fan-out. fn's own error is returned unchanged.
func (s *Store) applyUpdate(ctx context.Context, w *Tx, cur outbox.Referral, now time.Time, fn outbox.ReferralUpdate, cause outbox.TimelineCause) (outbox.Referral, error) {
	ch, ok, err := s.d.NewChange(ctx, w, cur, now, fn, s.cfg.NewID)
	if err != nil {
		return outbox.Referral{}, err
	}
	if !ok {
		return cur, nil
	}
	if err := s.d.checkCapacity(ctx, w, cur.Referral, ch.Next); err != nil {
		return outbox.Referral{}, err
	}
	updated, subscribed, err := s.b.WriteVersion(ctx, w, ch.version(cur, cause))
	if err != nil {
		return outbox.Referral{}, err
	}
	if !updated {
		return outbox.Referral{}, fmt.Errorf("%s: update referral: %w", s.d.Name, outbox.ErrVersionMismatch)
	}
	return s.afterVersion(ctx, w, cur, ch, now, subscribed)
}

// version is ch's new version of cur as Backend.WriteVersion writes it, with a timeline entry of cause.
func (ch Change) version(cur outbox.Referral, cause outbox.TimelineCause) Version {
	prev := ch.Prev
	return Version{Row: ch.Row, From: cur.Record.Version, Cause: cause, Reason: ch.Next.Record.StatusReason,
		Prev: &prev, AsPrevious: ch.AsPrevious}
}

// afterVersion writes what follows ch's new version of cur once it is written: its messages (due at now), the
// withdrawals, the erasure of a withdrawn consent, and the fan-out when the practice may have subscriptions.
// It returns the referral as updated.
func (s *Store) afterVersion(ctx context.Context, w *Tx, cur outbox.Referral, ch Change, now time.Time, subscribed bool) (outbox.Referral, error) {
	d := s.d
	// The version's UpdatedAt is stamped in commit order (it may be a few microseconds after now); its
	// messages are due at the caller's now.
	dueUS := Micros(now)
	if err := s.insertMessages(ctx, w, cur.Record.ID, ch.Row.Version, dueUS, ch.Events); err != nil {
		return outbox.Referral{}, err
	}
	if err := d.WithdrawMessages(ctx, w, ch.Withdraw, ch.Row.Version); err != nil {
		return outbox.Referral{}, err
	}
	if len(ch.Withdraw) > 0 {
		w.Changed = true
	}
	if ch.Erase {
		if err := d.WithdrawMessages(ctx, w, ch.ConsentWithdraw, ch.Row.Version, outbox.ConsentWithdrawnError); err != nil {
			return outbox.Referral{}, err
		}
		if err := d.EraseReferral(ctx, w, cur.Record.ID, ch.ErasedSR, mapping.ScrubReferral, false); err != nil {
			return outbox.Referral{}, err
		}
		w.Changed = true
	}
	out := cur
	out.Referral = ch.Next
	out.ServiceRequest = ch.ErasedSR
	if subscribed {
		if err := s.fanOut(ctx, w, out, dueUS); err != nil {
			return outbox.Referral{}, err
		}
	}
	return out, nil
}

// updateEach applies fn (when not nil) to each of the referrals (by id, row locked) in w, as versions of
// cause.
func (s *Store) updateEach(ctx context.Context, w *Tx, referrals []string, now time.Time, fn outbox.ReferralUpdate, cause outbox.TimelineCause) error {
	if fn == nil {
		return nil
	}
	w.StampHint = max(w.StampHint, len(referrals))
	for _, rid := range referrals {
		cur, err := s.d.ReadReferral(ctx, w, byID, true, rid)
		if err != nil {
			return err
		}
		if _, err := s.applyUpdate(ctx, w, cur, now, fn, cause); err != nil {
			return err
		}
	}
	return nil
}

// Timeline returns every version of the referral (by referral, task or ServiceRequest id), oldest first,
// with the ids of the messages each version enqueued and withdrew.
func (s *Store) Timeline(ctx context.Context, id string) ([]outbox.TimelineEntry, error) {
	return s.d.Timeline(ctx, s.read, id)
}

// ClaimMessages leases up to limit deliverable messages to owner until now+lease, returned in
// (NextAttemptAt, Seq) order: inflight messages whose lease has expired (taken first: they are the oldest
// work) and pending messages due at now, each only if it is the oldest unfinished message of its referral
// and destination (for subscription destinations: of the destination), within f's per-destination limits
// (a message whose destination has no room left is skipped and stays pending). At most MaxLimit at once.
func (s *Store) ClaimMessages(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, f outbox.ClaimFilter) ([]outbox.Message, error) {
	if owner == "" || lease <= 0 {
		return nil, fmt.Errorf("%s: claim: owner and a positive lease are required", s.d.Name)
	}
	if limit <= 0 {
		return nil, nil
	}
	if holdsPauses(s.b) {
		return s.b.Claim(ctx, owner, now, lease, min(limit, MaxLimit), f)
	}
	paused, err := s.PausedDestinations(ctx)
	if err != nil {
		return nil, err
	}
	return s.b.Claim(ctx, owner, now, lease, min(limit, MaxLimit), HoldPaused(f, paused))
}

// NextDue returns when the next claim can succeed: the earliest due time of a pending message that heads its
// referral and destination, or the earliest lease expiry of an inflight one, whichever is first (zero when
// there is neither). Pending messages blocked behind an earlier unfinished one, and the messages of paused
// destinations, are not counted, so a dispatcher sleeping until NextDue never spins on a message it cannot
// claim.
func (s *Store) NextDue(ctx context.Context) (time.Time, error) {
	var paused []mapping.Destination
	if !holdsPauses(s.b) {
		var err error
		if paused, err = s.PausedDestinations(ctx); err != nil {
			return time.Time{}, err
		}
	}
	pending, lease, err := s.b.Due(ctx, paused)
	if err != nil {
		return time.Time{}, err
	}
	switch {
	case !pending.Valid && !lease.Valid:
		return time.Time{}, nil
	case !lease.Valid:
		return FromMicros(pending.Int64), nil
	case !pending.Valid:
		return FromMicros(lease.Int64), nil
	}
	return FromMicros(min(pending.Int64, lease.Int64)), nil
}

// CompleteAttempt records the attempt (numbered after every earlier one of the message, across replays;
// res.Attempt.N is ignored) and, if res.Owner still holds the lease, moves the message to res.State, counts
// the attempt in Attempts, keeps its error as LastError and applies res.Update to the referral, all in one
// transaction, with res.Subscription's status change when given. A lease is held until another claim takes
// it, even past LeaseUntil. Otherwise the attempt alone is recorded and ErrLeaseLost returned. If res.Update fails (other than with ErrNoChange), nothing
// is written and its error is returned.
func (s *Store) CompleteAttempt(ctx context.Context, id string, now time.Time, res outbox.AttemptResult) error {
	return s.CompleteAttempts(ctx, []outbox.Completion{{ID: id, Now: now, Result: res}})[0]
}

// CompleteAttempts records several attempts as CompleteAttempt records each, in one transaction: one commit
// (one fsync) for all of them. When that transaction fails (one Update refused, say), each is recorded again
// in a transaction of its own, so that one completion's error is its own and never another's.
func (s *Store) CompleteAttempts(ctx context.Context, cs []outbox.Completion) []error {
	errs := make([]error, len(cs))
	rows := make([]AttemptRow, len(cs))
	var todo []int
	for i, c := range cs {
		if errs[i] = s.checkCompletion(c.Result); errs[i] == nil {
			rows[i] = newAttemptRow(s.d, c.ID, c.Now, c.Result)
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return errs
	}
	lost := make([]bool, len(cs))
	err := s.write(ctx, func(ctx context.Context, w *Tx) error {
		w.StampHint = len(todo) // each completion may write a Task version
		batch := make([]AttemptRow, len(todo))
		for j, i := range todo {
			batch[j] = rows[i]
			w.StampFloor = max(w.StampFloor, Micros(Norm(cs[i].Now)))
		}
		recs, err := s.b.RecordAttempts(ctx, w, batch)
		if err != nil {
			return err
		}
		f := &finishing{s: s, w: w, lost: lost, quiet: true, held: make([]heldCompletion, 0, len(todo))}
		for j, i := range todo {
			if err := f.add(ctx, i, recs[j], cs[i].Now, cs[i].Result); err != nil {
				return err
			}
		}
		if err := f.flush(ctx); err != nil {
			return err
		}
		var ds []outbox.Disclosure
		for _, i := range todo {
			if a := cs[i].Result.Audit; a != nil {
				ds = append(ds, *a)
			}
		}
		if _, err := s.appendDisclosures(ctx, w, ds); err != nil {
			return err
		}
		w.Changed = f.moved && !f.quiet
		return nil
	})
	if err != nil && len(todo) > 1 {
		for _, i := range todo {
			errs[i] = s.CompleteAttempt(ctx, cs[i].ID, cs[i].Now, cs[i].Result)
		}
		return errs
	}
	for _, i := range todo {
		switch {
		case err != nil:
			errs[i] = err
		case lost[i]:
			errs[i] = fmt.Errorf("%s: complete attempt: %w", s.d.Name, outbox.ErrLeaseLost)
		}
	}
	return errs
}

// checkCompletion refuses a result no message may move to.
func (s *Store) checkCompletion(res outbox.AttemptResult) error {
	if !ValidNext(res.State) {
		return fmt.Errorf("%s: complete attempt: invalid next state %q", s.d.Name, res.State)
	}
	if res.State == outbox.StatePending && res.NextAttemptAt.IsZero() {
		return fmt.Errorf("%s: complete attempt: pending needs NextAttemptAt", s.d.Name)
	}
	if a := res.Audit; a != nil {
		if err := checkDisclosure(*a); err != nil {
			return fmt.Errorf("%s: complete attempt: %w", s.d.Name, err)
		}
	}
	return nil
}

// finishing finishes, in the write transaction w, a batch's completions whose attempts are recorded, in
// order, as each would be finished alone (see finish), except that their new versions are written together
// (Backend.WriteVersions: on PostgreSQL one statement for the batch, not one per delivery). Each
// completion's version is prepared in turn (stamped, checked) and held with the rest of its completion
// until the next flush, which writes the versions held and then finishes their completions in order.
// Whatever must see what is held comes after a flush: a second version of the same referral is prepared
// after one (it then finds its referral moved on, as it would alone), and so is a capacity check (it counts
// open referrals). What is finished after a later completion's preparation is never what that preparation
// reads: a change reads its own referral's messages only.
type finishing struct {
	s     *Store
	w     *Tx
	lost  []bool // by completion: the lease was lost (the attempt alone recorded)
	quiet bool   // every completion so far is quiet (see finish)
	moved bool   // some message moved on
	held  []heldCompletion
}

// heldCompletion is a completion waiting for finishing.flush, with its prepared version if it has one.
type heldCompletion struct {
	i       int // its index in the batch (finishing.lost)
	rec     Recorded
	now     time.Time
	res     outbox.AttemptResult
	ch      Change
	version bool // ch is a version to write
}

// add prepares completion i's version, if its message moved on and its update changes the referral, and
// holds the completion for the next flush.
func (f *finishing) add(ctx context.Context, i int, rec Recorded, now time.Time, res outbox.AttemptResult) error {
	h := heldCompletion{i: i, rec: rec, now: now, res: res}
	if rec.Moved && res.Update != nil {
		d, cur := f.s.d, rec.Referral
		if f.holdsVersion(cur.Record.ID) {
			if err := f.flush(ctx); err != nil {
				return err
			}
		}
		ch, ok, err := d.NewChange(ctx, f.w, cur, now, res.Update, f.s.cfg.NewID)
		if err != nil {
			return err
		}
		if ok {
			if capacityBound(cur.Referral, ch.Next) {
				if err := f.flush(ctx); err != nil {
					return err
				}
			}
			if err := d.checkCapacity(ctx, f.w, cur.Referral, ch.Next); err != nil {
				return err
			}
			h.ch, h.version = ch, true
		}
	}
	f.held = append(f.held, h)
	return nil
}

// holdsVersion reports whether a version of the referral id is held, not yet written.
func (f *finishing) holdsVersion(id string) bool {
	for _, h := range f.held {
		if h.version && h.rec.Referral.Record.ID == id {
			return true
		}
	}
	return false
}

// flush writes the versions held and finishes their completions, in order.
func (f *finishing) flush(ctx context.Context) error {
	var vs []Version
	for _, h := range f.held {
		if h.version {
			vs = append(vs, h.ch.version(h.rec.Referral, outbox.CauseAttempt))
		}
	}
	var updated, subscribed []bool
	if len(vs) > 0 {
		var err error
		if updated, subscribed, err = f.s.b.WriteVersions(ctx, f.w, vs); err != nil {
			return err
		}
	}
	n := 0
	for _, h := range f.held {
		sub := false
		if h.version {
			if !updated[n] {
				return fmt.Errorf("%s: update referral: %w", f.s.d.Name, outbox.ErrVersionMismatch)
			}
			sub = subscribed[n]
			n++
		}
		if err := f.finish(ctx, h, sub); err != nil {
			return err
		}
	}
	f.held = f.held[:0]
	return nil
}

// finish finishes one completion whose version, if any, is written: what follows the version and the
// result's subscription change when its message moved on. It notes whether the lease was lost (the attempt
// alone recorded) and whether the change is quiet (nothing another instance could claim sooner for it).
func (f *finishing) finish(ctx context.Context, h heldCompletion, subscribed bool) error {
	if !h.rec.Moved {
		f.lost[h.i] = true
		return nil
	}
	w := f.w
	w.Changed = false
	if h.version {
		if _, err := f.s.afterVersion(ctx, w, h.rec.Referral, h.ch, h.now, subscribed); err != nil {
			return err
		}
	}
	if h.res.Subscription != nil {
		if err := f.s.d.ChangeSubscription(ctx, w, *h.res.Subscription, h.now); err != nil {
			return err
		}
	}
	// Changes is signalled, and other instances are told, when the outcome may let a claim take something
	// sooner: a retry (due again, maybe before anyone would look), a delivery unblocking a later message, or
	// messages the update wrote or withdrew. A dead message keeps its successors blocked, and one without
	// successors frees nothing: the place it held at its destination is the dispatcher's own to count, and
	// a signal would only make it claim for nothing (one empty claim per delivered message, issue 12).
	res := h.res
	tell := res.State == outbox.StatePending || (res.State == outbox.StateDelivered && h.rec.Successor)
	f.lost[h.i] = false
	f.quiet, f.moved = f.quiet && !tell && !w.Changed, true
	return nil
}

// newAttemptRow is res's attempt on message id as it is written at now.
func newAttemptRow(d Dialect, id string, now time.Time, res outbox.AttemptResult) AttemptRow {
	a := res.Attempt
	started := a.StartedAt
	if started.IsZero() {
		started = now
	}
	row := AttemptRow{MessageID: id, Owner: res.Owner, StartedUS: Micros(started), LatencyUS: a.Latency.Microseconds(),
		StatusCode: a.StatusCode, Error: d.storableError(a.Error), Response: d.storableResponse(a.Response),
		State: res.State, WithReferral: res.Update != nil}
	switch res.State {
	case outbox.StatePending:
		row.Next = Micros(res.NextAttemptAt)
	case outbox.StateDelivered:
		row.Delivered = Micros(now)
	case outbox.StateDead, outbox.StateInflight, outbox.StateCancelled, outbox.StateDiscarded:
	}
	return row
}

// storableError caps an error text at maxErrorLen bytes without cutting a rune, and makes it storable
// (Dialect.CleanText).
func (d Dialect) storableError(s string) string { return d.capText(s, maxErrorLen) }

// capText caps s at n bytes without cutting a rune, and makes it storable (Dialect.CleanText).
func (d Dialect) capText(s string, n int) string {
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "")
	}
	if d.CleanText != nil {
		s = d.CleanText(s)
	}
	return s
}

// ReleaseMessages returns owner's inflight messages to pending, due at the latest now, and says how many.
func (s *Store) ReleaseMessages(ctx context.Context, owner string, now time.Time) (int, error) {
	d := s.d
	var n int64
	err := s.write(ctx, func(ctx context.Context, w *Tx) error {
		nowUS := Micros(now)
		res, err := w.ExecContext(ctx, d.rebind(releaseMessages), nowUS, nowUS, owner)
		if err != nil {
			return d.DriverErr("release", err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return d.DriverErr("release", err)
		}
		if n > 0 {
			w.Changed = true
		}
		return nil
	})
	return int(n), err
}

// ListMessages returns messages matching q in Seq order (default limit 100, at most 1000).
func (s *Store) ListMessages(ctx context.Context, q outbox.MessageQuery) ([]outbox.Message, error) {
	return s.d.ListMessages(ctx, s.read, q)
}

// GetMessage returns one message with its attempts (by number) and replays (oldest first).
func (s *Store) GetMessage(ctx context.Context, id string) (outbox.MessageDetail, error) {
	return s.d.GetMessage(ctx, s.read, id)
}

// ReplayMessages moves the selected messages (see ReplayRequest) back to pending, keeping their ids:
// due at now, with a new retry budget from now, a Replay row recording actor, reason and the state left,
// and req.Update applied once to each referral with a replayed service message, all in one transaction. It
// returns the replayed messages as they now are; with DryRun, the messages that would be replayed as they
// are, writing nothing.
func (s *Store) ReplayMessages(ctx context.Context, now time.Time, req outbox.ReplayRequest) ([]outbox.Message, error) {
	d := s.d
	if len(req.IDs) == 0 && req.Filter == nil {
		return nil, fmt.Errorf("%s: replay: name message ids or give a filter", d.Name)
	}
	if req.DryRun {
		return d.SelectReplay(ctx, s.read, now, req, false)
	}
	var out []outbox.Message
	err := s.write(ctx, func(ctx context.Context, w *Tx) error {
		ms, err := d.SelectReplay(ctx, w, now, req, true)
		if err != nil {
			return err
		}
		referrals, err := d.MarkReplayed(ctx, w, ms, now, req)
		if err != nil {
			return err
		}
		if len(ms) > 0 {
			w.Changed = true
		}
		if err := s.updateEach(ctx, w, referrals, now, req.Update, outbox.CauseReplay); err != nil {
			return err
		}
		out = ms
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CountMessages returns the number of messages in every state (zeros included) and the creation time of
// the oldest pending message (zero when none).
func (s *Store) CountMessages(ctx context.Context) (map[outbox.MessageState]int, time.Time, error) {
	return s.d.CountMessages(ctx, s.read)
}

// UseNonce records a single-use value for every instance sharing the database (outbox.Nonces).
func (s *Store) UseNonce(ctx context.Context, nonce string, expiresAt, now time.Time) (bool, error) {
	var fresh bool
	err := s.write(ctx, func(ctx context.Context, w *Tx) error {
		var err error
		fresh, err = s.d.UseNonce(ctx, w, nonce, expiresAt, now)
		return err
	})
	return fresh, err
}

// CreateSubscription stores sub as active with no events yet and, in the same transaction, queues its
// handshake (sub.Handshake, when not nil) as its first message, due at once; times are truncated to the
// microsecond and UpdatedAt defaults to CreatedAt (required). With maxActive > 0 it first counts the owner's
// subscriptions that still notify (active or error; under Dialect.OwnerLock when writers run at once) and
// refuses with ErrSubscriptionLimit.
func (s *Store) CreateSubscription(ctx context.Context, sub outbox.Subscription, maxActive int) (outbox.Subscription, error) {
	d := s.d
	row, err := d.NewSubscriptionRow(sub)
	if err != nil {
		return outbox.Subscription{}, err
	}
	err = s.write(ctx, func(ctx context.Context, w *Tx) error {
		if maxActive > 0 {
			if d.OwnerLock != "" {
				if _, err := w.ExecContext(ctx, d.rebind(d.OwnerLock), sub.OwnerClientID); err != nil {
					return d.DriverErr("lock owner", err)
				}
			}
			var n int
			if err := w.QueryRowContext(ctx, d.rebind(countActiveSubscriptions), sub.OwnerClientID).Scan(&n); err != nil {
				return d.DriverErr("count subscriptions", err)
			}
			if n >= maxActive {
				return fmt.Errorf("%s: %d active: %w", d.Name, n, outbox.ErrSubscriptionLimit)
			}
		}
		if _, err := w.ExecContext(ctx, d.rebind(insertSubscription), row.Args()...); err != nil {
			if d.IsUnique(err) {
				return fmt.Errorf("%s: insert subscription: id already exists: %w", d.Name, err)
			}
			return d.DriverErr("insert subscription", err)
		}
		if sub.Handshake == nil {
			return nil
		}
		return s.insertMessages(ctx, w, "", 0, Micros(row.Sub.CreatedAt), []EventRow{{ID: s.cfg.NewID(),
			Kind: string(mapping.DestinationSubscription), Dest: sub.ID, Type: string(mapping.EventHandshake),
			Payload: sub.Handshake}})
	})
	if err != nil {
		return outbox.Subscription{}, err
	}
	out := row.Sub
	out.Handshake = nil
	return out, nil
}

// QueueHeartbeats queues a heartbeat for every active subscription with a heartbeat period that has had
// nothing queued for that period and has nothing waiting (outbox.Subscriptions), in one transaction.
func (s *Store) QueueHeartbeats(ctx context.Context, now time.Time, render outbox.HeartbeatFunc) (int, error) {
	d := s.d
	if render == nil {
		return 0, fmt.Errorf("%s: heartbeats: nil render", d.Name)
	}
	n := 0
	err := s.b.Write(ctx, func(ctx context.Context, w *Tx) error {
		n = 0
		nowUS := Micros(now)
		subs, err := d.subscriptions(ctx, w, "heartbeats", d.rebind(heartbeatDue), nowUS)
		if err != nil {
			return err
		}
		for _, sub := range subs {
			payload, err := render(sub, FromMicros(nowUS))
			if err != nil {
				return fmt.Errorf("%s: heartbeat of subscription %s: %w", d.Name, sub.ID, err)
			}
			if err := s.insertMessages(ctx, w, "", 0, nowUS, []EventRow{{ID: s.cfg.NewID(),
				Kind: string(mapping.DestinationSubscription), Dest: sub.ID, Type: string(mapping.EventHeartbeat),
				Payload: payload}}); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// GetSubscription returns one subscription.
func (s *Store) GetSubscription(ctx context.Context, id string) (outbox.Subscription, error) {
	return s.d.ReadSubscription(ctx, s.read, id, false)
}

// UpdateSubscriptionStatus sets the status (and UpdatedAt to now when it changes). Messages already queued for
// a subscription set off stay queued; the dispatcher's resolver makes them dead (outbox.ErrDestinationOff).
func (s *Store) UpdateSubscriptionStatus(ctx context.Context, id string, status outbox.SubscriptionStatus, now time.Time) (outbox.Subscription, error) {
	d := s.d
	if !status.Valid() {
		return outbox.Subscription{}, fmt.Errorf("%s: update subscription: invalid status %q", d.Name, status)
	}
	var out outbox.Subscription
	err := s.write(ctx, func(ctx context.Context, w *Tx) error {
		var err error
		out, err = d.SetSubscriptionStatus(ctx, w, id, status, now)
		return err
	})
	if err != nil {
		return outbox.Subscription{}, err
	}
	return out, nil
}

// ListSubscriptions returns the subscriptions matching q in (CreatedAt, ID) order.
func (s *Store) ListSubscriptions(ctx context.Context, q outbox.SubscriptionQuery) ([]outbox.Subscription, error) {
	return s.d.ListSubscriptions(ctx, s.read, q)
}
