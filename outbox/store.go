package outbox

import (
	"context"
	"encoding/json"
	"time"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
)

// Errors every Store returns, whatever the backend. Backends translate driver errors into these at their edge.
var (
	// ErrNotFound: no such referral, message or resource.
	ErrNotFound = fault.Sentinel(fault.NotFound, "not found")
	// ErrConflict: a ServiceRequest.identifier is already used by a referral with different content.
	ErrConflict = fault.Sentinel(fault.Conflict, "identifier already used with different content")
	// ErrVersionMismatch: an update expected another version (If-Match).
	ErrVersionMismatch = fault.Sentinel(fault.Stale, "version mismatch")
	// ErrLeaseLost: the message is no longer leased by this dispatcher (the lease expired and another took it).
	ErrLeaseLost = fault.Sentinel(fault.Conflict, "lease lost")
	// ErrSubscriptionLimit: the client already has the most active Subscriptions it may have.
	ErrSubscriptionLimit = fault.Sentinel(fault.Rule, "subscription limit reached")
	// ErrNoChange is returned by a ReferralUpdate that has nothing to change: the store then leaves the
	// referral (and its version) untouched and commits the rest of the operation.
	ErrNoChange = fault.Sentinel(fault.Internal, "no change")
)

// Referral is a stored referral: its state plus the ServiceRequest as stored.
type Referral struct {
	mapping.Referral
	ServiceRequest json.RawMessage
	Identifiers    []mapping.Identifier
	Fingerprint    string
}

// CreateResult says whether CreateReferral wrote a new referral or found the same one already there.
type CreateResult struct {
	Referral Referral
	Created  bool // false: an identical resend; Referral is the existing one
	// Audit is the creation's record as CreateAuditedReferral appended it (numbered and hashed on its chain);
	// nil from CreateReferral and for a resend.
	Audit *AuditRecord
}

// ReferralQuery selects referrals (and so their Tasks). Zero fields do not filter. Results are ordered by
// (UpdatedAt, ID) ascending, which makes After a stable keyset cursor for polling.
type ReferralQuery struct {
	ID               string // referral id
	TaskID           string
	ServiceRequestID string
	// TaskIDs and ServiceRequestIDs select any of the ids listed (a FHIR _id list); nil does not filter, a
	// non-nil empty list matches nothing.
	TaskIDs           []string
	ServiceRequestIDs []string
	// ServiceRequestStatuses selects referrals whose ServiceRequest has one of these statuses (active,
	// revoked, completed, entered-in-error).
	ServiceRequestStatuses []string
	Identifier             *mapping.Identifier // a ServiceRequest.identifier (system may be empty: value only)
	Practices              []string            // scope: only these referring practices (nil: all)
	ServiceID              string              // scope or owner filter: only this community service
	Statuses               []mapping.TaskStatus
	PatientRef             string // Task.for reference string, e.g. "Patient/123"
	PatientNHSNumber       string
	RequesterRef           string
	UpdatedAfter           time.Time // exclusive (gt); zero: no bound
	UpdatedFrom            time.Time // inclusive (ge)
	UpdatedBefore          time.Time // exclusive (lt)
	UpdatedUntil           time.Time // inclusive (le)
	After                  *Cursor   // keyset paging
	Limit                  int       // 0: backend default (100)
	// CreatedUntil, if set, selects referrals created at or before it (inclusive).
	CreatedUntil time.Time
	// BusinessStatuses selects referrals whose Task businessStatus is one of these (nil: any).
	BusinessStatuses []mapping.BusinessStatus
	// DeadlineSteps selects referrals standing on one of these rungs of the deadline ladder (nil: any;
	// mapping.DeadlineNone: none reached yet).
	DeadlineSteps []mapping.DeadlineStep
	// ParentTaskID selects the referrals forwarded from the referral with this Task id (Task?part-of).
	ParentTaskID string
}

// Cursor is a position in the (UpdatedAt, ID) order.
type Cursor struct {
	UpdatedAt time.Time
	ID        string
}

// MessageState is an outbox message's delivery state (see doc.go). The zero value is invalid.
type MessageState string

