package mapping

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/socialrx/socialrx/fault"
)

// LinkRef names a referral linked to another by onward referral (docs/design.md#link-worker-onward-referral):
// the link worker's referral (Referral.Parent) or one of the groups it was forwarded to (Referral.Children).
type LinkRef struct {
	ReferralID string `json:"referral_id"`
	TaskID     string `json:"task_id"`
	ServiceID  string `json:"service_id,omitempty"`
}

// ChoseAnotherGroup is the status reason of a forwarded referral cancelled because the person chose another
// group (another child of the same link-worker referral was accepted first).
const ChoseAnotherGroup = "the person chose another group"

// Rule codes of a forward.
const (
	CodeForwardNotLinkWorker fault.Code = "forward_not_link_worker"
	CodeForwardClosed        fault.Code = "forward_closed"
	CodeForwardService       fault.Code = "forward_service"
	CodeForwardFull          fault.Code = "capacity_full"
	CodeForwardNeeds         fault.Code = "needs_unmet"
	CodeForwardNote          fault.Code = "invalid_note"
)

// FieldServices names the services of a forward request.
const FieldServices = "services"

// MaxForward bounds how many groups one forward suggests.
const MaxForward = 10

// ForwardInput is what a forward needs beyond the link worker's referral: the directory, each service's
// capacity, the services chosen (directory ids, in the order given), the link worker's note (may be empty),
// its author, now and the id generator.
type ForwardInput struct {
	Directory  Directory
	Capacities map[string]Capacity
	Services   []string
	Note       string
	NoteAuthor string
	Now        time.Time
	NewID      func() string
}

// CheckForward reports every reason the link worker's referral cur cannot be forwarded to in.Services, as one
// fault error: the referral is not the link worker's (forbidden), it is closed or its person withdrew consent
// (conflict), a service is unknown, repeated, the link worker itself or already suggested (invalid), has no
// room (conflict capacity_full, naming the service) or cannot meet the person's support needs (rule
// needs_unmet). nil when it can.
func CheckForward(cur Referral, in ForwardInput) error {
	lw, ok := in.Directory.LinkWorker()
	if !ok || lw.ID != cur.Record.Service.ID {
		return fault.New(fault.Forbidden, CodeForwardNotLinkWorker, "", "only the link-worker service may forward a referral")
	}
	if cur.Record.Status.Terminal() || cur.Record.ConsentWithdrawn || cur.Parent != nil {
		return fault.New(fault.Conflict, CodeForwardClosed, "", "this referral is closed (or itself forwarded): it cannot be forwarded")
	}
	if len(in.Services) == 0 || len(in.Services) > MaxForward {
		return fault.New(fault.Invalid, CodeForwardService, FieldServices, fmt.Sprintf("choose from 1 to %d services", MaxForward))
	}
	if why := CheckNoteText(in.Note); in.Note != "" && why != "" {
		return fault.New(fault.Invalid, CodeForwardNote, FieldNote, why)
	}
	var is []fault.Issue
	kind := fault.Invalid
	for i, id := range in.Services {
		svc, known := in.Directory.Service(id)
		issue, k := forwardIssue(cur, in, i, svc, known)
		if issue == "" {
			continue
		}
		is = append(is, fault.Issue{Code: k.code, Field: FieldServices + "[" + strconv.Itoa(i) + "]", Message: issue})
		kind = worse(kind, k.kind)
	}
	if len(is) > 0 {
		return &fault.Error{Kind: kind, Issues: is}
	}
	return nil
}

// issueKind is a forward issue's code and kind.
type issueKind struct {
	code fault.Code
	kind fault.Kind
}

// forwardIssue is what is wrong with the i-th chosen service svc ("" when nothing).
func forwardIssue(cur Referral, in ForwardInput, i int, svc Service, known bool) (string, issueKind) {
	id := in.Services[i]
	bad := issueKind{CodeForwardService, fault.Invalid}
	switch {
	case !known:
		return fmt.Sprintf("%q is not a service in the directory", id), bad
	case id == cur.Record.Service.ID:
		return "a referral cannot be forwarded to the link-worker service itself", bad
	case slices.Index(in.Services, id) != i:
		return fmt.Sprintf("%s is chosen twice", svc.Name), bad
	case slices.ContainsFunc(cur.Children, func(c LinkRef) bool { return c.ServiceID == id }):
		return fmt.Sprintf("%s was already suggested for this referral", svc.Name), issueKind{CodeForwardService, fault.Conflict}
	}
	if c, ok := in.Capacities[id]; ok && !c.Effective(in.Now).TakesReferrals() {
		return fmt.Sprintf("%s has no room now (%s)", svc.Name, c.Note(in.Now)), issueKind{CodeForwardFull, fault.Conflict}
	}
	if !svc.Meets(cur.Record.SupportNeeds) {
		return fmt.Sprintf("%s cannot meet the person's support needs (%s)", svc.Name, needNames(cur.Record.SupportNeeds)),
			issueKind{CodeForwardNeeds, fault.Rule}
	}
	return "", issueKind{}
}

