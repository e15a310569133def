package referral

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// Discard retires the named messages for good (they must never be sent): each becomes discarded, with the
// actor and the reason recorded, and its referral's businessStatus becomes delivery-failed (nothing will be
// delivered). Every named message must exist (outbox.ErrNotFound) and be pending or dead
// (outbox.ErrBadRequest naming it and its state otherwise: nothing is discarded). With DryRun nothing
// changes and the returned messages are what would be discarded. The returned messages carry no payload.
func (o Operator) Discard(ctx context.Context, req outbox.DiscardRequest) ([]outbox.Message, error) {
	reason, err := checkReason("discarded", req.Reason, req.Actor)
	if err != nil {
		return nil, err
	}
	req.Reason = reason
	if len(req.IDs) == 0 {
		return nil, fmt.Errorf("%w: name the message ids to discard", outbox.ErrBadRequest)
	}
	for _, id := range req.IDs {
		d, err := o.Store.GetMessage(ctx, id)
		if err != nil {
			return nil, err
		}
		if st := d.Message.State; !outbox.Discardable(st) {
			return nil, fmt.Errorf("%w: message %s is %s: %s; nothing was discarded", outbox.ErrBadRequest, id, st, notDiscardable(st))
		}
	}
	req.Update = outbox.MarkDeliveryFailed
	ms, err := o.Store.DiscardMessages(ctx, o.now(), req)
	if err == nil && !req.DryRun {
		_ = o.auditMessages(ctx, outbox.AuditUpdate, ms...) // a change: never refused for the trail
	}
	return withoutPayloads(ms), err
}

// notDiscardable says why a message in state st cannot be discarded.
func notDiscardable(st outbox.MessageState) string {
	switch st {
	case outbox.StateInflight:
		return "it is being delivered right now; pause its destination, and discard it once the attempt is over"
	case outbox.StateDelivered:
		return "it was delivered already"
	case outbox.StateCancelled:
		return "it was withdrawn before delivery and will never be sent"
	case outbox.StateDiscarded:
		return "it was discarded already"
	case outbox.StatePending, outbox.StateDead:
	}
	return "only pending or dead messages can be discarded"
}

func discardedBy(d outbox.MessageDetail) string {
	if d.Discard == nil {
		return "an engineer"
	}
	return d.Discard.Actor
}

func discardReason(d outbox.MessageDetail) string {
	if d.Discard == nil {
		return "no reason recorded"
	}
	return d.Discard.Reason
}

// service checks that serviceID names a community service deliveries can be paused for: one with a
// webhook in the Directory, or, without a Directory, one the outbox has messages for.
func (o Operator) service(ctx context.Context, serviceID string) (mapping.Destination, error) {
	dest := mapping.Destination{Kind: mapping.DestinationService, ID: strings.TrimSpace(serviceID)}
	if dest.ID == "" {
		return dest, fmt.Errorf("%w: name the community service (its directory id)", outbox.ErrBadRequest)
	}
	if o.Directory != nil {
		svc, ok := o.Directory.Service(dest.ID)
		switch {
		case !ok:
			return dest, fmt.Errorf("%w: there is no community service %q in the directory (services: %s)", outbox.ErrBadRequest,
				dest.ID, strings.Join(o.serviceIDs(), ", "))
		case svc.Delivery.URL == "":
			return dest, fmt.Errorf("%w: %s is pull-only (its referrals wait in its inbox): nothing is delivered to it, so there is nothing to pause", outbox.ErrBadRequest, dest.ID)
		}
		return dest, nil
	}
	ms, err := o.Store.ListMessages(ctx, outbox.MessageQuery{Destination: &dest, Limit: 1})
	if err != nil {
		return dest, err
	}
	if len(ms) == 0 {
		return dest, fmt.Errorf("%w: no message was ever sent to a service %q (check the id, or set SOCIALRX_CONFIG to check it against the directory)", outbox.ErrBadRequest, dest.ID)
	}
	return dest, nil
}

// serviceIDs lists the Directory's services that receive webhooks.
func (o Operator) serviceIDs() []string {
	var out []string
	for _, s := range o.Directory.Services {
		if s.Delivery.URL != "" {
			out = append(out, s.ID)
		}
	}
	return out
}