// Message states.
const (
	StatePending   MessageState = "pending"
	StateInflight  MessageState = "inflight"
	StateDelivered MessageState = "delivered"
	StateDead      MessageState = "dead"
	// StateCancelled is terminal: the message was withdrawn before delivery (a referral.created whose
	// referral the GP cancelled before it reached the service; see Store.UpdateReferral). It is never
	// claimed, never replayed, and does not block the messages after it.
	StateCancelled MessageState = "cancelled"
	// StateDiscarded is terminal: an engineer decided the message must never be sent (Store.DiscardMessages,
	// with a reason and an actor). Like cancelled, it is never claimed nor replayed and does not block the
	// messages after it.
	StateDiscarded MessageState = "discarded"
)

// AllStates lists every message state.
func AllStates() []MessageState {
	return []MessageState{StatePending, StateInflight, StateDelivered, StateDead, StateCancelled, StateDiscarded}
}

// Valid reports whether s is a message state.
func (s MessageState) Valid() bool {
	switch s {
	case StatePending, StateInflight, StateDelivered, StateDead, StateCancelled, StateDiscarded:
		return true
	}
	return false
}

// Finished reports whether a message in state s will never be delivered again by the dispatcher
// (delivered, cancelled or discarded): a finished message does not hold up the later messages of its
// referral and destination. Dead is not finished: it blocks them until it is replayed and delivered.
func (s MessageState) Finished() bool {
	switch s {
	case StateDelivered, StateCancelled, StateDiscarded:
		return true
	case StatePending, StateInflight, StateDead:
	}
	return false
}

// Progress is how far a message in state s got towards its destination, as mapping.Withdrawal sees it:
// pending and dead are unsent, inflight may be reaching it, delivered is delivered, cancelled was
// withdrawn, discarded will never be sent (withdrawn by an engineer).
func (s MessageState) Progress() mapping.DeliveryProgress {
	switch s {
	case StatePending, StateDead:
		return mapping.ProgressUnsent
	case StateInflight:
		return mapping.ProgressInFlight
	case StateDelivered:
		return mapping.ProgressDelivered
	case StateCancelled, StateDiscarded:
		return mapping.ProgressWithdrawn
	}
	return ""
}

// WithdrawnError is the LastError of a message retired into StateCancelled by a cancellation.
const WithdrawnError = "withdrawn: referral cancelled before delivery"

// ConsentWithdrawnError is the LastError of a message retired into StateCancelled because the person withdrew
// their consent before it reached its service.
const ConsentWithdrawnError = "withdrawn: consent withdrawn"

// Message is one outbox message.
type Message struct {
	ID            string // UUIDv7; webhook-id; never changes, not on retry nor on replay
	Seq           int64  // commit order; orders messages of one referral
	ReferralID    string
	Destination   mapping.Destination
	Type          mapping.EventType
	Payload       json.RawMessage
	State         MessageState
	Attempts      int // attempts made so far (all, across replays)
	CreatedAt     time.Time
	NextAttemptAt time.Time // when pending: not before
	LeaseOwner    string    // when inflight
	LeaseUntil    time.Time // when inflight
	DeliveredAt   time.Time
	LastError     string // short, no patient data
	// BudgetFrom is when the current retry budget started: creation, or the last replay.
	BudgetFrom time.Time
	// PracticeODS is the referring practice of the message's referral when the store read it with the
	// message (ClaimMessages does, in the same statement); empty otherwise, and for a message with no
	// referral. The dispatcher names it in a delivery's audit record, and reads it (ReferralPractice) only
	// when it is empty.
	PracticeODS string
}

// Attempt is one delivery attempt.
type Attempt struct {
	MessageID  string
	N          int // 1-based, across replays
	StartedAt  time.Time
	Latency    time.Duration
	StatusCode int    // 0: no HTTP response (network error, timeout)
	Error      string // short, no patient data; empty on success
	// Response is the start of the receiver's answer (at most MaxResponseBytes of its body, as valid UTF-8
	// text; a binary body is described, not kept), so that an engineer can read why it refused. It may
	// echo what it was sent: it is shown to engineers, never logged.
	Response string
}

// Replay records an engineer's replay of a message.
type Replay struct {
	MessageID string
	At        time.Time
	Actor     string
	Reason    string
	FromState MessageState
}

// MessageQuery selects messages for the admin API and CLI. Zero fields do not filter. Ordered by Seq.
type MessageQuery struct {
	States        []MessageState
	Destination   *mapping.Destination
	ServiceID     string // shorthand for Destination{Kind: service, ID: ServiceID}
	ReferralID    string
	Types         []mapping.EventType // only these event types
	CreatedBefore time.Time           // older than (age filter)
	AfterSeq      int64               // paging
	Limit         int                 // 0: backend default (100)
}

