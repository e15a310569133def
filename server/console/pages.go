package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// overviewBody is the overview page.
type overviewBody struct {
	referral.Overview
	States []outbox.MessageState
	Rows   []destinationRow
}

// destinationRow is one destination of the overview: its messages in each state, linked to the list.
type destinationRow struct {
	Destination mapping.Destination
	Service     bool
	Cells       []cell
	Paused      bool
}

// cell is a count linked to the messages it counts.
type cell struct {
	Count int
	Link  string
}

// destinationFilter is the list filter of one destination.
func destinationFilter(d mapping.Destination) filter {
	if d.Kind == mapping.DestinationService {
		return filter{Service: d.ID}
	}
	return filter{Destination: d.String()}
}

// overview is GET /admin/: the sign-in form, or the system at a glance (reloaded every refreshSecs).
func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	s, ok := c.signedIn(r, "Overview")
	if !ok {
		c.signInPage(w, r, http.StatusOK, "", "")
		return
	}
	ov, err := c.op.Overview(r.Context())
	if err != nil {
		c.failure(w, r, s.page, err)
		return
	}
	body := overviewBody{Overview: ov, States: outbox.AllStates()}
	for _, d := range ov.Destinations {
		row := destinationRow{Destination: d.Destination, Service: d.Destination.Kind == mapping.DestinationService, Paused: d.Pause != nil}
		for _, st := range body.States {
			f := destinationFilter(d.Destination)
			f.State = string(st)
			row.Cells = append(row.Cells, cell{Count: d.Counts[st], Link: f.link()})
		}
		body.Rows = append(body.Rows, row)
	}
	p := s.page
	p.Refresh, p.View, p.Body = refreshSecs, "overview", body
	c.render(w, r, http.StatusOK, p)
}

// filter is the message list's filter, as the form and the links carry it.
type filter struct {
	State, Service, Destination, Type, Age, Referral string
}

// ages are the list's age filter: messages created longer ago than these.
var ages = []struct{ Key, Label string }{{"", "any age"}, {"5m", "older than 5 minutes"}, {"1h", "older than an hour"},
	{"6h", "older than 6 hours"}, {"24h", "older than a day"}, {"72h", "older than 3 days"}}

// values is the filter as query parameters.
func (f filter) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"state": f.State, "service": f.Service, "destination": f.Destination,
		"type": f.Type, "age": f.Age, "referral": f.Referral} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// link is the message list with this filter.
func (f filter) link() string {
	if v := f.values(); len(v) > 0 {
		return "/admin/messages?" + v.Encode()
	}
	return "/admin/messages"
}

// hidden is the filter as the hidden fields of a form.
func (f filter) hidden() map[string]string {
	out := map[string]string{}
	for k, vs := range f.values() {
		out[k] = vs[0]
	}
	return out
}

// describe says in words which messages the filter selects (a bulk replay takes the dead ones).
func (f filter) describe() string {
	var parts []string
	add := func(label, v string) {
		if v != "" {
			parts = append(parts, label+" "+v)
		}
	}
	add("state", f.State)
	add("service", f.Service)
	add("destination", f.Destination)
	add("event", f.Type)
	if f.Age != "" {
		parts = append(parts, "created more than "+f.Age+" ago")
	}
	add("referral", f.Referral)
	if len(parts) == 0 {
		return "every dead message"
	}
	return strings.Join(parts, ", ")
}