// Pause holds the deliveries to a community service: its messages stay pending (no attempt is made, their
// retry budgets stop) until Resume, on every instance sharing the database. Pausing a paused service keeps
// the first pause: the pause in force is returned, with started false.
func (o Operator) Pause(ctx context.Context, serviceID, reason, actor string) (outbox.Pause, bool, error) {
	reason, err := checkReason("paused", reason, actor)
	if err != nil {
		return outbox.Pause{}, false, err
	}
	dest, err := o.service(ctx, serviceID)
	if err != nil {
		return outbox.Pause{}, false, err
	}
	return o.Store.PauseDestination(ctx, outbox.Pause{Destination: dest, PausedAt: o.now(), PausedBy: actor, Reason: reason})
}

// Resume ends a service's pause: its pending messages are due at once (in order per referral) and the
// paused time is given back to their retry budgets. A service that is not paused is outbox.ErrBadRequest.
func (o Operator) Resume(ctx context.Context, serviceID, actor string) (outbox.Resumed, error) {
	if strings.TrimSpace(actor) == "" {
		return outbox.Resumed{}, fmt.Errorf("%w: the actor is required", outbox.ErrBadRequest)
	}
	dest := mapping.Destination{Kind: mapping.DestinationService, ID: strings.TrimSpace(serviceID)}
	res, err := o.Store.ResumeDestination(ctx, dest, o.now(), actor)
	if errors.Is(err, outbox.ErrNotFound) {
		return res, fmt.Errorf("%w: %s is not paused", outbox.ErrBadRequest, dest.ID)
	}
	return res, err
}

// Pauses lists the pauses in force, oldest first.
func (o Operator) Pauses(ctx context.Context) ([]outbox.Pause, error) {
	return o.Store.ListPauses(ctx)
}

// DestinationOverview is one destination's messages by state, and whether it is paused.
type DestinationOverview struct {
	Destination mapping.Destination
	Counts      map[outbox.MessageState]int
	Pause       *outbox.Pause
}

// InboxOverview is one community service's pull inbox: referrals still requested, how many overdue, the
// oldest's wait.
type InboxOverview struct {
	ServiceID string
	Name      string
	PullOnly  bool
	Waiting   int
	Overdue   int
	// OldestWait is how long the oldest waiting referral has waited (0 when none waits).
	OldestWait time.Duration
}

// Overview is the system at a glance.
type Overview struct {
	At            time.Time
	Counts        map[outbox.MessageState]int
	OldestPending time.Duration // age of the oldest pending message (0: none)
	// DeliveredLastMinute is the number of messages delivered in the minute before At.
	DeliveredLastMinute int
	Destinations        []DestinationOverview // by destination
	Pauses              []outbox.Pause
	Inboxes             []InboxOverview // every pull-only service of the Directory, then any other with referrals waiting
}

// Overview reads the system at a glance: messages by state and by destination, the oldest pending
// message's age, deliveries in the last minute, the pauses in force and the pull inboxes.
func (o Operator) Overview(ctx context.Context) (Overview, error) {
	now := o.now()
	ov := Overview{At: now}
	counts, oldest, err := o.Store.CountMessages(ctx)
	if err != nil {
		return ov, err
	}
	ov.Counts = counts
	if !oldest.IsZero() {
		ov.OldestPending = max(now.Sub(oldest), 0)
	}
	if ov.DeliveredLastMinute, err = o.Store.CountDelivered(ctx, now.Add(-time.Minute)); err != nil {
		return ov, err
	}
	if ov.Pauses, err = o.Store.ListPauses(ctx); err != nil {
		return ov, err
	}
	byDest, err := o.Store.CountByDestination(ctx)
	if err != nil {
		return ov, err
	}
	for _, c := range byDest {
		if n := len(ov.Destinations); n == 0 || ov.Destinations[n-1].Destination != c.Destination {
			ov.Destinations = append(ov.Destinations, DestinationOverview{Destination: c.Destination, Counts: map[outbox.MessageState]int{}})
		}
		ov.Destinations[len(ov.Destinations)-1].Counts[c.State] = c.Count
	}
	for _, p := range ov.Pauses {
		i := slices.IndexFunc(ov.Destinations, func(d DestinationOverview) bool { return d.Destination == p.Destination })
		if i < 0 {
			ov.Destinations = append(ov.Destinations, DestinationOverview{Destination: p.Destination, Counts: map[outbox.MessageState]int{}})
			i = len(ov.Destinations) - 1
		}
		ov.Destinations[i].Pause = &p
	}
	if ov.Inboxes, err = o.Inboxes(ctx); err != nil {
		return ov, err
	}
	return ov, nil
}