// MessageDetail is one message with its full history.
type MessageDetail struct {
	Message  Message
	Attempts []Attempt
	Replays  []Replay
	// Discard is the engineer's decision that made the message discarded (nil unless it is).
	Discard *Discard
}

// ReferralUpdate changes a referral inside the store's transaction. It receives the current state and returns
// the new state and the events to enqueue with it; it must be pure (no I/O). Returning an error aborts the
// transaction and the error is returned unchanged. The store bumps Record.Version and sets Record.UpdatedAt to
// the now given with the call; the function must not.
type ReferralUpdate func(cur Referral) (next mapping.Referral, events []mapping.Event, err error)

// AttemptResult is what a dispatcher reports after one delivery attempt.
type AttemptResult struct {
	Attempt Attempt
	Owner   string       // the lease owner that claimed the message
	State   MessageState // StateDelivered, StatePending (retry at NextAttemptAt) or StateDead
	// NextAttemptAt is required when State is StatePending.
	NextAttemptAt time.Time
	// Update, if not nil, changes the message's referral in the same transaction (businessStatus).
	Update ReferralUpdate
	// Subscription, if not nil, changes the status of the Subscription the message was for in the same
	// transaction, if it is still at From (a notification gone dead puts an active subscription in error; one
	// delivered brings an errored subscription back).
	Subscription *SubscriptionChange
	// Audit, if not nil, is the disclosure the attempt made (a delivered message about a referral): it is
	// appended to the audit trail in the transaction that records the attempt, so that an attempt is never
	// recorded without it nor it without the attempt. It is appended whenever the attempt is recorded, even
	// with the lease lost: the receiver had the data either way.
	Audit *Disclosure
}

// Disclosure is an audit record that a store appends in the transaction of the change it records: an
// attempt (AttemptResult.Audit) or a referral's creation (CreateAuditedReferral). The store numbers and
// hashes it on its chain (Record.Chain), after that chain's head, which it reads and holds locked until
// commit; a chain not yet written is started for Instance. A creation's record may come numbered after the
// head its lane last saw (Lane.Disclosure): the store then appends it there without reading the head first,
// if the head is there. A chain that takes disclosures is written by one transaction at a time and by
// nothing else (AuditLog.Record appends to a chain of its own).
type Disclosure struct {
	Instance string      // the chain's writer, for a chain started here (AuditChain.Instance)
	Record   AuditRecord // Chain set; ChainSeq, PrevHash and Hash are set by the store (or hinted: above)
}

// Completion is one attempt to record (Store.CompleteAttempts): CompleteAttempt's arguments.
type Completion struct {
	ID     string // the message
	Now    time.Time
	Result AttemptResult
}

// SubscriptionChange moves a Subscription from one status to another, only if it is at From.
type SubscriptionChange struct {
	ID   string
	From SubscriptionStatus
	To   SubscriptionStatus
	// Error is the subscription's error text when To is SubscriptionError (short, no patient data); any
	// other move clears it.
	Error string
}

// ReplayRequest moves messages back to pending. Either IDs or Filter selects them; only dead messages
// (and, when named by id, pending ones whose next attempt is far off) are replayed.
type ReplayRequest struct {
	IDs    []string
	Filter *MessageQuery
	Reason string
	Actor  string
	DryRun bool
	// Update, if not nil, is applied to each affected referral in the same transaction (businessStatus): each
	// referral with a replayed message to a service destination (replaying a subscription notification does
	// not change its referral).
	Update ReferralUpdate
	// Pace > 0 spreads the replayed messages out: the i-th of them (0-based, in Seq order) becomes due at
	// DueFrom + i × Pace (DueFrom: now when zero or earlier), so that a receiver that has just recovered
	// is not sent a whole backlog at once. 0: all due at now.
	Pace    time.Duration
	DueFrom time.Time
}

