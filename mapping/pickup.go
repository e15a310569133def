package mapping

// BusinessAfterMove is the transport fact a referral shows after a status change (a move or a note) by
// actor by, given the fact it showed before (docs/design.md#state-machine). Task.businessStatus must never
// contradict Task.status, so a change tells what the change itself proves:
//
//   - awaiting-pickup (a pull-only service has not collected it) and the service acts (any move or note):
//     picked-up. The service has it; the fact that it was waiting is no longer true.
//   - awaiting-pickup and the requester cancels it or marks it entered-in-error: no fact (""). Nothing is
//     waiting to be collected any more, and nothing was ever sent.
//   - overdue (not acknowledged in time) and the service acts: the service answered, so the referral reached
//     it: delivered when the service has a webhook, picked-up when it is pull-only.
//   - anything else: unchanged (queued, delivered and delivery-failed are facts about a webhook delivery that a
//     status change does not alter; overdue stays until the service answers).
func BusinessAfterMove(cur BusinessStatus, by Actor, webhook bool) BusinessStatus {
	switch cur {
	case BusinessAwaitingPickup:
		switch by {
		case ActorCommunity:
			return BusinessPickedUp
		case ActorRequester:
			return ""
		case ActorSystem:
		}
	case BusinessOverdue:
		if by == ActorCommunity {
			if webhook {
				return BusinessDelivered
			}
			return BusinessPickedUp
		}
	case BusinessQueued, BusinessDelivered, BusinessDeliveryFailed, BusinessPickedUp:
	}
	return cur
}
