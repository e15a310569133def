// Package crashtest is the end-to-end crash test of the socialrx binary (issue 3, "Must show"). It has no
// code outside its tests.
//
// The test builds the real binary once (go build ./cmd/socialrx), runs it on a real SQLite file with a
// directory file whose two webhook services point at a real loopback receiver run by the test, and lets a few
// concurrent GP clients post unique referrals while it kills the process with SIGKILL at random points of the
// delivery storm and restarts it on the same address. A GP client counts a referral as accepted only when it
// got 201 or 200; a request cut by a kill is resent unchanged (as GP systems do; an identical resend is
// idempotent). The receiver verifies every Standard Webhooks signature, sometimes answers 500 or answers slowly
// (retries, and deliveries in flight at kill time), and records webhook-ids and referral ids. At the end the
// test waits, bounded, until every accepted referral was delivered at least once, then asserts: every accepted
// referral received at least once, no unknown referral, one webhook-id per referral (so duplicates are
// counted by webhook-id and reported: delivery is at least once), no message left pending, inflight or dead.
// A second test sends SIGTERM during a storm and checks that the process exits within the bound and leaves
// no message inflight (socialrx outbox list --state inflight --json), then that a restart delivers the rest.
//
// The multi-instance kill test (issue 12, instances_test.go) runs three `socialrx serve` processes on one
// PostgreSQL schema (pgtest: skipped without a server, failing under CI) behind a round-robin "load balancer"
// (each GP request and resend goes to the next instance), revokes every third referral as soon as it is
// accepted (so that a referral.created and its referral.cancelled race through the outbox), and kills random
// instances. Beyond the single-instance guarantees it asserts per-referral order (a cancellation never reaches
// the service before its referral was answered 2xx), that no webhook-id is sent while a request carrying it is
// still being answered (two instances holding one message) unless the earlier attempt timed out, that a
// referral revoked before it was sent is withdrawn whole (neither message sent), and that the GP sees each
// Task as delivered or cancelled.
//
// It lives under cmd/socialrx because it tests that binary as a black box, through its environment, its
// HTTP API and its CLI only (it imports socialrx only for outbox.Verify and config.HashToken, as a receiver
// and an operator would, and pgtest for a scratch PostgreSQL schema); it is a package of its own so that `go test ./cmd/socialrx` stays in-process.
//
// `go test ./...` runs short bounded versions (60 referrals, 3 kills; well under a minute each). `make crash`
// runs longer ones. Settings (environment): CRASH_REFERRALS (60), CRASH_KILLS (3), CRASH_CLIENTS (4), CRASH_SEED
// (random; printed by every run, set it to replay the same random choices). The binary runs with
// SOCIALRX_DELIVERY_TIMEOUT=1s and SOCIALRX_DELIVERY_LEASE=8s, so that leases of deliveries cut by a kill
// expire in seconds, not after the default minute.
package crashtest
