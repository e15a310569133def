package referral

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// Auditor records audited accesses (outbox.AuditLog).
type Auditor interface {
	Record(ctx context.Context, recs ...outbox.AuditRecord) error
}

// Routes an access can come through (AuditRecord.Via).
const (
	ViaFHIR      = "fhir"
	ViaCommunity = "community-api"
	ViaInbox     = "inbox"
	ViaAdmin     = "admin-api"
	ViaConsole   = "console"
	ViaCLI       = "cli"
	ViaWebhook   = "webhook"
	ViaSweeper   = "sweeper" // socialrx's own changes: the response-deadline ladder
)

// RoleOperator is the audit role of an engineer at the CLI; RoleSystem that of socialrx itself (the
// dispatcher's deliveries).
const (
	RoleOperator = "operator"
	RoleSystem   = "system"
)

// Origin is where a request comes from, as the audit trail records it: the server's request id, the
// client's X-Request-ID beside it, the client's address and the route; and, for the engineers' routes
// (console, CLI), who the actor is beyond the client (Actor, e.g. "console:ops/alice", "cli:alice").
type Origin struct {
	RequestID       string
	ClientRequestID string
	Address         string
	Via             string
	Actor           string
	ActorRole       string
}

type originKey struct{}

// WithOrigin returns ctx carrying o. The server puts one in every request's context; the CLI one per run.
// The pointer is shared: SetActor fills the actor in once it is known.
func WithOrigin(ctx context.Context, o *Origin) context.Context {
	return context.WithValue(ctx, originKey{}, o)
}

// OriginOf is the request's origin (the zero Origin when none was set).
func OriginOf(ctx context.Context) Origin {
	if o, ok := ctx.Value(originKey{}).(*Origin); ok && o != nil {
		return *o
	}
	return Origin{}
}

// SetActor names the actor of the request in ctx's origin (an engineer behind a console session).
func SetActor(ctx context.Context, actor, role string) {
	if o, ok := ctx.Value(originKey{}).(*Origin); ok && o != nil {
		o.Actor, o.ActorRole = actor, role
	}
}

// errNotAudited: an access to patient data could not be recorded in the audit trail, so it is refused.
var errNotAudited = fault.Sentinel(fault.Unavailable, "the access could not be audited")

// eventActor is who the events of a change by c name (the origin's actor for an engineer).
func eventActor(ctx context.Context, c Caller) *mapping.EventActor {
	r := auditBase(ctx, c, func() outbox.AuditRecord { return outbox.AuditRecord{} })
	if r.ActorID == "" {
		return nil
	}
	return &mapping.EventActor{ID: r.ActorID, Role: r.ActorRole}
}

// resourceOf is the audit resource type of an id kind.
func resourceOf(k IDKind) string {
	switch k {
	case ByTaskID:
		return "Task"
	case ByServiceRequestID:
		return "ServiceRequest"
	case ByRecordID:
		return "Referral"
	}
	return "Referral"
}

// auditBase is the record of an access by c (or, without a client, by the origin's actor) with ctx's origin.
func auditBase(ctx context.Context, c Caller, now func() outbox.AuditRecord) outbox.AuditRecord {
	o := OriginOf(ctx)
	r := now()
	r.RequestID, r.ClientRequestID, r.Address, r.Via = o.RequestID, o.ClientRequestID, o.Address, o.Via
	if r.RequestID == "" {
		r.RequestID = c.RequestID
	}
	r.ActorID, r.ActorRole = c.Client.ID, string(c.Client.Role)
	if o.Actor != "" {
		r.ActorID, r.ActorRole = o.Actor, o.ActorRole
	}
	if r.Via == "" {
		r.Via = "internal"
	}
	return r
}

// audit records that c did action on the referrals refs (one record each, the resource named by kind). A
// read that cannot be recorded fails (fault.Unavailable: patient data is not shown unaudited); a change
// that cannot be recorded is already committed, so it is logged and the change's answer stands.
func (s *Service) audit(ctx context.Context, c Caller, action outbox.AuditAction, kind IDKind, refs ...outbox.Referral) error {
	if s.auditor == nil || len(refs) == 0 {
		return nil
	}
	recs := make([]outbox.AuditRecord, 0, len(refs))
	for _, ref := range refs {
		recs = append(recs, s.auditRecord(ctx, c, action, resourceOf(kind), idOf(ref, kind), ref))
	}
	return s.record(ctx, action, recs)
}

// auditResource records that c did action on typ/id, a resource of the referral ref other than its Task,
// ServiceRequest or record (an Observation of one of its measures), as audit does.
func (s *Service) auditResource(ctx context.Context, c Caller, action outbox.AuditAction, typ, id string, ref outbox.Referral) error {
	if s.auditor == nil {
		return nil
	}
	return s.record(ctx, action, []outbox.AuditRecord{s.auditRecord(ctx, c, action, typ, id, ref)})
}

