package fhir

import "time"

// Instant formats t as a FHIR instant in UTC with millisecond precision (truncated), e.g.
// "2025-01-31T09:30:00.123Z": for times a client reads but never compares to find changes (a searchset's
// meta.lastUpdated, CapabilityStatement.date, a transaction response's lastModified, a revoked ServiceRequest's
// meta.lastUpdated). Times that drive polling use ExactInstant.
func Instant(t time.Time) string {
	return t.UTC().Truncate(time.Millisecond).Format("2006-01-02T15:04:05.000Z")
}

// ExactInstant formats t as a FHIR instant in UTC with all the precision t has (RFC 3339, trailing zeros of the
// fraction dropped). It is the formatter for times a client compares to find changes: a Task's meta.lastUpdated
// and lastModified (stored to the microsecond, so that a GP polling _lastUpdated=gt… never loses an update),
// authoredOn, note times, a stored resource's meta.lastUpdated and notification timestamps.
func ExactInstant(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
