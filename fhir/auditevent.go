package fhir

// AuditEvent is the wire form of an R4 AuditEvent as socialrx writes it: one audited access to a referral's
// data, in the shape of IHE Basic Audit Log Patterns (BALP): a RESTful interaction (type rest, subtype the
// interaction) by a client agent (the requestor, with its network address) of this server, observed by
// socialrx, about the referral's ServiceRequest and its patient, with the request ids as XrequestId entities.
type AuditEvent struct {
	ResourceType string             `json:"resourceType"` // always "AuditEvent"
	ID           string             `json:"id"`
	Meta         *Meta              `json:"meta,omitempty"`
	Type         Coding             `json:"type"`
	Subtype      []Coding           `json:"subtype,omitempty"`
	Action       string             `json:"action,omitempty"` // C R U D E
	Recorded     string             `json:"recorded"`         // FHIR instant
	Outcome      string             `json:"outcome,omitempty"`
	Agent        []AuditEventAgent  `json:"agent"`
	Source       AuditEventSource   `json:"source"`
	Entity       []AuditEventEntity `json:"entity,omitempty"`
}

// AuditEventAgent is AuditEvent.agent.
type AuditEventAgent struct {
	Type      *CodeableConcept   `json:"type,omitempty"`
	Who       *Reference         `json:"who,omitempty"`
	Requestor bool               `json:"requestor"`
	Network   *AuditEventNetwork `json:"network,omitempty"`
}

// AuditEventNetwork is AuditEvent.agent.network (type 2: an IP address).
type AuditEventNetwork struct {
	Address string `json:"address,omitempty"`
	Type    string `json:"type,omitempty"`
}

// AuditEventSource is AuditEvent.source.
type AuditEventSource struct {
	Site     string    `json:"site,omitempty"`
	Observer Reference `json:"observer"`
	Type     []Coding  `json:"type,omitempty"`
}

// AuditEventEntity is AuditEvent.entity.
type AuditEventEntity struct {
	What *Reference `json:"what,omitempty"`
	Type *Coding    `json:"type,omitempty"`
	Role *Coding    `json:"role,omitempty"`
}