// Store is the storage contract: referrals and their timeline, outbox messages, FHIR Subscriptions and
// single-use values and inbox sessions, in one interface that every backend implements whole (there are no optional
// capabilities to probe for: the embedded groups below only arrange the documentation). Every behaviour is
// proven on every backend by outboxtest. All times passed in are the caller's clock; backends never read the
// wall clock for state decisions.
type Store interface {
	Referrals
	Timeliner
	Subscriptions
	Nonces
	Sessions
	Operations
	Retention
	Audit
	Capacities

	// Changes signals (never blocking, coalescing) after every commit that wrote messages or let a claim take
	// one sooner (a retry scheduled, a later message released; not a delivery that frees nothing), so that a
	// dispatcher in this process wakes without polling.
	Changes() <-chan struct{}
	// Ping checks the database is reachable.
	Ping(ctx context.Context) error
	// CheckWrite is readiness: it commits a tiny write through the store's normal write path (the row of
	// instance, one per process, stamped now), and fails (kind fault.Unavailable) when that write fails or
	// when any write of this store failed for want of the database (down, locked, full: the kind
	// fault.Unavailable at the backend's edge) since the previous CheckWrite. It recovers by itself: once
	// writes succeed again, the next check but one passes.
	CheckWrite(ctx context.Context, instance string, now time.Time) error
	Close() error
}

// Referrals is the part of Store that keeps referrals and their outbox messages.
type Referrals interface {
	// CreateReferral writes the referral, its ServiceRequest, Task v1 and its events in one transaction.
	// Identifiers are keys of the referring practice (Referral.PracticeODS, compared case-insensitively): if
	// any is already used by a referral of the same practice: same fingerprint → the existing referral
	// (Created false); another fingerprint → ErrConflict. Another practice's referral with the same identifier
	// is neither found nor a conflict. Nothing is written unless everything is.
	CreateReferral(ctx context.Context, in mapping.Intake) (CreateResult, error)
	// CreateAuditedReferral is CreateReferral that also appends audit, the record of the creation, in the
	// creating transaction, as CompleteAttempts appends an attempt's Disclosure: a referral is never created
	// without its record, and its record is never written without it. A resend (Created false) appends
	// nothing: its caller records what it answers. audit.Record must be valid (AuditRecord.Validate) and name
	// its chain, one that no other transaction writes at the same time (AuditLog.Lend). A record numbered
	// (ChainSeq above 0, PrevHash set) says where the caller last left the chain's head: the store tries to
	// append there first, and appends after the head it reads when the chain's head is elsewhere.
	CreateAuditedReferral(ctx context.Context, in mapping.Intake, audit Disclosure) (CreateResult, error)
	// GetReferral returns one referral by referral id, task id or ServiceRequest id (whichever matches).
	GetReferral(ctx context.Context, id string) (Referral, error)
	// ReferralPractice returns the referring practice (Referral.PracticeODS) of the referral with this
	// referral id, reading nothing else: what the audit record of each delivery names. ErrNotFound when
	// there is no such referral.
	ReferralPractice(ctx context.Context, id string) (string, error)
	// SearchReferrals returns referrals matching q, and a cursor to the next page (nil when none).
	SearchReferrals(ctx context.Context, q ReferralQuery) ([]Referral, *Cursor, error)
	// CountReferrals returns how many referrals match q's filters (After and Limit are ignored): a search's
	// Bundle.total.
	CountReferrals(ctx context.Context, q ReferralQuery) (int, error)
	// UpdateReferral applies fn to the referral in one transaction; expectVersion > 0 must match the
	// current version (ErrVersionMismatch otherwise).
	//
	// Withdrawal before delivery (issue 4: a referral the service never received is not cancelled at the
	// service, it is simply never sent) is decided by mapping.Withdrawal; the store only reads the facts it
	// asks for and applies its decision. When fn's events contain a mapping.EventReferralCancelled for a
	// service destination D, the referral was still requested before the update (the service has not
	// acknowledged or acted on it: had it, it knows the referral, e.g. from its pull inbox, and must be told),
	// and the referral's mapping.EventReferralCreated messages to D are neither delivered nor inflight (pending,
	// or dead; at least one), the store, in the same transaction,
	//   - retires every such referral.created message to D into StateCancelled (LastError WithdrawnError,
	//     lease cleared; the referral's timeline entry for this version lists it in Withdrawn),
	//   - drops that referral.cancelled event (nothing is sent to D), and
	//   - sets the referral's BusinessStatus to "" (no transport fact: nothing was ever delivered).
	// When a referral.created message to D is inflight (a delivery may be under way) or delivered, when there
	// is none (the service may have seen the referral in its pull inbox), or when the referral had moved past
	// requested, the referral.cancelled is queued as usual, and per-referral ordering delivers it after the
	// referral.created. The messages read for the decision are locked until commit, so that no claim takes
	// one in between. The same rule applies to the Update of CompleteAttempt and ReplayMessages.
	UpdateReferral(ctx context.Context, id string, expectVersion int, now time.Time, fn ReferralUpdate) (Referral, error)

	// ClaimMessages leases up to limit deliverable messages to owner until now+lease: pending and due,
	// or inflight with an expired lease; and for each (referral, destination) only the oldest message not
	// yet finished (a dead or inflight earlier message blocks the later ones; delivered and cancelled
	// messages do not). A cancelled message is never claimed.
	//
	// f limits what the claim may lease per destination (the zero ClaimFilter: no limits), so that a
	// dispatcher never leases messages it has no room to deliver and one slow service's backlog cannot fill
	// every claim. The rules above are applied before the limits: a message skipped for lack of room stays
	// pending. Each message claimed names its referral's practice (Message.PracticeODS).
	ClaimMessages(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, f ClaimFilter) ([]Message, error)
	// CompleteAttempt records an attempt and moves the message to its next state; ErrLeaseLost when owner
	// no longer holds the lease (the attempt is still recorded).
	CompleteAttempt(ctx context.Context, id string, now time.Time, res AttemptResult) error
	// CompleteAttempts records several attempts as CompleteAttempt does, with one commit for all of them;
	// errs[i] is cs[i]'s result, and one completion's failure is never another's (the dispatcher batches the
	// attempts that finish together, so that a delivery does not cost a commit of its own).
	CompleteAttempts(ctx context.Context, cs []Completion) (errs []error)
	// ReleaseMessages returns owner's inflight messages to pending (graceful shutdown).
	ReleaseMessages(ctx context.Context, owner string, now time.Time) (int, error)
	// ListMessages, GetMessage and ReplayMessages serve the admin API and CLI.
	ListMessages(ctx context.Context, q MessageQuery) ([]Message, error)
	GetMessage(ctx context.Context, id string) (MessageDetail, error)
	ReplayMessages(ctx context.Context, now time.Time, req ReplayRequest) ([]Message, error)
	// CountMessages returns the number of messages in each state and the oldest pending message's creation.
	CountMessages(ctx context.Context) (map[MessageState]int, time.Time, error)
	// NextDue returns when the earliest claimable pending message becomes due (zero when none is pending), so that a
	// dispatcher can sleep exactly that long.
	NextDue(ctx context.Context) (time.Time, error)
	// CountByStatus returns how many referrals of the community service serviceID are in each status (only
	// statuses with referrals appear), for the inbox page's tabs.
	CountByStatus(ctx context.Context, serviceID string) (map[mapping.TaskStatus]int, error)
}

