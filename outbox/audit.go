package outbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/socialrx/socialrx/fault"
)

// The audit trail (docs/design.md#audit-trail): one record for every read and change of patient data, through
// any route, appended to hash chains. Each writer (a serve process, a CLI run) appends to its own chain, so
// auditing never serialises the requests of several instances (nor of one instance: an AuditLog batches the
// records of concurrent requests into one append). A chain is tamper-evident: every record carries the hash of
// the record before it in its chain and its own hash over its content, and the chain's head (its last number
// and hash) is kept beside it, so VerifyAudit finds a record changed, deleted, inserted or reordered.

// AuditAction is what an audited access did. The zero value is invalid.
type AuditAction string

// Audit actions.
const (
	// AuditRead: patient data was read (a read, a search hit, a version, a message's payload).
	AuditRead AuditAction = "read"
	// AuditCreate: a referral was created.
	AuditCreate AuditAction = "create"
	// AuditUpdate: a referral or one of its messages was changed (status, note, cancellation, replay, discard).
	AuditUpdate AuditAction = "update"
	// AuditSend: a message about a referral was delivered: a webhook to a community service, or a
	// Subscription notification to a GP system.
	AuditSend AuditAction = "send"
)

// AllAuditActions lists every audit action.
func AllAuditActions() []AuditAction {
	return []AuditAction{AuditRead, AuditCreate, AuditUpdate, AuditSend}
}

// Valid reports whether a is an audit action.
func (a AuditAction) Valid() bool {
	switch a {
	case AuditRead, AuditCreate, AuditUpdate, AuditSend:
		return true
	}
	return false
}

// AuditRecord is one audited access. It holds identifiers only, never patient data.
type AuditRecord struct {
	// Seq is the store's number of the record (paging in ListAudit); set by the store.
	Seq int64
	// Chain names the chain the record belongs to (each written by one writer at a time: each process's
	// AuditLog, each of its dispatchers for the deliveries it records, and the chains it lends to the creates
	// in flight, AuditLog.Lend); ChainSeq numbers it in its chain from 1 without gaps. Set by AuditLog, or by
	// the store for a Disclosure.
	Chain    string
	ChainSeq int64
	// At is when the access happened (the caller's clock, whole microseconds).
	At time.Time
	// RequestID is the server's id of the request (or of the CLI run, or of the delivery attempt);
	// ClientRequestID is the X-Request-ID the client sent, if any, kept beside it.
	RequestID       string
	ClientRequestID string
	// ActorID is who: a directory client id, "console:<client>/<name>" or "cli:<name>" for an engineer,
	// "socialrx" for the dispatcher's deliveries; ActorRole is the client's role (gp, community, admin),
	// "operator" for the CLI, "system" for the dispatcher.
	ActorID   string
	ActorRole string
	// Via is the route: fhir, community-api, inbox, admin-api, console, cli, webhook (a community service's),
	// subscription (a GP system's Subscription notification).
	Via string
	// Action is what was done, on ResourceType/ResourceID (e.g. ServiceRequest, Task, Referral, Message).
	Action       AuditAction
	ResourceType string
	ResourceID   string
	// ReferralID is the referral whose patient data it was; PracticeODS its referring practice (the scope of
	// the GP's AuditEvent search) and ServiceID the community service it is routed to.
	ReferralID  string
	PracticeODS string
	ServiceID   string
	// Address is the client's address (as the rate limits see it; empty for the CLI and the dispatcher).
	Address string
	// PrevHash is the Hash of the record before it in its chain (AuditGenesis for the first); Hash is
	// AuditHash of this record.
	PrevHash string
	Hash     string
}

// AuditGenesis is the PrevHash of a chain's first record.
const AuditGenesis = "0000000000000000000000000000000000000000000000000000000000000000"

// auditContent is what a record's hash covers, in a fixed order: every field but Seq and Hash.
type auditContent struct {
	Chain           string `json:"chain"`
	ChainSeq        int64  `json:"chain_seq"`
	At              int64  `json:"at"`
	RequestID       string `json:"request_id"`
	ClientRequestID string `json:"client_request_id"`
	ActorID         string `json:"actor_id"`
	ActorRole       string `json:"actor_role"`
	Via             string `json:"via"`
	Action          string `json:"action"`
	ResourceType    string `json:"resource_type"`
	ResourceID      string `json:"resource_id"`
	ReferralID      string `json:"referral_id"`
	PracticeODS     string `json:"practice_ods"`
	ServiceID       string `json:"service_id"`
	Address         string `json:"address"`
	PrevHash        string `json:"prev_hash"`
}

