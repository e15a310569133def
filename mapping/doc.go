// Package mapping is socialrx's domain: it turns a validated FHIR ServiceRequest submission into a community
// referral record, routes it to a community service, enforces the referral Task state machine, and renders the
// FHIR Task the GP side reads. It is pure: no I/O, the clock and id generator are passed in, so golden files
// under testdata/ pin every output.
//
// Entry points:
//
//	RequesterODS   the referring practice's ODS code (practice scoping, 403) — before Build
//	Build          business rules (422, every issue at once), routing, Record, Task state, ServiceRequest as
//	               stored, referral.created event                         — intake
//	TaskFor        the FHIR R4 Task of a referral                          — every Task read
//	CanTransition  the state machine; ApplyStatus applies a change         — community / GP status updates
//	TaskUpdate     what a FHIR Task update (PUT, JSON Patch) may change    — Task updates
//	Withdrawal     what a cancellation withdraws before delivery           — the store, in the change's transaction
//	MarkBusinessStatus  transport facts (queued, delivered, ...)           — the dispatcher
//	WebhookPayload the body of a webhook event
//
// The shared referral fixtures live in ../testdata/referrals (see its README); their mappings are pinned in
// testdata/golden (regenerate with go test ./mapping -update).
package mapping