// auditRecord is the record of c doing action on typ/id of the referral ref, now, with ctx's origin.
func (s *Service) auditRecord(ctx context.Context, c Caller, action outbox.AuditAction, typ, id string, ref outbox.Referral) outbox.AuditRecord {
	r := auditBase(ctx, c, func() outbox.AuditRecord { return outbox.AuditRecord{At: s.Now()} })
	r.Action, r.ResourceType, r.ResourceID = action, typ, id
	r.ReferralID, r.PracticeODS, r.ServiceID = ref.Record.ID, ref.PracticeODS, ref.Record.Service.ID
	return r
}

func (s *Service) record(ctx context.Context, action outbox.AuditAction, recs []outbox.AuditRecord) error {
	err := s.auditor.Record(ctx, recs...)
	if err == nil {
		return nil
	}
	if action == outbox.AuditRead {
		return fmt.Errorf("referral: %w (%v)", errNotAudited, err)
	}
	s.log.Error("a change could not be audited", "request_id", recs[0].RequestID, "referral_id", recs[0].ReferralID,
		"action", string(action), "err", err)
	return nil
}

// AuditQuery is an admin's or a GP client's query of the audit trail.
type AuditQuery = outbox.AuditQuery

// Audit returns the audit records q selects that the caller may see: an admin every record, a GP client
// only the records of its practices' referrals (q.Practices is narrowed to them), anyone else nothing
// (fault.Forbidden).
func (s *Service) Audit(ctx context.Context, c Caller, q AuditQuery) ([]outbox.AuditRecord, error) {
	switch c.Client.Role {
	case config.RoleAdmin:
	case config.RoleGP:
		var mine []string
		for _, p := range q.Practices {
			if c.Client.MayReferFrom(p) {
				mine = append(mine, p)
			}
		}
		if q.Practices == nil {
			mine = append([]string(nil), c.Client.Practices...)
		}
		q.Practices = mine
		if q.Practices == nil {
			q.Practices = []string{}
		}
	case config.RoleCommunity:
		return nil, fault.New(fault.Forbidden, "forbidden", "", "the audit trail is for admin and GP clients")
	}
	return s.store.ListAudit(ctx, q)
}

// auditMessages records action by ctx's actor on the referrals of msgs (once per message with a referral).
func (o Operator) auditMessages(ctx context.Context, action outbox.AuditAction, msgs ...outbox.Message) error {
	if o.Audit == nil {
		return nil
	}
	var recs []outbox.AuditRecord
	for _, m := range msgs {
		if m.ReferralID == "" {
			continue
		}
		r := o.auditRecord(ctx, action, "Message", m.ID)
		r.ReferralID = m.ReferralID
		if m.Destination.Kind == "service" {
			r.ServiceID = m.Destination.ID
		}
		recs = append(recs, r)
	}
	return o.recordAudit(ctx, action, recs)
}

// auditReferrals records action by ctx's actor on refs (resource Referral).
func (o Operator) auditReferrals(ctx context.Context, action outbox.AuditAction, refs ...outbox.Referral) error {
	if o.Audit == nil {
		return nil
	}
	var recs []outbox.AuditRecord
	for _, ref := range refs {
		r := o.auditRecord(ctx, action, "Referral", ref.Record.ID)
		r.ReferralID, r.PracticeODS, r.ServiceID = ref.Record.ID, ref.PracticeODS, ref.Record.Service.ID
		recs = append(recs, r)
	}
	return o.recordAudit(ctx, action, recs)
}

func (o Operator) auditRecord(ctx context.Context, action outbox.AuditAction, typ, id string) outbox.AuditRecord {
	r := auditBase(ctx, Caller{}, func() outbox.AuditRecord { return outbox.AuditRecord{At: o.now()} })
	if r.ActorID == "" {
		r.ActorID, r.ActorRole = "unidentified", RoleOperator
	}
	r.Action, r.ResourceType, r.ResourceID = action, typ, id
	return r
}

func (o Operator) recordAudit(ctx context.Context, action outbox.AuditAction, recs []outbox.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	// The practice of a message's referral, for the GP's view of the trail.
	for i := range recs {
		if recs[i].PracticeODS == "" && recs[i].ReferralID != "" {
			if ref, err := o.Store.GetReferral(ctx, recs[i].ReferralID); err == nil {
				recs[i].PracticeODS, recs[i].ServiceID = ref.PracticeODS, ref.Record.Service.ID
			}
		}
	}
	err := o.Audit.Record(ctx, recs...)
	if err == nil {
		return nil
	}
	if action == outbox.AuditRead {
		return fmt.Errorf("referral: %w (%v)", errNotAudited, err)
	}
	o.logger().Error("a change could not be audited", "request_id", recs[0].RequestID, "action", string(action), "err", err)
	return nil
}

