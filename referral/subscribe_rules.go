package referral

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/outbox"
)

// The outbound rules of a Subscription's channel (README "Security"): where socialrx may be made to send, and
// what it may be made to send there. They are checked when the Subscription is made (422 naming the element),
// and the dispatcher checks the address again at every connection, after DNS (outbox.EgressPolicy).

// Channel header bounds.
const (
	maxChannelHeaders     = 8
	maxChannelHeaderBytes = 4096
)

// checkEndpoint requires an absolute https URL without credentials whose host is not a literal address the
// outbound policy refuses; plain http (and loopback) only when the directory allows loopback, and then only
// to a loopback host. A name is judged when socialrx connects, after DNS.
func checkEndpoint(raw string, allowLoopback bool) string {
	rule := "channel.endpoint must be an absolute https URL"
	if allowLoopback {
		rule += " (plain http only to a loopback host: localhost, 127.0.0.1, ::1)"
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return rule
	}
	if u.User != nil {
		return "channel.endpoint must not carry credentials; use channel.header (for example Authorization)"
	}
	host := u.Hostname()
	switch u.Scheme {
	case "https":
	case "http":
		if !allowLoopback || !config.LoopbackHost(host) {
			return rule + ": notifications carry patient data"
		}
		return ""
	default:
		return rule
	}
	policy := outbox.EgressPolicy{AllowLoopback: allowLoopback}
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		if err := policy.CheckAddr(a); err != nil {
			return "channel.endpoint must be a public address: " + strings.TrimPrefix(err.Error(), outbox.ErrEgressRefused.Error()+": ")
		}
	}
	if config.LoopbackHost(host) && !allowLoopback {
		return "channel.endpoint must not name this machine (" + host + "): socialrx does not send notifications to itself"
	}
	return ""
}

// checkHeader requires "Name: value" with a name of outbox.ChannelHeaders and a bounded value.
func checkHeader(h string) string {
	name, value, ok := strings.Cut(h, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.TrimSpace(value) == "" || strings.ContainsAny(h, "\r\n") {
		return `channel.header entries must be "Name: value"`
	}
	if len(h) > maxChannelHeaderBytes {
		return fmt.Sprintf("channel.header entries may be at most %d bytes", maxChannelHeaderBytes)
	}
	if !outbox.ChannelHeaderAllowed(name) {
		return fmt.Sprintf("channel.header may not set %s; it may set %s", name, strings.Join(outbox.ChannelHeaders(), ", "))
	}
	return ""
}

// checkHeaders checks every channel.header entry and their number, adding an issue per problem.
func checkHeaders(headers []string, add func(code fhir.IssueCode, expr, diag string)) {
	if len(headers) > maxChannelHeaders {
		add(fhir.CodeBusinessRule, "Subscription.channel.header", fmt.Sprintf("at most %d channel.header entries", maxChannelHeaders))
	}
	for i, h := range headers {
		if msg := checkHeader(h); msg != "" {
			add(fhir.CodeBusinessRule, fmt.Sprintf("Subscription.channel.header[%d]", i), msg)
		}
	}
}

// sealHeaders encrypts a new subscription's channel.header values for storage (outbox.Keyring), bound to its
// id. Without a key socialrx keeps no credentials: headers are refused (422).
func (s *Service) sealHeaders(sub *outbox.Subscription) error {
	if len(sub.Header) == 0 {
		return nil
	}
	if s.secrets == nil {
		return fhir.NewError(fault.Rule, fhir.CodeBusinessRule,
			"this server keeps no credentials: its operator has not set SOCIALRX_SECRET_KEY, so channel.header cannot be stored; leave it out or ask the operator",
			"Subscription.channel.header")
	}
	sealed := make([]string, len(sub.Header))
	for i, h := range sub.Header {
		v, err := s.secrets.Seal(h, outbox.SubscriptionHeaderContext(sub.ID))
		if err != nil {
			return fmt.Errorf("referral: seal channel.header: %w", err)
		}
		sealed[i] = v
	}
	sub.Header = sealed
	return nil
}

// subscriptionLimitError renders the store's cap refusal for the client.
func (s *Service) subscriptionLimitError(err error) error {
	if !errors.Is(err, outbox.ErrSubscriptionLimit) {
		return err
	}
	return fhir.NewError(fault.Rule, fhir.CodeBusinessRule,
		fmt.Sprintf("this client already has %d active Subscriptions, the most it may; DELETE one it no longer needs", s.maxSubs),
		"Subscription")
}
