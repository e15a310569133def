package fhir

import "time"

// Instant formats t as a FHIR instant in UTC with millisecond precision (truncated), e.g.
// "2025-01-31T09:30:00.123Z". It is the one formatter for meta.lastUpdated, Bundle.timestamp,
// entry.response.lastModified and CapabilityStatement.date.
func Instant(t time.Time) string {
	return t.UTC().Truncate(time.Millisecond).Format("2006-01-02T15:04:05.000Z")
}
