package mapping

import (
	"fmt"
	"strconv"
	"time"
)

// CapacityStatus is how full a community service says it is (issue 13; the community API's
// GET/PUT /community/v1/capacity). The zero value is invalid.
type CapacityStatus string

// Capacity states a group sets.
const (
	CapacityOpen     CapacityStatus = "open"     // taking new referrals
	CapacityWaitlist CapacityStatus = "waitlist" // taking them onto a waiting list (ExpectedWaitDays)
	CapacityFull     CapacityStatus = "full"     // taking none
	CapacityPaused   CapacityStatus = "paused"   // taking none until Until (a date), then open again
)

// AllCapacityStatuses lists every capacity state.
func AllCapacityStatuses() []CapacityStatus {
	return []CapacityStatus{CapacityOpen, CapacityWaitlist, CapacityFull, CapacityPaused}
}

// Valid reports whether s is a capacity state.
func (s CapacityStatus) Valid() bool {
	switch s {
	case CapacityOpen, CapacityWaitlist, CapacityFull, CapacityPaused:
		return true
	}
	return false
}

// TakesReferrals reports whether a service in state s takes a new referral now (open, or onto its waiting
// list).
func (s CapacityStatus) TakesReferrals() bool {
	switch s {
	case CapacityOpen, CapacityWaitlist:
		return true
	case CapacityFull, CapacityPaused:
	}
	return false
}

// SDOHCapacityCode is the SDOH Clinical Care capacity-status code (CodeSystem SDOHCCTemporaryCodesSystem)
// that stands for s: open → capacity, waitlist → waitlist, full and paused → no-capacity.
func (s CapacityStatus) SDOHCapacityCode() (code, display string) {
	switch s {
	case CapacityOpen:
		return "capacity", "Has Capacity"
	case CapacityWaitlist:
		return "waitlist", "No Capacity - Has Waitlist"
	case CapacityFull, CapacityPaused:
		return "no-capacity", "No Capacity"
	}
	return "", ""
}

// The SDOH Clinical Care guide's capacity-status extension (on HealthcareService) and the code system of its
// capacityStatus values.
const (
	SDOHCapacityExtension  = "http://hl7.org/fhir/us/sdoh-clinicalcare/StructureDefinition/SDOHCC-ExtensionHealthcareServiceCapacityStatus"
	SDOHCapacityCodeSystem = "http://hl7.org/fhir/us/sdoh-clinicalcare/CodeSystem/SDOHCC-CodeSystemTemporaryCodes"
)

// Limits of a capacity setting.
const (
	// MaxExpectedWaitDays bounds a waiting list's expected wait (a year).
	MaxExpectedWaitDays = 366
	// MaxOpenLimit bounds a service's maximum of open referrals.
	MaxOpenLimit = 100000
)

// Capacity is a community service's capacity: what the group set (Status, ExpectedWaitDays, Until, MaxOpen)
// and how many referrals it holds open now (Open, counted by the store).
type Capacity struct {
	ServiceID string
	Status    CapacityStatus
	// ExpectedWaitDays is the expected wait on the waiting list, in days (waitlist only; 0: not said).
	ExpectedWaitDays int
	// Until is the first day the service takes referrals again (paused only; UTC midnight; zero: not said).
	Until time.Time
	// MaxOpen > 0 caps the referrals the service holds open at once (OpenStatus: accepted, in-progress,
	// on-hold): an accept beyond it is refused and the service shows as full until one closes. 0: no cap.
	MaxOpen int
	// Open is how many of the service's referrals are open now (the store counts them; never set by hand).
	Open      int
	UpdatedAt time.Time
	UpdatedBy string
}

// OpenStatus reports whether a referral in status s counts against its service's maximum: the service has
// taken it on (accepted, in-progress, on-hold) and not finished it. Accepting adds one; completing, failing
// or a GP's cancellation of an accepted referral frees one.
func OpenStatus(s TaskStatus) bool {
	switch s {
	case StatusAccepted, StatusInProgress, StatusOnHold:
		return true
	case StatusRequested, StatusReceived, StatusRejected, StatusCompleted, StatusFailed, StatusCancelled, StatusEnteredInError:
	}
	return false
}

// Effective is the state the service is in at now: full while its open referrals reach MaxOpen (whatever it
// set), open again once a pause's Until has come, otherwise what it set. A service that never set one is open.
func (c Capacity) Effective(now time.Time) CapacityStatus {
	st := c.Status
	if !st.Valid() {
		st = CapacityOpen
	}
	if st == CapacityPaused && !c.Until.IsZero() && !now.Before(c.Until) {
		st = CapacityOpen
	}
	if c.MaxOpen > 0 && c.Open >= c.MaxOpen && st.TakesReferrals() {
		return CapacityFull
	}
	return st
}

// Note is a short sentence for people (the GP's Task, the HealthcareService's capacityNotes): the state at now
// with the expected wait, the date a pause ends, or the cap reached. It carries no patient data.
func (c Capacity) Note(now time.Time) string {
	st := c.Effective(now)
	switch st {
	case CapacityOpen:
		return "taking referrals"
	case CapacityWaitlist:
		if c.ExpectedWaitDays > 0 {
			return "waiting list: expected wait " + strconv.Itoa(c.ExpectedWaitDays) + " days"
		}
		return "waiting list"
	case CapacityFull:
		if c.MaxOpen > 0 && c.Open >= c.MaxOpen && c.Status.TakesReferrals() {
			return fmt.Sprintf("full: %d of %d places taken", c.Open, c.MaxOpen)
		}
		return "full: not taking referrals"
	case CapacityPaused:
		if !c.Until.IsZero() {
			return "paused until " + c.Until.UTC().Format(time.DateOnly)
		}
		return "paused"
	}
	return ""
}

// CapacityFields are the capacity setting's field names, as the community API spells them.
const (
	FieldCapacityStatus = "status"
	FieldExpectedWait   = "expected_wait_days"
	FieldUntil          = "until"
	FieldMaxOpen        = "max_open"
)

// CheckCapacity checks a setting a group sends, and returns the field at fault and why ("" when it is
// sound): a known status; expected_wait_days only with waitlist, 0..MaxExpectedWaitDays; until only with
// paused, a date after today; max_open 0..MaxOpenLimit.
func CheckCapacity(c Capacity, now time.Time) (field, why string) {
	switch {
	case !c.Status.Valid():
		return FieldCapacityStatus, fmt.Sprintf("status %q is not a capacity state; use open, waitlist, full or paused", c.Status)
	case c.ExpectedWaitDays < 0 || c.ExpectedWaitDays > MaxExpectedWaitDays:
		return FieldExpectedWait, fmt.Sprintf("expected_wait_days must be a whole number from 0 to %d", MaxExpectedWaitDays)
	case c.ExpectedWaitDays > 0 && c.Status != CapacityWaitlist:
		return FieldExpectedWait, "expected_wait_days goes only with status waitlist"
	case !c.Until.IsZero() && c.Status != CapacityPaused:
		return FieldUntil, "until goes only with status paused"
	case !c.Until.IsZero() && !c.Until.After(now):
		return FieldUntil, "until must be a date after today"
	case c.MaxOpen < 0 || c.MaxOpen > MaxOpenLimit:
		return FieldMaxOpen, fmt.Sprintf("max_open must be a whole number from 0 (no maximum) to %d", MaxOpenLimit)
	}
	return "", ""
}
