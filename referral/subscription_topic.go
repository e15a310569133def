package referral

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
)

// Topic-based Subscriptions and channel extensions (Subscriptions R5 Backport IG 1.1.0, for R4). R4 has no
// SubscriptionTopic resource: the IG names a topic by its canonical URL in Subscription.criteria and carries
// the filter in the backport-filter-criteria extension on criteria (_criteria); servers advertise the topics
// they offer in the CapabilityStatement (capabilitystatement-subscriptiontopic-canonical). socialrx offers one
// topic, TopicPracticeTasks: every new version of a Task of one practice, with the filter
// Task?requester:identifier=https://fhir.nhs.uk/Id/ods-organization-code|ODS — exactly what the classic
// criteria select, so both kinds of Subscription behave the same.

// Backport IG canonical URLs socialrx reads.
const (
	// TopicPracticeTasks is socialrx's SubscriptionTopic canonical: Task changes of one practice.
	TopicPracticeTasks = "https://socialrx.dev/fhir/SubscriptionTopic/practice-task-changes"
	// BackportFilterCriteriaURL is the extension on Subscription.criteria holding a topic's filter.
	BackportFilterCriteriaURL = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria"
	// BackportHeartbeatPeriodURL is the channel extension asking for a heartbeat every N seconds.
	BackportHeartbeatPeriodURL = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period"
	// BackportTimeoutURL is the channel extension asking for a delivery timeout (not offered).
	BackportTimeoutURL = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-timeout"
	// BackportMaxCountURL is the channel extension bounding the events per notification (always met: one).
	BackportMaxCountURL = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-max-count"
)

// Heartbeat periods socialrx accepts (a heartbeat is sent within HeartbeatSweeper's interval of its time).
const (
	MinHeartbeatPeriod = time.Minute
	MaxHeartbeatPeriod = 24 * time.Hour
)

// criteriaWire is the part of a Subscription that says what it selects, and its channel's extensions.
type criteriaWire struct {
	Criteria  string `json:"criteria"`
	CriteriaX *struct {
		Extension []struct {
			URL         string `json:"url"`
			ValueString string `json:"valueString"`
		} `json:"extension"`
	} `json:"_criteria"`
	Channel struct {
		Extension []struct {
			URL              string          `json:"url"`
			ValueUnsignedInt json.RawMessage `json:"valueUnsignedInt"`
			ValuePositiveInt json.RawMessage `json:"valuePositiveInt"`
		} `json:"extension"`
	} `json:"channel"`
}

// subscriptionCriteria reads what a (schema-valid) Subscription selects: classic criteria
// (Task?requester:identifier=…|ODS) or socialrx's topic with that filter. It returns the practice (as
// configured for the client), the topic ("" for classic criteria) and the issues of a criteria that breaks
// the rules (422).
func subscriptionCriteria(cl config.Client, body []byte) (ods, topic string, issues []fhir.Issue) {
	var in criteriaWire
	if err := json.Unmarshal(body, &in); err != nil {
		return "", "", []fhir.Issue{ruleIssue("Subscription", "the Subscription could not be read")}
	}
	if !strings.HasPrefix(in.Criteria, "http://") && !strings.HasPrefix(in.Criteria, "https://") {
		ods, msg := criteriaPractice(cl, in.Criteria)
		if msg != "" {
			return "", "", []fhir.Issue{ruleIssue("Subscription.criteria", msg)}
		}
		if in.CriteriaX != nil && len(in.CriteriaX.Extension) > 0 {
			return "", "", []fhir.Issue{ruleIssue("Subscription.criteria.extension",
				"a filter-criteria extension belongs to a topic-based Subscription (criteria = "+TopicPracticeTasks+"); classic criteria carry their filter themselves")}
		}
		return ods, "", nil
	}
	if in.Criteria != TopicPracticeTasks {
		return "", "", []fhir.Issue{ruleIssue("Subscription.criteria",
			fmt.Sprintf("socialrx offers one SubscriptionTopic: %s (Task changes of a practice); see /fhir/metadata", TopicPracticeTasks))}
	}
	var filters []string
	if in.CriteriaX != nil {
		for _, e := range in.CriteriaX.Extension {
			if e.URL == BackportFilterCriteriaURL {
				filters = append(filters, e.ValueString)
			}
		}
	}
	want := "Task?requester:identifier=" + mapping.ODSOrganizationSystem + "|ODS for one of this client's practices"
	if len(filters) != 1 {
		return "", "", []fhir.Issue{ruleIssue("Subscription.criteria.extension", fmt.Sprintf(
			"a Subscription to %s needs exactly one filter: the %s extension on criteria (_criteria) with the value %s",
			TopicPracticeTasks, BackportFilterCriteriaURL, want))}
	}
	ods, msg := criteriaPractice(cl, filters[0])
	if msg != "" {
		return "", "", []fhir.Issue{ruleIssue("Subscription.criteria.extension", "the topic's filter: "+msg)}
	}
	return ods, TopicPracticeTasks, nil
}

// channelExtensions reads the backport channel extensions: the heartbeat period asked for (0: none) and the
// issues of the ones socialrx cannot honour (422): it never accepts and then ignores one.
func channelExtensions(body []byte) (time.Duration, []fhir.Issue) {
	var in criteriaWire
	if err := json.Unmarshal(body, &in); err != nil {
		return 0, []fhir.Issue{ruleIssue("Subscription", "the Subscription could not be read")}
	}
	var heartbeat time.Duration
	var issues []fhir.Issue
	for i, e := range in.Channel.Extension {
		at := "Subscription.channel.extension[" + strconv.Itoa(i) + "]"
		switch e.URL {
		case BackportHeartbeatPeriodURL:
			n, err := strconv.ParseInt(string(e.ValueUnsignedInt), 10, 64)
			d := time.Duration(n) * time.Second
			if err != nil || d < MinHeartbeatPeriod || d > MaxHeartbeatPeriod {
				issues = append(issues, ruleIssue(at, fmt.Sprintf("heartbeatPeriod must be valueUnsignedInt seconds from %d to %d",
					int(MinHeartbeatPeriod/time.Second), int(MaxHeartbeatPeriod/time.Second))))
				continue
			}
			heartbeat = d
		case BackportTimeoutURL:
			issues = append(issues, fhir.Issue{Severity: fhir.SeverityError, Code: fhir.CodeNotSupported, Expression: []string{at},
				Diagnostics: "a notification timeout is not offered: socialrx waits SOCIALRX_DELIVERY_TIMEOUT (10 s by default) for each attempt; leave the extension out"})
		case BackportMaxCountURL:
			if n, err := strconv.ParseInt(string(e.ValuePositiveInt), 10, 64); err != nil || n < 1 {
				issues = append(issues, ruleIssue(at, "maxCount must be a valuePositiveInt (socialrx sends one event per notification, so any maxCount is met)"))
			}
		}
	}
	return heartbeat, issues
}

// ruleIssue is a business-rule issue at expr.
func ruleIssue(expr, msg string) fhir.Issue {
	return fhir.Issue{Severity: fhir.SeverityError, Code: fhir.CodeBusinessRule, Diagnostics: msg, Expression: []string{expr}}
}