// readFilter reads the list filter from q (a URL query or a posted form); the error names the field.
func readFilter(q url.Values, now time.Time) (filter, outbox.MessageQuery, string, error) {
	f := filter{State: q.Get("state"), Service: strings.TrimSpace(q.Get("service")), Destination: q.Get("destination"),
		Type: q.Get("type"), Age: q.Get("age"), Referral: strings.TrimSpace(q.Get("referral"))}
	mq := outbox.MessageQuery{ServiceID: f.Service, ReferralID: f.Referral}
	if f.State != "" {
		st, err := outbox.ParseState(f.State)
		if err != nil {
			return f, mq, "state", fmt.Errorf("choose a state from the list")
		}
		mq.States = []outbox.MessageState{st}
	}
	if f.Type != "" {
		mq.Types = []mapping.EventType{mapping.EventType(f.Type)}
	}
	if f.Destination != "" {
		kind, id, ok := strings.Cut(f.Destination, ":")
		if !ok || id == "" || (kind != string(mapping.DestinationService) && kind != string(mapping.DestinationSubscription)) {
			return f, mq, "destination", fmt.Errorf("a destination is service:ID or subscription:ID")
		}
		mq.Destination = &mapping.Destination{Kind: mapping.DestinationKind(kind), ID: id}
	}
	if f.Age != "" {
		d, err := time.ParseDuration(f.Age)
		if err != nil || d <= 0 {
			return f, mq, "age", fmt.Errorf("choose an age from the list")
		}
		mq.CreatedBefore = now.Add(-d)
	}
	return f, mq, "", nil
}

// messagesBody is the message list page.
type messagesBody struct {
	Filter   filter
	States   []outbox.MessageState
	Types    []mapping.EventType
	Ages     []struct{ Key, Label string }
	Services []mapping.Service
	Messages []row
	Next     string // link to the next page
	Paused   []outbox.Pause
	Watch    bool
	Reason   string // the reason typed, when the page is shown again after a refusal
	// Self is this list (first page); WatchURL the same, reloading; Hidden the filter as form fields.
	Self, WatchURL string
	Hidden         map[string]string
}

// row is one message in a list.
type row struct {
	outbox.Message
	Paused bool
}

// messages is GET /admin/messages: messages filtered by state, service, destination, event type, age and
// referral, oldest first, a page at a time (?after=<seq>), each selectable for a replay or a discard.
func (c *Console) messages(w http.ResponseWriter, r *http.Request) {
	s, ok := c.get(w, r, "Messages", "see the messages")
	if !ok {
		return
	}
	c.renderMessages(w, r, s, r.URL.Query(), http.StatusOK, "", "", "")
}

// renderMessages shows the list for query q, with an error (and the reason typed) when the page comes back
// after a refused action.
func (c *Console) renderMessages(w http.ResponseWriter, r *http.Request, s signedIn, q url.Values, status int, msg, field, reason string) {
	p := s.page
	p.View = "messages"
	f, mq, bad, err := readFilter(q, c.o.Clock())
	body := messagesBody{Filter: f, States: outbox.AllStates(), Types: eventTypes(), Ages: ages,
		Services: c.o.Service.Directory().Services, Watch: q.Get("watch") == "1", Reason: reason,
		Self: f.link(), Hidden: f.hidden()}
	wv := f.values()
	wv.Set("watch", "1")
	body.WatchURL = "/admin/messages?" + wv.Encode()
	if err != nil {
		p.Error, p.Field, p.Body = err.Error(), bad, body
		c.render(w, r, http.StatusBadRequest, p)
		return
	}
	if after := q.Get("after"); after != "" {
		n, err := strconv.ParseInt(after, 10, 64)
		if err != nil || n < 0 {
			p.Error, p.Field, p.Body = "the page link is damaged; start again from the first page", "after", body
			c.render(w, r, http.StatusBadRequest, p)
			return
		}
		mq.AfterSeq = n
	}
	mq.Limit = pageSize + 1
	msgs, err := c.op.List(r.Context(), mq)
	if err != nil {
		c.failure(w, r, p, err)
		return
	}
	pauses, err := c.op.Pauses(r.Context())
	if err != nil {
		c.failure(w, r, p, err)
		return
	}
	body.Paused = pauses
	if len(msgs) > pageSize {
		msgs = msgs[:pageSize]
		v := f.values()
		v.Set("after", strconv.FormatInt(msgs[len(msgs)-1].Seq, 10))
		body.Next = "/admin/messages?" + v.Encode()
	}
	for _, m := range msgs {
		body.Messages = append(body.Messages, row{Message: m, Paused: slices.ContainsFunc(pauses, func(p outbox.Pause) bool { return p.Destination == m.Destination })})
	}
	if body.Watch {
		p.Refresh = refreshSecs
	}
	p.Body, p.Error, p.Field = body, msg, field
	c.render(w, r, status, p)
}