// AuditHash is the hex SHA-256 of r's content (every field but Seq and Hash, At in unix microseconds, as
// JSON in a fixed order). A record's hash covers its chain, its number and the previous record's hash, so a
// record moved, changed or put in the place of another no longer matches.
func AuditHash(r AuditRecord) string {
	b, err := json.Marshal(auditContent{Chain: r.Chain, ChainSeq: r.ChainSeq, At: r.At.UnixMicro(),
		RequestID: r.RequestID, ClientRequestID: r.ClientRequestID, ActorID: r.ActorID, ActorRole: r.ActorRole,
		Via: r.Via, Action: string(r.Action), ResourceType: r.ResourceType, ResourceID: r.ResourceID,
		ReferralID: r.ReferralID, PracticeODS: r.PracticeODS, ServiceID: r.ServiceID, Address: r.Address,
		PrevHash: r.PrevHash})
	if err != nil { // strings and integers always marshal
		panic(fmt.Sprintf("outbox: audit hash: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Validate says what a record to append lacks: an action, an actor, a time and a route are required.
func (r AuditRecord) Validate() error {
	if !r.Action.Valid() || r.ActorID == "" || r.At.IsZero() || r.Via == "" {
		return fmt.Errorf("outbox: audit record: action, actor, time and route are required (%q by %q via %q)",
			r.Action, r.ActorID, r.Via)
	}
	return nil
}

// ChainAudit numbers recs, in place, after a chain's head (its last number seq and hash prev) and hashes
// each after the one before; their times are made UTC and whole microseconds, as the store keeps them.
func ChainAudit(recs []AuditRecord, seq int64, prev string) {
	for i := range recs {
		r := &recs[i]
		seq++
		r.Seq, r.ChainSeq, r.PrevHash = 0, seq, prev
		r.At = r.At.UTC().Truncate(time.Microsecond)
		r.Hash = AuditHash(*r)
		prev = r.Hash
	}
}

// AuditChain is one chain's head: its last record's number and hash (0 and AuditGenesis while empty).
type AuditChain struct {
	Chain     string
	Instance  string // the process that writes it (e.g. "serve", "cli")
	StartedAt time.Time
	HeadSeq   int64
	HeadHash  string
	// Headless: records of this chain exist but the chain has no head row (AuditChains reports such chains
	// so that VerifyAudit can say so).
	Headless bool
}

// AuditQuery selects audit records for the admin API, the CLI and the FHIR AuditEvent search. Zero fields
// do not filter. Ordered by Seq.
type AuditQuery struct {
	ReferralID string
	ActorID    string
	// Practices: only records of referrals from these practices (nil: all; a non-nil empty list: none).
	Practices []string
	Since     time.Time // at or after
	Until     time.Time // before
	AfterSeq  int64     // paging
	Limit     int       // 0: backend default (100); at most 1000
}

// ErrAuditHead: an append does not follow its chain's head in the store (another writer used the chain, or
// an earlier append's outcome was unknown); the AuditLog reloads the head.
var ErrAuditHead = fault.Sentinel(fault.Conflict, "audit chain head moved")

// Audit is the part of Store that keeps the audit trail.
type Audit interface {
	// AppendAudit appends recs, which are all of one chain, numbered on from its head and hashed (AuditHash),
	// and moves the chain's head to the last, in one transaction. The first record of a chain (ChainSeq 1)
	// creates it, with instance and its At as start. ErrAuditHead when recs do not follow the head.
	AppendAudit(ctx context.Context, instance string, recs []AuditRecord) error
	// AuditHead returns one chain's head (ErrNotFound when it has none).
	AuditHead(ctx context.Context, chain string) (AuditChain, error)
	// AuditChains returns every chain, with or without a head row, ordered by name.
	AuditChains(ctx context.Context) ([]AuditChain, error)
	// ChainRecords returns the records of one chain numbered after afterChainSeq, in chain order, at most
	// limit (0: 1000).
	ChainRecords(ctx context.Context, chain string, afterChainSeq int64, limit int) ([]AuditRecord, error)
	// ListAudit returns the records q selects, ordered by Seq.
	ListAudit(ctx context.Context, q AuditQuery) ([]AuditRecord, error)
}