// worse is the kind a forward refusal answers with: conflict (409) over rule (422) over invalid (400).
func worse(a, b fault.Kind) fault.Kind {
	rank := func(k fault.Kind) int {
		return map[fault.Kind]int{fault.Conflict: 3, fault.Rule: 2}[k]
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// Forward decides a link worker's onward referral (CheckForward first): one new linked referral per chosen
// service, each a copy of cur's record (the whole stored record: each group's sharing profile cuts it when
// sent and shown) routed to that group only, requested, its Task partOf cur's Task with the same
// ServiceRequest as focus, carrying the link worker's note, and a referral.created to the group when it has
// a webhook (cut by its sharing profile); and cur with the children linked (its Task's output references
// them) and a note saying where the person was suggested. Children have no identifiers of their own:
// they are found by their parent (Task?part-of).
func Forward(cur Referral, in ForwardInput) (parent Referral, children []Intake, err error) {
	if err := CheckForward(cur, in); err != nil {
		return cur, nil, err
	}
	if in.NewID == nil {
		return cur, nil, fmt.Errorf("%w: no id generator for a forward", ErrBadInput)
	}
	now := in.Now.UTC().Truncate(time.Microsecond)
	link := LinkRef{ReferralID: cur.Record.ID, TaskID: cur.Record.TaskID, ServiceID: cur.Record.Service.ID}
	parent = cur
	parent.Children = slices.Clone(cur.Children)
	var names []string
	for _, id := range in.Services {
		svc, _ := in.Directory.Service(id)
		child, err := forwardChild(cur, svc, link, in, now)
		if err != nil {
			return cur, nil, err
		}
		children = append(children, child)
		parent.Children = append(parent.Children, LinkRef{ReferralID: child.Referral.Record.ID, TaskID: child.Referral.Record.TaskID, ServiceID: id})
		names = append(names, svc.Name)
	}
	parent = AppendTaskNotes(parent, in.NoteAuthor, now, "Suggested to "+strings.Join(names, ", ")+"; the person chooses.")
	return parent, children, nil
}

// forwardChild is the linked referral of cur to svc.
func forwardChild(cur Referral, svc Service, parent LinkRef, in ForwardInput, now time.Time) (Intake, error) {
	rec := cur.Record
	rec.ID, rec.TaskID = in.NewID(), in.NewID()
	rec.Status, rec.Version, rec.CreatedAt, rec.UpdatedAt = StatusRequested, 1, now, now
	rec.Service = ServiceRef{ID: svc.ID, Name: svc.Name}
	rec.StatusReason, rec.Outcome, rec.Measures, rec.Route, rec.DeadlineStep = "", nil, nil, nil, DeadlineNone
	ref := Referral{Record: rec, PracticeODS: cur.PracticeODS, BusinessStatus: BusinessAwaitingPickup, Patient: cur.Patient,
		Requester: cur.Requester, Owner: ownerRef(svc), ServiceRequestStatus: cur.ServiceRequestStatus, Parent: &parent}
	if in.Note != "" {
		ref = AppendTaskNotes(ref, in.NoteAuthor, now, in.Note)
	}
	intake := Intake{Referral: ref, Fingerprint: "forward:" + rec.ID}
	if svc.Delivery.URL != "" {
		ref.BusinessStatus = BusinessQueued
		intake.Referral = ref
		p, err := WebhookPayload(EventReferralCreated, svc.Sharing.Apply(rec), now)
		if err != nil {
			return Intake{}, err
		}
		intake.Events = []Event{{ID: in.NewID(), Type: EventReferralCreated, Payload: p,
			Destination: Destination{Kind: DestinationService, ID: svc.ID}}}
	}
	return intake, nil
}

// SiblingCancel decides what a forwarded referral cur does when its sibling chosen was accepted first: a
// sibling still open is cancelled with reason ChoseAnotherGroup (a move socialrx makes itself), its service
// told with a referral.cancelled when it has a webhook; a closed one is left as it is (ErrNoChange).
func SiblingCancel(cur Referral, chosen string, hasWebhook bool, now time.Time, newID func() string) (Referral, []Event, error) {
	if cur.Record.Status.Terminal() || cur.Record.ID == chosen || cur.Parent == nil {
		return cur, nil, ErrNoChange
	}
	next := cur
	next.Record.Status = StatusCancelled
	next.Record.StatusReason = ChoseAnotherGroup
	if !hasWebhook {
		return next, nil, nil
	}
	snap := next.Record
	snap.Version = cur.Record.Version + 1
	snap.UpdatedAt = now.UTC()
	p, err := WebhookPayload(EventReferralCancelled, IdentifiersOnly(snap), now)
	if err != nil {
		return cur, nil, err
	}
	return next, []Event{{ID: newID(), Type: EventReferralCancelled, Payload: p,
		Destination: Destination{Kind: DestinationService, ID: cur.Record.Service.ID}}}, nil
}
