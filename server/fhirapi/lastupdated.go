package fhirapi

import (
	"fmt"
	"strings"
	"time"

	"github.com/socialrx/socialrx/referral"
)

// _lastUpdated (R4 search.html#date). A value names a period, its precision: 2026 is the year, 2026-11-21 the
// day, 2026-11-21T10:00Z the minute, 2026-11-21T10:00:00Z the second, 2026-11-21T10:00:00.123456Z the
// microsecond. eq (the default) matches the whole period. The other prefixes compare with the value as an
// instant when it is given to the second or finer — so that polling with _lastUpdated=gt<the last
// meta.lastUpdated seen> never skips a change made later in the same second — and with the period itself when
// it is coarser (gt2026-11-21: from 22 November on; le2026-11-21: to the end of 21 November). A value without a
// time zone is in UTC (socialrx writes every time in UTC). Repeated values AND: each bound keeps its
// tightest value.

// period is a _lastUpdated value: its start, its end (exclusive) and whether it names an instant (to the
// second or finer) rather than a coarser period.
type period struct {
	start, end time.Time
	instant    bool
}

// parsePeriod reads a FHIR date, dateTime or instant search value.
func parsePeriod(v string) (period, error) {
	bad := fmt.Errorf("_lastUpdated %q is not a FHIR date or dateTime (e.g. 2026-11-21, 2026-11-21T10:00Z, gt2026-11-21T10:00:00.123Z)", v)
	date, clock, hasTime := strings.Cut(v, "T")
	if !hasTime {
		for _, c := range []struct {
			layout string
			next   func(time.Time) time.Time
		}{
			{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
			{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
			{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
		} {
			if len(date) == len(c.layout) {
				t, err := time.ParseInLocation(c.layout, date, time.UTC)
				if err != nil {
					return period{}, bad
				}
				return period{start: t, end: c.next(t)}, nil
			}
		}
		return period{}, bad
	}
	zone := "Z"
	switch {
	case strings.HasSuffix(clock, "Z"):
		clock = strings.TrimSuffix(clock, "Z")
	case len(clock) > 6 && (clock[len(clock)-6] == '+' || clock[len(clock)-6] == '-'):
		clock, zone = clock[:len(clock)-6], clock[len(clock)-6:]
	}
	var step time.Duration
	switch {
	case len(clock) == len("15:04"):
		step = time.Minute
		clock += ":00"
	case len(clock) == len("15:04:05"):
		step = time.Second
	case len(clock) > len("15:04:05.") && clock[8] == '.':
		step = time.Second
		for range len(clock) - 9 {
			step /= 10
		}
		step = max(step, time.Microsecond) // stored to the microsecond
	default:
		return period{}, bad
	}
	t, err := time.Parse(time.RFC3339Nano, date+"T"+clock+zone)
	if err != nil {
		return period{}, bad
	}
	t = t.UTC()
	return period{start: t, end: t.Add(step), instant: step <= time.Second}, nil
}

// lastUpdated applies one _lastUpdated value (with its prefix) to q.
func lastUpdated(q *referral.Query, v string) error {
	prefix := "eq"
	if len(v) > 2 && v[2] >= '0' && v[2] <= '9' {
		switch v[:2] {
		case "eq", "ne", "gt", "ge", "lt", "le", "sa", "eb", "ap":
			prefix, v = v[:2], v[2:]
		}
	}
	p, err := parsePeriod(v)
	if err != nil {
		return err
	}
	later := func(dst *time.Time, t time.Time) {
		if dst.IsZero() || t.After(*dst) {
			*dst = t
		}
	}
	earlier := func(dst *time.Time, t time.Time) {
		if dst.IsZero() || t.Before(*dst) {
			*dst = t
		}
	}
	switch prefix {
	case "eq":
		later(&q.UpdatedFrom, p.start)
		earlier(&q.UpdatedBefore, p.end)
	case "gt", "sa":
		if p.instant {
			later(&q.UpdatedAfter, p.start)
		} else {
			later(&q.UpdatedFrom, p.end)
		}
	case "ge":
		later(&q.UpdatedFrom, p.start)
	case "lt", "eb":
		earlier(&q.UpdatedBefore, p.start)
	case "le":
		if p.instant {
			earlier(&q.UpdatedUntil, p.start)
		} else {
			earlier(&q.UpdatedBefore, p.end)
		}
	default:
		return fmt.Errorf("_lastUpdated prefix %q is not supported (use eq, gt, ge, lt, le, sa or eb)", prefix)
	}
	return nil
}