// eventTypes are the event types the list filters on.
func eventTypes() []mapping.EventType {
	return []mapping.EventType{mapping.EventReferralCreated, mapping.EventReferralUpdated, mapping.EventReferralCancelled,
		mapping.EventReferralReminder, mapping.EventReferralEscalated, mapping.EventNotification}
}

// messageBody is one message's page.
type messageBody struct {
	Detail   outbox.MessageDetail
	Payload  string // pretty JSON, masked unless Revealed
	Revealed bool
	Paused   *outbox.Pause
	Reason   string // as typed, after a refusal
}

// message is GET /admin/messages/{id}: the message with its payload masked.
func (c *Console) message(w http.ResponseWriter, r *http.Request) {
	s, ok := c.get(w, r, "Message", "see this message")
	if !ok {
		return
	}
	d, err := c.op.Show(r.Context(), mux.Vars(r)["id"])
	if err != nil {
		c.failure(w, r, s.page, err)
		return
	}
	c.renderMessage(w, r, s, d, false, http.StatusOK, "", "", "")
}

// reveal is POST /admin/messages/{id}/reveal: the same page with the patient's details shown, written to the
// audit log (referral.Operator.Reveal) with the engineer and the message.
func (c *Console) reveal(w http.ResponseWriter, r *http.Request) {
	s, ok := c.post(w, r, "Message")
	if !ok {
		return
	}
	d, err := c.op.Reveal(r.Context(), mux.Vars(r)["id"], s.actor, web.RequestID(r.Context()))
	if err != nil {
		c.failure(w, r, s.page, err)
		return
	}
	c.renderMessage(w, r, s, d, true, http.StatusOK, "", "", "")
}

func (c *Console) renderMessage(w http.ResponseWriter, r *http.Request, s signedIn, d outbox.MessageDetail, revealed bool, status int, msg, field, reason string) {
	p := s.page
	p.Title, p.View = "Message "+d.Message.ID, "message"
	payload := d.Message.Payload
	if !revealed {
		payload = referral.MaskPayload(payload)
	}
	body := messageBody{Detail: d, Payload: prettyJSON(payload), Revealed: revealed, Reason: reason}
	pauses, err := c.op.Pauses(r.Context())
	if err != nil {
		c.failure(w, r, p, err)
		return
	}
	for i := range pauses {
		if pauses[i].Destination == d.Message.Destination {
			body.Paused = &pauses[i]
		}
	}
	p.Body, p.Error, p.Field = body, msg, field
	c.render(w, r, status, p)
}

// prettyJSON indents a JSON payload for reading (as it is when it is not JSON).
func prettyJSON(b []byte) string {
	var out strings.Builder
	var v any
	if json.Unmarshal(b, &v) != nil {
		return string(b)
	}
	enc := json.NewEncoder(&out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return string(b)
	}
	return out.String()
}

// serviceBody is a community service's page.
type serviceBody struct {
	Service mapping.Service
	Known   bool
	Counts  map[outbox.MessageState]int
	States  []outbox.MessageState
	Pause   *outbox.Pause
	Reason  string
}

// service is GET /admin/services/{id}: one community service's messages by state and its pause.
func (c *Console) service(w http.ResponseWriter, r *http.Request) {
	s, ok := c.get(w, r, "Service", "see this service")
	if !ok {
		return
	}
	c.renderService(w, r, s, mux.Vars(r)["id"], http.StatusOK, "", "", "")
}

