package mapping

import (
	"cmp"
	"regexp"
	"slices"
	"strings"
)

// UnmetDeclined is the unmet-need reason of a referral a service declined (Task rejected).
const UnmetDeclined UnmetReason = "declined"

// The unmet-need export suppresses small numbers with SuppressBelow (figures.go): a count from 1 to 4 is
// never shown, only that it is small.

// UnmetKey is one cell of the unmet-need counts: why, which need ("" when the reason is not about a need),
// which month (YYYY-MM, UTC, of the referral's creation) and which postcode district (the outward code:
// "BA11"; "unknown" when the record has no postcode).
type UnmetKey struct {
	Reason   UnmetReason `json:"reason"`
	Need     SupportNeed `json:"need,omitempty"`
	Month    string      `json:"month"`
	District string      `json:"district"`
}

// UnmetRow is one cell with its count; Suppressed when the count is from 1 to SuppressBelow-1 (Count is then
// 0 and must not be shown).
type UnmetRow struct {
	UnmetKey
	Count      int  `json:"count"`
	Suppressed bool `json:"suppressed,omitempty"`
}

// PostcodeDistrict is a UK postcode's outward code (the district: "BA11 1AA" → "BA11"), upper case; "unknown"
// when there is none.
func PostcodeDistrict(postcode string) string {
	p := strings.ToUpper(strings.Join(strings.Fields(postcode), ""))
	if !postcodePattern.MatchString(p) {
		return "unknown"
	}
	return p[:len(p)-3] // the inward code is always three characters
}

// postcodePattern is a UK postcode without spaces: an outward code (area letters, district digit, an optional
// letter or digit) and a three-character inward code. Anything else counts as unknown, so nothing but a
// district ever reaches the export.
var postcodePattern = regexp.MustCompile(`^[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}$`)

// UnmetCells are the cells one referral adds to the unmet-need counts: a routing that found no room or no
// group meeting the needs (Record.Route with a reason), one cell per need that routing looked at (or one with
// no need); and a decline (status rejected), one cell. A referral counts at most once per reason and need.
func UnmetCells(r Referral) []UnmetKey {
	rec := r.Record
	base := UnmetKey{Month: rec.CreatedAt.UTC().Format("2006-01"), District: PostcodeDistrict(rec.Patient.Postcode)}
	var out []UnmetKey
	if d := rec.Route; d != nil && d.Reason != "" {
		needs := d.Needs
		if d.Reason == UnmetNoCapacity || len(needs) == 0 {
			k := base
			k.Reason = d.Reason
			out = append(out, k)
		} else {
			for _, n := range needs {
				k := base
				k.Reason, k.Need = d.Reason, n
				out = append(out, k)
			}
		}
	}
	if rec.Status == StatusRejected {
		k := base
		k.Reason = UnmetDeclined
		out = append(out, k)
	}
	return out
}

// CountUnmet adds up the cells of referrals and suppresses small numbers, ordered by month, district,
// reason and need.
func CountUnmet(cells []UnmetKey) []UnmetRow {
	counts := map[UnmetKey]int{}
	for _, k := range cells {
		counts[k]++
	}
	out := make([]UnmetRow, 0, len(counts))
	for k, n := range counts {
		row := UnmetRow{UnmetKey: k, Count: n}
		if n < SuppressBelow {
			row.Count, row.Suppressed = 0, true
		}
		out = append(out, row)
	}
	slices.SortFunc(out, func(a, b UnmetRow) int {
		return cmp.Or(cmp.Compare(a.Month, b.Month), cmp.Compare(a.District, b.District),
			cmp.Compare(a.Reason, b.Reason), cmp.Compare(a.Need, b.Need))
	})
	return out
}