// ForwardUpdate decides a link worker's onward referral inside the store's transaction: it receives the link
// worker's referral (locked) and returns it changed and the linked referrals to create (mapping.Forward).
type ForwardUpdate func(cur Referral) (parent mapping.Referral, children []mapping.Intake, err error)

// Forwarder is the part of a store that writes a link worker's onward referral (both backends have it).
type Forwarder interface {
	// Forward applies fn to the referral id (by referral, task or ServiceRequest id, its row locked;
	// expectVersion > 0 must match) and writes, in one transaction, its new version and every child fn
	// returns (each as CreateReferral would, with no identifiers), so that the link worker's Task never
	// references a child that does not exist. It returns the parent as written and the children.
	Forward(ctx context.Context, id string, expectVersion int, now time.Time, fn ForwardUpdate) (Referral, []Referral, error)
}

// TimelineCause says which store operation produced a referral version. The zero value is invalid.
type TimelineCause string

// Timeline causes.
const (
	CauseCreate  TimelineCause = "create"  // CreateReferral (version 1)
	CauseUpdate  TimelineCause = "update"  // UpdateReferral
	CauseAttempt TimelineCause = "attempt" // CompleteAttempt's Update
	CauseReplay  TimelineCause = "replay"  // ReplayMessages' Update
	CauseDiscard TimelineCause = "discard" // DiscardMessages' Update
)

// AllTimelineCauses lists every timeline cause.
func AllTimelineCauses() []TimelineCause {
	return []TimelineCause{CauseCreate, CauseUpdate, CauseAttempt, CauseReplay, CauseDiscard}
}

