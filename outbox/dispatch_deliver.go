package outbox

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/mapping"
)

// maxErrorLen bounds the error text recorded with an attempt.
const maxErrorLen = 200

// maxResponseDrain is how much of a response body is read to reuse the connection: its first
// MaxResponseBytes are kept with the attempt (ResponseText), the rest discarded. A longer body is cut off
// (the connection is then closed, not reused).
const maxResponseDrain = 64 << 10

// class is how one HTTP outcome is treated. The zero value is invalid.
type class string

const (
	classDelivered class = "delivered" // 2xx
	classRetry     class = "retry"     // 408, 429, 5xx, network error, timeout
	classPermanent class = "permanent" // any other status, including 3xx (redirects are not followed)
)

// classifyStatus maps an HTTP status code to its class.
func classifyStatus(code int) class {
	switch {
	case code >= 200 && code <= 299:
		return classDelivered
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500 && code <= 599:
		return classRetry
	default:
		return classPermanent
	}
}

// httpOutcome is the result of one attempt's HTTP exchange.
type httpOutcome struct {
	class         class
	statusCode    int // 0: no response
	err           string
	response      string // the start of the answer's body, as text (ResponseText)
	retryAfter    time.Duration
	hasRetryAfter bool
	latency       time.Duration
}

// newHTTPClient builds the default webhook client: per-request timeout, no redirects, a few quick
// in-attempt retries with short waits, the last response passed through, no logging.
func newHTTPClient(timeout time.Duration, retries int, maxWait time.Duration, transport http.RoundTripper) *retryablehttp.Client {
	hc := &http.Client{
		Transport: transport,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return &retryablehttp.Client{
		HTTPClient:   hc,
		RetryWaitMin: min(quickRetryWaitMin, maxWait),
		RetryWaitMax: maxWait,
		RetryMax:     retries,
		CheckRetry:   quickRetryPolicy(maxWait),
		Backoff:      quickBackoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
}

// quickRetryPolicy retries inside one attempt on connection errors (not timeouts: a receiver that did not
// answer within the timeout is left to the durable schedule), 408 and 5xx, and on 429 only with a
// Retry-After of at most maxWait. Anything that asks for a longer wait is left to the durable schedule.
func quickRetryPolicy(maxWait time.Duration) retryablehttp.CheckRetry {
	return func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if err != nil {
			return quickRetryableError(err), nil
		}
		if classifyStatus(resp.StatusCode) != classRetry {
			return false, nil
		}
		if ra, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return ra <= maxWait, nil
		}
		return resp.StatusCode != http.StatusTooManyRequests, nil
	}
}

