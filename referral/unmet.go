package referral

import (
	"context"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// unmetPage is how many referrals UnmetNeed reads at a time.
const unmetPage = 500

// UnmetNeed counts the referrals that found no room, no group meeting the person's needs, or were declined,
// by reason, need, month and postcode district, with small numbers suppressed (mapping.CountUnmet), for
// commissioners and community developers (issue 13). It reads every referral once, a page at a time; the
// answer holds no patient data (a district is the outward half of a postcode, and counts under
// mapping.SuppressBelow are never shown).
func (o Operator) UnmetNeed(ctx context.Context) ([]mapping.UnmetRow, error) {
	var cells []mapping.UnmetKey
	q := outbox.ReferralQuery{Limit: unmetPage}
	for {
		refs, next, err := o.Store.SearchReferrals(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			cells = append(cells, mapping.UnmetCells(r.Referral)...)
		}
		if next == nil {
			break
		}
		q.After = next
	}
	return mapping.CountUnmet(cells), nil
}