// TimelineEntry is one version of a referral in its timeline: what the referral became and which outbox
// messages that change enqueued.
type TimelineEntry struct {
	ReferralID     string
	Version        int
	At             time.Time
	Cause          TimelineCause
	Status         mapping.TaskStatus
	BusinessStatus mapping.BusinessStatus
	StatusReason   string
	Messages       []string // ids of the messages written with this version, in Seq order
	// Withdrawn are the ids of the messages this version withdrew before delivery (StateCancelled: the GP
	// cancelled the referral before it reached the service), in Seq order.
	Withdrawn []string
}

// Timeliner is the part of Store that keeps every version of a referral: its timeline (the admin API and
// CLI) and each version's referral as it was written (FHIR vread and _history). Every transaction that writes
// a version (CreateReferral, UpdateReferral, CompleteAttempt and ReplayMessages with an Update that changed
// the referral) keeps that version's referral with its timeline entry.
type Timeliner interface {
	// Timeline returns every version of the referral (by referral, task or ServiceRequest id), oldest first.
	Timeline(ctx context.Context, id string) ([]TimelineEntry, error)
	// ReferralVersions returns every kept version of the referral (by referral, task or ServiceRequest id),
	// oldest first, each exactly as it was written: the referral of that version (Record.Version and
	// Record.UpdatedAt that version's) with the referral's ServiceRequest, identifiers and fingerprint.
	// Versions written before version history was kept (schema migration 20) are missing; the current
	// version is always there. ErrNotFound when there is no such referral.
	ReferralVersions(ctx context.Context, id string) ([]Referral, error)
	// ReferralVersion returns one kept version (see ReferralVersions); ErrNotFound when the referral or that
	// version is unknown.
	ReferralVersion(ctx context.Context, id string, version int) (Referral, error)
}

// Nonces is the part of Store that remembers single-use values for every instance sharing the database. The
// token endpoint records the jti of each SMART client assertion here, so that no instance accepts one twice.
type Nonces interface {
	// UseNonce records nonce (non-empty text without NUL; callers hash untrusted values) until expiresAt and
	// reports true; it reports false, writing nothing, when nonce is already recorded and not expired at now.
	// Expired records are removed as it goes.
	UseNonce(ctx context.Context, nonce string, expiresAt, now time.Time) (bool, error)
}

// ClaimFilter limits what Store.ClaimMessages may lease per destination. The zero value sets no limit.
type ClaimFilter struct {
	// PerDestination > 0: at most this many messages of any one destination in the result.
	PerDestination int
	// Room overrides PerDestination for the destinations it names: at most Room[d] messages of d
	// (0: none of d, e.g. the dispatcher already has its cap of d in flight).
	Room map[mapping.Destination]int
}

// SubscriptionStatus is a stored Subscription's state (FHIR Subscription.status). The zero value is invalid.
type SubscriptionStatus string

// Subscription states. A Subscription is created "requested" by the client and stored "active"; a
// notification that goes dead puts it in "error" (its later notifications are still numbered and queued,
// and wait behind the dead one); a delivery (after a replay, or a re-activation by its owner) brings it back
// to "active"; DELETE sets it "off". Active and errored subscriptions get notifications; off ones none.
const (
	SubscriptionActive SubscriptionStatus = "active"
	SubscriptionError  SubscriptionStatus = "error"
	SubscriptionOff    SubscriptionStatus = "off"
)

// AllSubscriptionStatuses lists every stored Subscription state.
func AllSubscriptionStatuses() []SubscriptionStatus {
	return []SubscriptionStatus{SubscriptionActive, SubscriptionError, SubscriptionOff}
}

// Valid reports whether s is a stored Subscription state.
func (s SubscriptionStatus) Valid() bool {
	switch s {
	case SubscriptionActive, SubscriptionError, SubscriptionOff:
		return true
	}
	return false
}

// Notified reports whether a subscription in state s gets notifications (numbered and queued): active and
// error (whose queue waits behind a dead notification until it is replayed).
func (s SubscriptionStatus) Notified() bool {
	switch s {
	case SubscriptionActive, SubscriptionError:
		return true
	case SubscriptionOff:
	}
	return false
}

