package mapping

import "time"

// MarkOverdue flags a referral that its community service has not acknowledged within deadline of its creation:
// still requested, and its transport fact is queued, delivered, awaiting-pickup or picked-up (a delivery-failed referral
// keeps that more urgent fact). It returns the referral with businessStatus overdue and true, or the referral
// unchanged and false. The service's first status move clears it again (ApplyStatus).
func MarkOverdue(cur Referral, now time.Time, deadline time.Duration) (Referral, bool) {
	if cur.Record.Status != StatusRequested || now.Before(cur.Record.CreatedAt.Add(deadline)) {
		return cur, false
	}
	switch cur.BusinessStatus {
	case BusinessQueued, BusinessDelivered, BusinessAwaitingPickup, BusinessPickedUp:
		return MarkBusinessStatus(cur, BusinessOverdue)
	case BusinessDeliveryFailed, BusinessOverdue:
	}
	return cur, false
}

// OverdueFrom lists the transport facts MarkOverdue moves to overdue, so that a store can leave out every
// other referral before any is decoded (the overdue sweep reads only candidates).
func OverdueFrom() []BusinessStatus {
	return []BusinessStatus{BusinessQueued, BusinessDelivered, BusinessAwaitingPickup, BusinessPickedUp}
}
