package communityapi

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// capacityBox is the inbox's one-tap capacity control: the state the group is in now, in words, and the
// values of its optional fields (as typed, after a refusal).
type capacityBox struct {
	Status  mapping.CapacityStatus // what the group set
	Label   string                 // the state now, in words
	Note    string
	Open    int
	MaxOpen int
	Wait    string // expected_wait_days as shown or typed
	Until   string // until as shown or typed
	ErrorOn string // the field a refusal is about
}

// Is reports whether the group's own setting is st (the pressed button), as "true" or "false" for
// aria-pressed.
func (c capacityBox) Is(st string) string { return strconv.FormatBool(string(c.Status) == st) }

// capacityLabel says a capacity state in a volunteer's words.
func capacityLabel(st mapping.CapacityStatus) string {
	switch st {
	case mapping.CapacityOpen:
		return "taking referrals"
	case mapping.CapacityWaitlist:
		return "waiting list"
	case mapping.CapacityFull:
		return "full"
	case mapping.CapacityPaused:
		return "paused"
	}
	return string(st)
}

// capacityBox reads the signed-in group's capacity for the control; form, when not nil, holds what was typed.
func (a *API) capacityBox(r *http.Request, form url.Values) (*capacityBox, error) {
	c, err := a.svc.Capacity(r.Context(), web.Caller(r.Context()))
	if err != nil {
		return nil, err
	}
	now := a.now()
	box := &capacityBox{Status: c.Status, Label: capacityLabel(c.Effective(now)), Open: c.Open, MaxOpen: c.MaxOpen}
	if box.Note = c.Note(now); box.Note == box.Label {
		box.Note = ""
	}
	if c.ExpectedWaitDays > 0 {
		box.Wait = strconv.Itoa(c.ExpectedWaitDays)
	}
	if !c.Until.IsZero() {
		box.Until = c.Until.UTC().Format(time.DateOnly)
	}
	if form != nil {
		box.Wait, box.Until = form.Get("expected_wait_days"), form.Get("until")
	}
	return box, nil
}

// inboxCapacity is POST /inbox/capacity: one tap sets how full the group is (referral.Service.SetCapacity,
// the same change as PUT /community/v1/capacity; the maximum of open referrals is kept).
func (a *API) inboxCapacity(w http.ResponseWriter, r *http.Request) {
	s, ok := a.inboxFormPost(w, r, "How full is your group?", "inbox")
	if !ok {
		return
	}
	r, d := s.r, s.d
	form := r.PostForm
	fail := func(status int, field, msg string) {
		box, err := a.capacityBox(r, form)
		if err != nil {
			a.inboxFailure(w, r, d, err)
			return
		}
		box.ErrorOn = field
		d.Capacity, d.CapacityOnly, d.Error, d.Field = box, true, msg, field
		switch field {
		case mapping.FieldExpectedWait:
			d.ErrorFor = "wait"
		case mapping.FieldUntil:
			d.ErrorFor = "until"
		}
		a.renderInbox(w, r, status, d)
	}
	req := referral.CapacityRequest{Status: mapping.CapacityStatus(form.Get("status"))}
	if !req.Status.Valid() {
		fail(http.StatusBadRequest, "status", "Press one of the buttons: taking referrals, full, waiting list or pause.")
		return
	}
	if v := strings.TrimSpace(form.Get("expected_wait_days")); v != "" && req.Status == mapping.CapacityWaitlist {
		n, err := strconv.Atoi(v)
		if err != nil {
			fail(http.StatusBadRequest, mapping.FieldExpectedWait, "Write the expected wait as a number of days, like 14, or leave it empty.")
			return
		}
		req.ExpectedWaitDays = n
	}
	if v := strings.TrimSpace(form.Get("until")); v != "" && req.Status == mapping.CapacityPaused {
		req.Until = v
	}
	if _, err := a.svc.SetCapacity(r.Context(), web.Caller(r.Context()), req, "inbox:"+s.client.ID); err != nil {
		status, je := web.JSONError(err)
		web.LogFailure(a.log, r, status, err)
		if status >= http.StatusInternalServerError {
			a.inboxFailure(w, r, d, err)
			return
		}
		msg := je.Message
		switch je.Field {
		case mapping.FieldUntil:
			msg = "Write the date the pause ends as year-month-day, like 2027-01-04, after today; or leave it empty."
		case mapping.FieldExpectedWait:
			msg = "The expected wait must be a number of days from 0 to 366."
		}
		fail(status, je.Field, msg)
		return
	}
	inboxRedirect(w, inboxPath+"?done=capacity")
}
