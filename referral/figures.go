package referral

import (
	"context"
	"strings"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// FiguresRequest asks for monthly figures (issue 14) from month From to month To ("YYYY-MM", UK months).
// A community client gets its own service's; an admin client the Practice's (an ODS code), the ServiceID's,
// or, with neither, the whole area's.
type FiguresRequest struct {
	From, To  string
	Practice  string
	ServiceID string
}

// figuresPage is how many referrals Figures reads from the store at once.
const figuresPage = 500

// Figures computes monthly figures (mapping.Figures: received, accepted, declined by reason, completed,
// medians, measures; small numbers suppressed) over the referrals the caller may count, received in the
// months asked for. GP clients get none (fault.Forbidden): the practice's figures are the admin's.
func (s *Service) Figures(ctx context.Context, c Caller, req FiguresRequest) ([]mapping.MonthFigures, error) {
	uk := s.uk
	q := outbox.ReferralQuery{Limit: figuresPage}
	switch c.Client.Role {
	case config.RoleCommunity:
		if req.Practice != "" || (req.ServiceID != "" && req.ServiceID != c.Client.Service) {
			return nil, fault.New(fault.Forbidden, "forbidden", "", "a community service sees its own figures only")
		}
		q.ServiceID = c.Client.Service
	case config.RoleAdmin:
		if req.Practice != "" {
			q.Practices = []string{strings.ToUpper(strings.TrimSpace(req.Practice))}
		}
		q.ServiceID = req.ServiceID
	case config.RoleGP:
		return nil, fault.New(fault.Forbidden, "forbidden", "", "figures are for community services and administrators")
	}
	// Validate the months before reading anything.
	if _, err := mapping.Figures(nil, req.From, req.To, uk); err != nil {
		return nil, err
	}
	from, _ := time.ParseInLocation("2006-01", req.From, uk)
	to, _ := time.ParseInLocation("2006-01", req.To, uk)
	to = to.AddDate(0, 1, 0)
	var facts []mapping.ReferralFacts
	for {
		refs, next, err := s.store.SearchReferrals(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			if !Visible(c.Client, r) || r.Record.CreatedAt.Before(from) || !r.Record.CreatedAt.Before(to) {
				continue
			}
			versions, err := s.store.ReferralVersions(ctx, r.Record.ID)
			if err != nil {
				return nil, err
			}
			vs := make([]mapping.Referral, len(versions))
			for i, v := range versions {
				vs[i] = v.Referral
			}
			facts = append(facts, mapping.FactsOf(vs))
		}
		if next == nil {
			break
		}
		q.After = next
	}
	return mapping.Figures(facts, req.From, req.To, uk)
}
