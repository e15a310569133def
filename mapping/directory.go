package mapping

// Service is one community service in the directory (the directory file's services[]).
type Service struct {
	ID          string
	Name        string
	Identifiers []Identifier // matched against ServiceRequest.performer
	Codes       []string     // "system|code" referral codes this service takes
	Default     bool         // takes referrals that name no performer and match no other code
	Delivery    Delivery
	// Sharing is which fields of the community referral record the service receives (the zero value: the
	// safe default, DefaultSharingFields).
	Sharing SharingProfile
	// Capacity is the directory's initial capacity for the service (nil: none; the service is open until it
	// says otherwise). Only Status, ExpectedWaitDays, Until and MaxOpen are set.
	Capacity *Capacity
	// CanMeet are the support needs the service can meet (directory meets). nil: not declared, so not
	// checked (Meets); empty: it meets none.
	CanMeet []SupportNeed
	// WhenUnavailable is what it wants done with a referral that names it while it has no room
	// ("": PolicyLinkWorker).
	WhenUnavailable UnavailablePolicy
	// Contact is how the GP and the referrer reach the service (free text from the directory, printed on
	// the GP letter; "" when none was given).
	Contact string
	// LinkWorker marks the link-worker service (directory link_worker): it is told of escalations and
	// automatic declines (Directory.LinkWorker; without one marked, the default service is).
	LinkWorker bool
	// Deadlines are the service's response deadlines (directory deadlines; nil: DefaultDeadlines).
	Deadlines *Deadlines
}

// ResponseDeadlines are the service's response deadlines: its own, else DefaultDeadlines.
func (s Service) ResponseDeadlines() Deadlines {
	if s.Deadlines != nil {
		return *s.Deadlines
	}
	return DefaultDeadlines()
}

// Delivery is how a service receives referrals. An empty URL means pull-only (community inbox).
type Delivery struct {
	URL    string
	Secret string // Standard Webhooks secret, "whsec_<base64>"
	// MaxInFlight > 0 caps the service's webhook requests in flight at once, per dispatcher (each serve
	// process), in place of the dispatcher's default (8): lower for a small group's endpoint, higher for one
	// that takes parallel requests. At most MaxDeliveryInFlight. 0: the default.
	MaxInFlight int
}

// MaxDeliveryInFlight is the most requests in flight a service's delivery may ask for (Delivery.MaxInFlight).
const MaxDeliveryInFlight = 64

// Directory is the community directory: the services referrals can be routed to.
type Directory struct {
	Services []Service
}

// Service returns the service with the given id.
func (d Directory) Service(id string) (Service, bool) {
	for _, s := range d.Services {
		if s.ID == id {
			return s, true
		}
	}
	return Service{}, false
}