// Inboxes reads the referrals waiting for their community services: every pull-only service of the
// Directory (none waiting too), then every other service with referrals waiting.
func (o Operator) Inboxes(ctx context.Context) ([]InboxOverview, error) {
	stats, err := o.Store.InboxStats(ctx)
	if err != nil {
		return nil, err
	}
	return o.inboxes(o.now(), stats), nil
}

// inboxes is the inbox overview: every pull-only service of the Directory (waiting or not), then the other
// services with referrals waiting.
func (o Operator) inboxes(now time.Time, stats []outbox.InboxStat) []InboxOverview {
	var out []InboxOverview
	seen := map[string]bool{}
	add := func(st outbox.InboxStat) {
		in := InboxOverview{ServiceID: st.ServiceID, Name: st.ServiceID, Waiting: st.Waiting, Overdue: st.Overdue}
		if !st.OldestWaiting.IsZero() {
			in.OldestWait = max(now.Sub(st.OldestWaiting), 0)
		}
		if o.Directory != nil {
			if svc, ok := o.Directory.Service(st.ServiceID); ok {
				in.PullOnly = svc.Delivery.URL == ""
				if svc.Name != "" {
					in.Name = svc.Name
				}
			}
		}
		seen[st.ServiceID] = true
		out = append(out, in)
	}
	if o.Directory != nil {
		for _, svc := range o.Directory.Services {
			if svc.Delivery.URL != "" {
				continue
			}
			st := outbox.InboxStat{ServiceID: svc.ID}
			if i := slices.IndexFunc(stats, func(s outbox.InboxStat) bool { return s.ServiceID == svc.ID }); i >= 0 {
				st = stats[i]
			}
			add(st)
		}
	}
	for _, st := range stats {
		if !seen[st.ServiceID] {
			add(st)
		}
	}
	return out
}

// FindReferrals finds referrals by what an engineer has at hand: a referral, Task or ServiceRequest id, a
// ServiceRequest.identifier ("system|value", or the value alone) or an NHS number (10 digits, spaces
// allowed). At most 50, oldest change first.
func (o Operator) FindReferrals(ctx context.Context, text string) ([]outbox.Referral, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, fmt.Errorf("%w: type a referral id, a ServiceRequest identifier or an NHS number", outbox.ErrBadRequest)
	}
	var out []outbox.Referral
	add := func(rs ...outbox.Referral) {
		for _, r := range rs {
			if !slices.ContainsFunc(out, func(x outbox.Referral) bool { return x.Record.ID == r.Record.ID }) {
				out = append(out, r)
			}
		}
	}
	if r, err := o.Store.GetReferral(ctx, text); err == nil {
		add(r)
	} else if !errors.Is(err, outbox.ErrNotFound) {
		return nil, err
	}
	ident := mapping.Identifier{Value: text}
	if sys, val, ok := strings.Cut(text, "|"); ok {
		ident = mapping.Identifier{System: sys, Value: val}
	}
	rs, _, err := o.Store.SearchReferrals(ctx, outbox.ReferralQuery{Identifier: &ident, Limit: 50})
	if err != nil {
		return nil, err
	}
	add(rs...)
	if nhs := strings.ReplaceAll(text, " ", ""); len(nhs) == 10 && strings.Trim(nhs, "0123456789") == "" {
		rs, _, err := o.Store.SearchReferrals(ctx, outbox.ReferralQuery{PatientNHSNumber: nhs, Limit: 50})
		if err != nil {
			return nil, err
		}
		add(rs...)
	}
	if err := o.auditReferrals(ctx, outbox.AuditRead, out...); err != nil {
		return nil, err
	}
	return out, nil
}

// Reveal returns one message with its payload for an engineer who asked to see the patient's details, and
// writes the audit line: who (actor), which message and referral, under which request. Nothing else shows an
// unmasked payload in the console.
func (o Operator) Reveal(ctx context.Context, id, actor, requestID string) (outbox.MessageDetail, error) {
	d, err := o.Store.GetMessage(ctx, id)
	if err != nil {
		return d, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log.InfoContext(ctx, "payload revealed", "actor", actor, "message_id", d.Message.ID,
		"referral_id", d.Message.ReferralID, "request_id", requestID)
	if err := o.auditMessages(ctx, outbox.AuditRead, d.Message); err != nil {
		return outbox.MessageDetail{}, err
	}
	return d, nil
}