func (o Operator) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// CLIOrigin is the origin of a CLI run by actor ("cli:<name>"; "" when the command needs none).
func CLIOrigin(actor string) *Origin {
	if actor == "" {
		actor = "cli:unidentified"
	}
	if !strings.HasPrefix(actor, "cli:") {
		actor = "cli:" + actor
	}
	return &Origin{RequestID: NewUUIDv7(), Via: ViaCLI, Actor: actor, ActorRole: RoleOperator}
}

// AuditTrail returns the audit records q selects (every record: the engineers' view), ordered by Seq.
func (o Operator) AuditTrail(ctx context.Context, q outbox.AuditQuery) ([]outbox.AuditRecord, error) {
	return o.Store.ListAudit(ctx, q)
}

// VerifyAudit checks every chain of the audit trail (outbox.VerifyAudit), reporting progress when set.
func (o Operator) VerifyAudit(ctx context.Context) (outbox.AuditReport, error) {
	var progress func(int64)
	if o.Progress != nil {
		progress = func(n int64) { o.Progress(int(n), int(n)) }
	}
	return outbox.VerifyAudit(ctx, o.Store, progress)
}

// AuditView is the JSON form of an audit record (admin API, CLI).
type AuditView struct {
	Seq             int64     `json:"seq"`
	At              time.Time `json:"at"`
	Actor           string    `json:"actor"`
	Role            string    `json:"role"`
	Via             string    `json:"via"`
	Action          string    `json:"action"`
	Resource        string    `json:"resource"`
	ReferralID      string    `json:"referral_id,omitempty"`
	Practice        string    `json:"practice,omitempty"`
	Service         string    `json:"service,omitempty"`
	Address         string    `json:"address,omitempty"`
	RequestID       string    `json:"request_id"`
	ClientRequestID string    `json:"client_request_id,omitempty"`
	Chain           string    `json:"chain"`
	ChainSeq        int64     `json:"chain_seq"`
	Hash            string    `json:"hash"`
}

// AuditViews renders audit records as AuditViews.
func AuditViews(recs []outbox.AuditRecord) []AuditView {
	out := make([]AuditView, 0, len(recs))
	for _, r := range recs {
		out = append(out, AuditView{Seq: r.Seq, At: r.At, Actor: r.ActorID, Role: r.ActorRole, Via: r.Via,
			Action: string(r.Action), Resource: r.ResourceType + "/" + r.ResourceID, ReferralID: r.ReferralID,
			Practice: r.PracticeODS, Service: r.ServiceID, Address: r.Address, RequestID: r.RequestID,
			ClientRequestID: r.ClientRequestID, Chain: r.Chain, ChainSeq: r.ChainSeq, Hash: r.Hash})
	}
	return out
}

// AuditEntry is an audit record with what a FHIR AuditEvent names of its referral: the ServiceRequest (the
// referral as the GP knows it) and the patient reference.
type AuditEntry struct {
	outbox.AuditRecord
	ServiceRequestID string
	Patient          string
}

// AuditEntries answers a practice's "who saw this referral": the audit records q selects of the referrals
// the caller may see (a GP client its practices', an admin every one; others fault.Forbidden), narrowed to
// the referral whose ServiceRequest or Task id is entityID when set (a referral the caller may not see: no
// records, as if it did not exist). Reading the trail is not itself recorded.
func (s *Service) AuditEntries(ctx context.Context, c Caller, entityKind IDKind, entityID string, q outbox.AuditQuery) ([]AuditEntry, error) {
	if entityID != "" {
		ref, err := s.store.GetReferral(ctx, entityID)
		switch {
		case errors.Is(err, outbox.ErrNotFound):
			return nil, nil
		case err != nil:
			return nil, err
		}
		if !Visible(c.Client, ref) || idOf(ref, entityKind) != entityID {
			return nil, nil
		}
		q.ReferralID = ref.Record.ID
	}
	recs, err := s.Audit(ctx, c, q)
	if err != nil {
		return nil, err
	}
	refs := map[string]outbox.Referral{}
	out := make([]AuditEntry, 0, len(recs))
	for _, r := range recs {
		e := AuditEntry{AuditRecord: r}
		if r.ReferralID != "" {
			ref, ok := refs[r.ReferralID]
			if !ok {
				if ref, err = s.store.GetReferral(ctx, r.ReferralID); err != nil && !errors.Is(err, outbox.ErrNotFound) {
					return nil, err
				}
				refs[r.ReferralID] = ref
			}
			e.ServiceRequestID, e.Patient = ref.Record.ServiceRequestID, ref.Patient.Reference
		}
		out = append(out, e)
	}
	return out, nil
}
