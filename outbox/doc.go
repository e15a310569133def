// Package outbox is socialrx's storage contract and delivery engine: the Store interface that every backend
// (outbox/sqlite and outbox/postgres) implements and outbox/outboxtest proves, and the dispatcher that
// delivers outbox messages as signed webhooks.
//
// Message states:
//
//	            claim (lease)            2xx
//	pending ───────────────▶ inflight ───────────▶ delivered
//	   ▲  ▲                     │
//	   │  └── 408/429/5xx/net ──┤  (next_attempt_at = now + backoff)
//	   │      lease expired ────┘
//	   │                        │ other 4xx, or retry budget spent
//	   │                        ▼
//	   └──── replay ─────────  dead
//	  (same id; reason and actor recorded)
//
//	pending ─┐  GP cancels the referral before its referral.created was delivered
//	dead ────┴───────────────────────────────────────────────────────────────▶ cancelled
//	                                                   ("withdrawn before delivery"; terminal)
//	pending ─┐  an engineer decides it must never be sent (reason and actor recorded)
//	dead ────┴───────────────────────────────────────────────────────────────▶ discarded (terminal)
//
// cancelled is terminal and finished: a referral.created withdrawn before delivery because the GP cancelled
// the referral in the meantime (Store.UpdateReferral: the referral.cancelled is then not sent either, and the
// Task's businessStatus is cleared). It is never claimed nor replayed and, like delivered, does not hold up
// later messages. An inflight or delivered referral.created is never withdrawn: the cancellation is queued
// behind it and delivered after it.
//
// discarded is terminal and finished too (Store.DiscardMessages): never claimed nor replayed, it does not hold
// up later messages; a service's referral then says delivery-failed (nothing will be delivered).
//
// Paused destinations (Store.PauseDestination, in the database, so every instance and the CLI see them): no
// claim leases their messages, which stay pending (no attempt is made, so their retry budget cannot run
// out); ResumeDestination makes them due at once and adds the paused time back to their budgets, and the
// usual per-referral order delivers them.
//
// Delivery (Dispatcher): each attempt POSTs the stored payload unchanged with the Standard Webhooks headers
// webhook-id (the message id, the same on every retry and replay), webhook-timestamp and webhook-signature
// (Sign; receivers check with Verify). The first KB of each answer is kept with the attempt, as text
// (Attempt.Response). 2xx is delivered; 408, 429, 5xx, network errors and timeouts are
// retried at now + max(backoff + jitter, min(Retry-After, MaxRetryAfter)) until the retry budget, counted
// from creation or the last replay, is spent; any other status (3xx included: redirects are not followed)
// is permanent. For community services the referral's Task.businessStatus follows: delivered, or
// delivery-failed when the message goes dead (MarkDelivered, MarkDeliveryFailed; QueuedAgain on replay).
//
// GP notifications (FHIR Subscriptions): every store fans out, in the very transaction that writes a new
// referral version, one message per active subscription of the referral's practice (destination kind
// subscription), numbered per subscription without gaps and rendered by a NotifyFunc (RenderNotification).
// Those messages are ordered per destination across referrals (ClaimMessages), sent unsigned with the
// subscription's channel headers (WithSubscriptions), and never change the referral. A subscription that is
// off or gone makes its queued messages dead at once (ErrDestinationOff, ErrUnknownDestination).
//
// Withdrawal before delivery (the cancelled state above) is decided by mapping.Withdrawal, in pure code; a
// store only reads the facts it asks for and applies the decision in the cancellation's transaction.
//
// The store contract is one interface, Store, that every backend implements whole; its groups (Referrals,
// Timeliner, Subscriptions, Nonces) only arrange the documentation. Endpoints are looked up through one
// interface too, EndpointResolver, with the attempt's context.
//
// The dispatcher wakes on Store.Changes (commits in this process), on its completions, at Store.NextDue and
// on a slow safety poll (other processes' commits, expired leases). Leases make it crash safe: a message
// whose dispatcher died is claimed again once its lease expires; on graceful shutdown in-flight deliveries
// get ShutdownTimeout to finish, then the rest are released to pending at once.
package outbox