// quickRetryableError says whether a transport error is worth an immediate retry.
func quickRetryableError(err error) bool {
	if isTimeout(err) || errors.Is(err, context.Canceled) || errors.Is(err, ErrEgressRefused) {
		return false
	}
	var (
		verify    *tls.CertificateVerificationError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	return !errors.As(err, &verify) && !errors.As(err, &authority) && !errors.As(err, &hostname) && !errors.As(err, &invalid)
}

// quickBackoff waits min × 2^n up to max, or the response's Retry-After when it is shorter than max.
func quickBackoff(minWait, maxWait time.Duration, attemptNum int, resp *http.Response) time.Duration {
	if resp != nil {
		if ra, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return min(ra, maxWait)
		}
	}
	return Exponential(minWait, maxWait)(attemptNum + 1)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// shortError renders a transport error without the URL (which may carry credentials) and without any
// response body, bounded to maxErrorLen.
func shortError(err error) string {
	if isTimeout(err) {
		return "timeout"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	s := err.Error()
	if len(s) > maxErrorLen {
		s = s[:maxErrorLen]
	}
	return s
}

func statusError(code int) string {
	s := "HTTP " + strconv.Itoa(code)
	if t := http.StatusText(code); t != "" {
		s += " " + t
	}
	if code >= 300 && code <= 399 {
		s += " (redirects are not followed)"
	}
	return s
}

// post performs one attempt's HTTP exchange, bounded by d.limit from the moment the request is sent, so
// that a timed-out attempt's latency is never shorter than the limit.
func (d *Dispatcher) post(ctx context.Context, m Message, ep Endpoint, ts time.Time) httpOutcome {
	u, err := url.Parse(ep.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return httpOutcome{class: classPermanent, err: "endpoint URL is not an absolute http(s) URL"}
	}
	client := d.opts.HTTPClient
	if ep.Guarded {
		client = d.opts.GuardedHTTPClient
		if u.Scheme == "http" && !(d.opts.Egress.AllowLoopback && config.LoopbackHost(u.Hostname())) {
			return httpOutcome{class: classPermanent, err: "plain http is only for loopback endpoints the directory allows; use https"}
		}
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, ep.URL, []byte(m.Payload))
	if err != nil {
		return httpOutcome{class: classPermanent, err: "building the request: " + shortError(err)}
	}
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range ep.Header {
		req.Header[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	req.Header.Set("User-Agent", "socialrx/"+d.opts.Version)
	req.Header.Set(HeaderWebhookID, m.ID)
	req.Header.Set(HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
	if ep.Secret != "" {
		sig, err := Sign(ep.Secret, m.ID, ts, m.Payload)
		if err != nil {
			return httpOutcome{class: classPermanent, err: "endpoint secret: " + err.Error()}
		}
		req.Header.Set(HeaderWebhookSignature, sig)
	} else {
		req.Header.Del(HeaderWebhookSignature)
	}

	start := time.Now() // latency is a real duration, measured on the monotonic clock
	actx, cancel := context.WithDeadline(ctx, start.Add(d.limit))
	defer cancel()
	resp, err := client.Do(req.WithContext(actx))
	latency := time.Since(start)
	if resp == nil {
		if err == nil {
			err = errors.New("no response")
		}
		if errors.Is(err, ErrEgressRefused) {
			// Never connected: a permanent refusal (the endpoint must change), not a network error to retry.
			return httpOutcome{class: classPermanent, err: shortError(err), latency: latency}
		}
		return httpOutcome{class: classRetry, err: shortError(err), latency: latency}
	}
	out := httpOutcome{class: classifyStatus(resp.StatusCode), statusCode: resp.StatusCode, latency: latency,
		response: readResponse(resp.Body)}
	_ = resp.Body.Close()
	if out.class != classDelivered {
		out.err = statusError(resp.StatusCode)
	}
	if out.class == classRetry {
		out.retryAfter, out.hasRetryAfter = ParseRetryAfter(resp.Header.Get("Retry-After"), d.opts.Clock())
	}
	return out
}

// readResponse reads at most maxResponseDrain bytes of an answer's body (within the attempt's deadline) and
// returns its start as text (ResponseText). A read error keeps what was read.
func readResponse(body io.Reader) string {
	head := make([]byte, MaxResponseBytes+utf8.UTFMax)
	n, _ := io.ReadFull(body, head)
	head = head[:n]
	rest, _ := io.Copy(io.Discard, io.LimitReader(body, maxResponseDrain-int64(n)))
	total := n + int(rest)
	return ResponseText(head, total, total < maxResponseDrain)
}

// endpoint looks dest up; a non-nil outcome says why no request can be made: permanent for an unknown or
// off destination, retry for a failed lookup.
func (d *Dispatcher) endpoint(ctx context.Context, dest mapping.Destination) (Endpoint, *httpOutcome) {
	ep, err := d.endpoints.Endpoint(ctx, dest)
	switch {
	case err == nil:
		return ep, nil
	case errors.Is(err, ErrUnknownDestination), errors.Is(err, ErrDestinationOff):
		return Endpoint{}, &httpOutcome{class: classPermanent, err: truncateError(err.Error())}
	}
	return Endpoint{}, &httpOutcome{class: classRetry, err: truncateError("endpoint lookup failed: " + err.Error())}
}

// truncateError bounds an error text to maxErrorLen.
func truncateError(s string) string {
	if len(s) > maxErrorLen {
		return s[:maxErrorLen]
	}
	return s
}

// deliver makes one attempt at m and records it (through rec, in a batch with the attempts that finish
// with it). It calls answered once the destination has answered (or failed to), before the attempt is
// recorded; not when shutdown cancelled the request.
func (d *Dispatcher) deliver(dctx context.Context, log *slog.Logger, rec *completer, m Message, answered func()) {
	started := d.opts.Clock()
	n := m.Attempts + 1
	var out httpOutcome
	ep, lookupFailed := d.endpoint(dctx, m.Destination)
	switch {
	case lookupFailed != nil:
		out = *lookupFailed
	case ep.URL == "":
		out = httpOutcome{class: classPermanent, err: "destination " + m.Destination.String() + " has no delivery URL (pull-only)"}
	default:
		out = d.post(dctx, m, ep, started)
	}
	m.Payload = nil // sent: an attempt waiting to be recorded does not keep its body

	rep := AttemptReport{
		MessageID: m.ID, ReferralID: m.ReferralID, Destination: m.Destination, Type: m.Type, Attempt: n,
		StatusCode: out.statusCode, Latency: out.latency, Error: out.err,
	}
	if out.statusCode == 0 && dctx.Err() != nil {
		// Shutdown cancelled this attempt before any answer: nothing is recorded; the message is released
		// to pending. (An answer that did arrive is recorded as usual.)
		rep.Outcome, rep.Error = OutcomeReleased, "cancelled by shutdown"
		d.report(log, rep)
		return
	}

	now := d.opts.Clock()
	res := AttemptResult{
		Attempt: Attempt{MessageID: m.ID, N: n, StartedAt: started, Latency: out.latency, StatusCode: out.statusCode,
			Error: out.err, Response: out.response},
		Owner: d.opts.Owner,
	}
	switch out.class {
	case classDelivered:
		res.State, rep.Outcome = StateDelivered, OutcomeDelivered
	case classPermanent:
		res.State, rep.Outcome = StateDead, OutcomeDead
	case classRetry:
		budgetFrom := m.BudgetFrom
		if budgetFrom.IsZero() {
			budgetFrom = m.CreatedAt
		}
		p := d.sched.plan(now, n, out.retryAfter, out.hasRetryAfter, budgetFrom)
		if p.dead {
			res.State, rep.Outcome = StateDead, OutcomeDead
			res.Attempt.Error = fmt.Sprintf("%s; retry budget of %s spent", out.err, d.opts.RetryBudget)
			rep.Error = res.Attempt.Error
		} else {
			res.State, rep.Outcome = StatePending, OutcomeRetry
			res.NextAttemptAt, rep.NextAttemptAt = p.next, p.next
		}
	}
	switch m.Destination.Kind {
	case mapping.DestinationService:
		switch res.State {
		case StateDelivered:
			res.Update = MarkDelivered
		case StateDead:
			res.Update = MarkDeliveryFailed
		case StatePending, StateInflight, StateCancelled, StateDiscarded:
		}
	case mapping.DestinationSubscription:
		res.Subscription = subscriptionChange(m.Destination.ID, res.State, res.Attempt.Error)
	}

	answered()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(dctx), storeCallTimeout)
	if res.State == StateDelivered && m.ReferralID != "" && d.opts.Audit != nil {
		res.Audit = d.disclosure(sctx, m, now)
	}
	err := rec.record(sctx, m.ID, now, res)
	if errors.Is(err, ErrNoChange) && res.Update != nil {
		// A store that aborts on ErrNoChange instead of skipping the update (the contract says skip): the
		// referral already says what the update would, so record the attempt without it rather than leave
		// the message to be delivered again when its lease expires.
		res.Update = nil
		err = rec.record(sctx, m.ID, now, res)
	}
	cancel()
	switch {
	case errors.Is(err, ErrLeaseLost):
		rep.Outcome = OutcomeLeaseLost
	case err != nil:
		rep.Outcome = OutcomeStoreError
		log.Error("outbox: recording an attempt failed; the message is retried when its lease expires",
			"message_id", m.ID, "referral_id", m.ReferralID, "destination", m.Destination.String(), "err", err)
	}
	d.report(log, rep)
}

// disclosure is the audit record of a delivered message about a referral, for the transaction that records
// its attempt: a webhook (the community service received the referral's data, as its sharing profile lets
// it) or a GP system's Subscription notification (resource Subscription/{id}: the practice's system
// received the referral's Task). The message id is the record's request id.
func (d *Dispatcher) disclosure(ctx context.Context, m Message, now time.Time) *Disclosure {
	r := AuditRecord{Chain: d.chain, At: now, RequestID: m.ID, ActorID: "socialrx", ActorRole: "system",
		Via: "webhook", Action: AuditSend, ResourceType: "Message", ResourceID: m.ID, ReferralID: m.ReferralID,
		ServiceID: m.Destination.ID}
	if m.Destination.Kind == mapping.DestinationSubscription {
		r.Via, r.ResourceType, r.ResourceID, r.ServiceID = "subscription", "Subscription", m.Destination.ID, ""
	}
	r.PracticeODS = m.PracticeODS
	if r.PracticeODS == "" {
		if ods, err := d.store.ReferralPractice(ctx, m.ReferralID); err == nil {
			r.PracticeODS = ods
		}
	}
	return &Disclosure{Instance: d.opts.Audit.instance, Record: r}
}

// subscriptionChange is what an attempt's outcome does to its Subscription (R4 Backport IG: status error): a
// notification (or handshake, or heartbeat) gone dead puts an active subscription in error, so that its owner
// sees it in a read and in $status, with the reason; a delivered one (after a replay or a re-activation)
// brings an errored subscription back to active. Nothing else changes its status (an off subscription stays
// off).
func subscriptionChange(id string, st MessageState, lastError string) *SubscriptionChange {
	switch st {
	case StateDead:
		return &SubscriptionChange{ID: id, From: SubscriptionActive, To: SubscriptionError, Error: lastError}
	case StateDelivered:
		return &SubscriptionChange{ID: id, From: SubscriptionError, To: SubscriptionActive}
	case StatePending, StateInflight, StateCancelled:
	}
	return nil
}

// report logs an attempt and tells the observer.
func (d *Dispatcher) report(log *slog.Logger, r AttemptReport) {
	level := slog.LevelInfo
	switch r.Outcome {
	case OutcomeDelivered:
		level = slog.LevelDebug // every attempt is in the store; successes are not worth a line each at scale
	case OutcomeRetry, OutcomeLeaseLost, OutcomeReleased:
		level = slog.LevelWarn
	case OutcomeDead, OutcomeStoreError:
		level = slog.LevelError
	}
	attrs := []slog.Attr{
		slog.String("message_id", r.MessageID),
		slog.String("referral_id", r.ReferralID),
		slog.String("destination", r.Destination.String()),
		slog.String("type", string(r.Type)),
		slog.Int("attempt", r.Attempt),
		slog.String("outcome", string(r.Outcome)),
		slog.Int("status", r.StatusCode),
		slog.Duration("latency", r.Latency),
	}
	if r.Error != "" {
		attrs = append(attrs, slog.String("error", r.Error))
	}
	if !r.NextAttemptAt.IsZero() {
		attrs = append(attrs, slog.Time("next_attempt_at", r.NextAttemptAt))
	}
	log.LogAttrs(context.Background(), level, "outbox delivery attempt", attrs...)
	if d.opts.Observer != nil {
		d.opts.Observer.ObserveAttempt(r)
	}
}