// Subscription is a GP system's FHIR Subscription (R4, rest-hook channel): every new version of a referral of
// PracticeODS is sent to Endpoint as a numbered notification while the subscription is active.
type Subscription struct {
	ID            string
	OwnerClientID string // the GP client that created it (the only one that may read or delete it)
	PracticeODS   string // the practice its criteria select
	Criteria      string // Subscription.criteria as submitted
	Endpoint      string // channel.endpoint
	// Header holds channel.header values ("Name: value"); sent with every notification, never logged nor
	// returned to clients.
	Header []string
	// Payload is the notification content: mapping.PayloadIDOnly or mapping.PayloadFullResource.
	Payload mapping.PayloadContent
	Status  SubscriptionStatus
	// EventsSinceStart is the number of the last notification written for this subscription (0: none). The
	// store numbers notifications 1, 2, 3… per subscription, gap-free, in commit order.
	EventsSinceStart int64
	// BaseURL is the FHIR base the subscription was created at; notifications reference resources under it.
	BaseURL   string
	CreatedAt time.Time
	UpdatedAt time.Time
	// Resource is the Subscription JSON as accepted (id set, channel.header removed); Status and id are
	// authoritative over its content.
	Resource json.RawMessage
	// Error says why the subscription is in error (the dead notification's last error; empty otherwise).
	Error string
	// Topic is the SubscriptionTopic canonical of a topic-based subscription (R4 Backport); empty for a
	// classic criteria subscription.
	Topic string
	// HeartbeatPeriod is how often a heartbeat is sent while nothing else is (whole seconds; 0: never).
	HeartbeatPeriod time.Duration
	// Handshake, when creating, is the payload of the handshake notification queued as the subscription's
	// first message in the same transaction (nil: none). It is not kept on the subscription.
	Handshake json.RawMessage
}

// SubscriptionQuery selects subscriptions. Zero fields do not filter. Ordered by CreatedAt, ID.
type SubscriptionQuery struct {
	OwnerClientID string
	PracticeODS   string
	Statuses      []SubscriptionStatus
}

// NotifyFunc renders the payload of one subscription notification: the referral as just written (its new
// version) and the event number the store assigned. It must be pure (no I/O); an error aborts the
// transaction that changed the referral. RenderNotification is the FHIR implementation.
type NotifyFunc func(sub Subscription, ref Referral, eventNumber int64, now time.Time) (json.RawMessage, error)

// Subscriptions is the part of Store behind FHIR Subscriptions. Every backend also FANS OUT: every
// transaction that writes a new referral version (CreateReferral, UpdateReferral, and CompleteAttempt or
// ReplayMessages with an Update that changed the referral) inserts, in that same transaction, one pending
// message with Destination{Kind: subscription, ID: sub.ID} and Type mapping.EventNotification for each
// subscription that gets notifications (active or error: SubscriptionStatus.Notified) whose PracticeODS is the
// referral's (case-insensitively), numbered with the subscription's next event number.
// ClaimMessages hands out a subscription's messages strictly in Seq order across referrals: for subscription
// destinations the head of line is per destination, not per (referral, destination).
type Subscriptions interface {
	// CreateSubscription stores sub (ID, OwnerClientID, PracticeODS and Endpoint required; Status active;
	// EventsSinceStart is set to 0) and, in the same transaction, queues sub.Handshake (when not nil) as its
	// first message (type mapping.EventHandshake, no referral). An existing id is an error. maxActive > 0
	// caps the owner's subscriptions that still notify (active or error): when the owner already has that
	// many, nothing is written and the error is ErrSubscriptionLimit (checked and written in one transaction:
	// concurrent creates never pass the cap).
	CreateSubscription(ctx context.Context, sub Subscription, maxActive int) (Subscription, error)
	// GetSubscription returns one subscription (ErrNotFound if none).
	GetSubscription(ctx context.Context, id string) (Subscription, error)
	// UpdateSubscriptionStatus sets a subscription's status (ErrNotFound if none). Setting the current
	// status again is a no-op.
	UpdateSubscriptionStatus(ctx context.Context, id string, status SubscriptionStatus, now time.Time) (Subscription, error)
	// ListSubscriptions returns the subscriptions matching q.
	ListSubscriptions(ctx context.Context, q SubscriptionQuery) ([]Subscription, error)
	// QueueHeartbeats queues, in one transaction, a heartbeat notification (type mapping.EventHeartbeat,
	// payload from render) for every active subscription with a HeartbeatPeriod that has nothing queued
	// (no pending, inflight or dead message) and whose newest message (or, without one, its creation) is at
	// least a HeartbeatPeriod before now. It returns how many it queued.
	QueueHeartbeats(ctx context.Context, now time.Time, render HeartbeatFunc) (int, error)
}

// HeartbeatFunc renders the payload of a subscription's heartbeat notification at now. It must be pure.
type HeartbeatFunc func(sub Subscription, now time.Time) (json.RawMessage, error)
