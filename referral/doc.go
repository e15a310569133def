// Package referral holds socialrx's use cases: what a GP system, a community service and an engineer can ask
// socialrx to do, each as one method taking plain inputs (the Caller, the parsed resource or request, the
// version the caller read) and returning domain results and errors with a kind (package fault).
//
//	Submit             a GP system refers a patient (FHIR ServiceRequest or transaction Bundle)
//	ChangeStatus       a community service acknowledges, accepts, declines, starts, holds, completes (+ a note)
//	Revoke             the referring practice withdraws its ServiceRequest (the Task is cancelled)
//	UpdateTask         a FHIR-capable platform or the practice updates the Task (PUT or a JSON Patch result)
//	Subscribe, Unsubscribe, Subscription
//	                   a GP system's FHIR Subscriptions (R4 backport)
//	Get, Search, ServiceRequest
//	                   what a client may read, scoped to its practices or its service
//	OverdueSweeper     marks referrals nobody acknowledged in time
//	Inbox              the inbox page's sign-in: sessions (sign in, look up, sign out), throttling of wrong
//	                   sign-ins, the per-status counts of its tabs
//	Operator           an engineer lists, shows and replays outbox messages (admin API and CLI alike)
//
// It exists because those rules belong to no adapter: the FHIR API, the community API, the inbox page and the
// CLI all call the same use case, so a rule (who may see a referral, what a cancellation does, when a note may
// be added) is written once. It sits between the HTTP adapters (server/...) and the store (outbox), as
// docs/design.md#house-style orders the layers: it imports outbox, mapping, fhir, config and fault, never net/http. Pure
// decisions stay in mapping (the state machine, what a Task update may change); this package loads what a
// decision needs, asks mapping, and commits the result in one store transaction.
package referral
