package config

import (
	"fmt"
	"strconv"
	"time"
)

// Retention are the retention periods (README "Patient data"; docs/design.md#retention). A zero period keeps
// that data for ever.
type Retention struct {
	// DeliveredDays: a delivered outbox message's payload is scrubbed this many days after its delivery
	// (SOCIALRX_RETAIN_DELIVERED_DAYS, default 30; 0: never). Its metadata, a SHA-256 of the payload and its
	// attempt history stay. Dead messages are never scrubbed.
	DeliveredDays int
	// ClosedMonths: a referral in a final status has its personal fields erased this many months (of 30 days)
	// after its last change (SOCIALRX_RETAIN_CLOSED_MONTHS, default 24; 0: never).
	ClosedMonths int
	// Interval is how often serve applies them (SOCIALRX_RETENTION_INTERVAL, default 1h).
	Interval time.Duration
}

// DefaultRetention returns the default retention periods.
func DefaultRetention() Retention {
	return Retention{DeliveredDays: 30, ClosedMonths: 24, Interval: time.Hour}
}

// DeliveredBefore is the delivery time before which payloads are scrubbed at now (zero: never).
func (r Retention) DeliveredBefore(now time.Time) time.Time {
	if r.DeliveredDays <= 0 {
		return time.Time{}
	}
	return now.AddDate(0, 0, -r.DeliveredDays)
}

// ClosedBefore is the last-change time before which closed referrals are erased at now (zero: never).
func (r Retention) ClosedBefore(now time.Time) time.Time {
	if r.ClosedMonths <= 0 {
		return time.Time{}
	}
	return now.AddDate(0, 0, -30*r.ClosedMonths)
}

// retentionFromEnv reads the SOCIALRX_RETAIN_* and SOCIALRX_RETENTION_INTERVAL variables over r.
func retentionFromEnv(r Retention, getenv func(string) string) (Retention, []error) {
	var errs []error
	whole := func(name string, dst *int, most int) {
		v := getenv(name)
		if v == "" {
			return
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > most {
			errs = append(errs, fmt.Errorf("%s: %q must be a whole number from 0 (keep for ever) to %d", name, v, most))
			return
		}
		*dst = n
	}
	whole("SOCIALRX_RETAIN_DELIVERED_DAYS", &r.DeliveredDays, 36500)
	whole("SOCIALRX_RETAIN_CLOSED_MONTHS", &r.ClosedMonths, 1200)
	if v := getenv("SOCIALRX_RETENTION_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Minute {
			errs = append(errs, fmt.Errorf("SOCIALRX_RETENTION_INTERVAL: %q must be a duration of at least 1m, like 1h", v))
		} else {
			r.Interval = d
		}
	}
	return r, errs
}