func (c *Console) renderService(w http.ResponseWriter, r *http.Request, s signedIn, id string, status int, msg, field, reason string) {
	p := s.page
	ov, err := c.op.Overview(r.Context())
	if err != nil {
		c.failure(w, r, p, err)
		return
	}
	svc, known := c.o.Service.Directory().Service(id)
	if !known {
		svc = mapping.Service{ID: id, Name: id}
	}
	body := serviceBody{Service: svc, Known: known, Counts: map[outbox.MessageState]int{}, States: outbox.AllStates(), Reason: reason}
	dest := mapping.Destination{Kind: mapping.DestinationService, ID: id}
	found := known
	for _, d := range ov.Destinations {
		if d.Destination == dest {
			body.Counts, body.Pause, found = d.Counts, d.Pause, true
		}
	}
	if !found {
		c.failure(w, r, p, fmt.Errorf("service %q: %w", id, outbox.ErrNotFound))
		return
	}
	p.Title, p.View, p.Body, p.Error, p.Field = svc.Name, "service", body, msg, field
	c.render(w, r, status, p)
}

// referralBody is a referral's timeline page.
type referralBody struct {
	Referral outbox.Referral
	Timeline []outbox.TimelineEntry
	Messages []outbox.Message
}

// referral is GET /admin/referrals/{id}: the referral (by referral, Task or ServiceRequest id), every version
// with the messages it wrote or withdrew, and its messages with their states. No patient details.
func (c *Console) referral(w http.ResponseWriter, r *http.Request) {
	s, ok := c.get(w, r, "Referral", "see this referral")
	if !ok {
		return
	}
	found, err := c.op.FindReferrals(r.Context(), mux.Vars(r)["id"])
	if err == nil && len(found) == 0 {
		err = fmt.Errorf("referral: %w", outbox.ErrNotFound)
	}
	if err != nil {
		c.failure(w, r, s.page, err)
		return
	}
	ref := found[0]
	tl, err := c.op.Timeline(r.Context(), ref.Record.ID)
	if err != nil {
		c.failure(w, r, s.page, err)
		return
	}
	msgs, err := c.op.List(r.Context(), outbox.MessageQuery{ReferralID: ref.Record.ID, Limit: 1000})
	if err != nil {
		c.failure(w, r, s.page, err)
		return
	}
	p := s.page
	p.Title, p.View, p.Body = "Referral "+ref.Record.ID, "referral", referralBody{Referral: ref, Timeline: tl, Messages: msgs}
	c.render(w, r, http.StatusOK, p)
}

// findBody is the search page.
type findBody struct {
	Query     string
	Referrals []outbox.Referral
	Searched  bool
}

// find is GET /admin/find?q=: referrals by id, the GP's ServiceRequest.identifier or an NHS number.
func (c *Console) find(w http.ResponseWriter, r *http.Request) {
	s, ok := c.get(w, r, "Find a referral", "find referrals")
	if !ok {
		return
	}
	p := s.page
	p.View = "find"
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	body := findBody{Query: q}
	if q == "" {
		p.Body = body
		c.render(w, r, http.StatusOK, p)
		return
	}
	refs, err := c.op.FindReferrals(r.Context(), q)
	if err != nil {
		c.failure(w, r, p, err)
		return
	}
	if len(refs) == 1 {
		redirect(w, "/admin/referrals/"+url.PathEscape(refs[0].Record.ID))
		return
	}
	body.Referrals, body.Searched = refs, true
	p.Body = body
	c.render(w, r, http.StatusOK, p)
}

// flashText is the confirmation named by ?done= (and ?n=) after a change.
func flashText(r *http.Request) string {
	q := r.URL.Query()
	n := q.Get("n")
	switch q.Get("done") {
	case "replayed":
		return "Replayed " + n + " message(s): they are pending again, with your name and reason recorded."
	case "discarded":
		return "Discarded " + n + " message(s): they will never be sent."
	case "paused":
		return "Paused: nothing is sent to this service until you resume it. Its messages keep their retry budget."
	case "already-paused":
		return "This service was already paused: nothing changed."
	case "resumed":
		return "Resumed: " + n + " waiting message(s) are due now and will be delivered in order."
	}
	return ""
}
