package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/fhir/fhirtest"
)

func notificationSub(p PayloadContent) SubscriptionInfo {
	return SubscriptionInfo{ID: "sub-1", BaseURL: "https://socialrx.example/fhir", Status: "active", Payload: p}
}

// TestNotificationBundleGolden pins both payload contents, checks them against the R4 schema and the fhir
// package's validator, and checks the backport shape the GP side relies on.
func TestNotificationBundleGolden(t *testing.T) {
	t.Parallel()
	v := fhirtest.NewValidator(t)
	r := referralAt(t, StatusInProgress) // version 3
	now := testNow.Add(time.Hour)
	for _, p := range AllPayloadContents() {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			b, err := NotificationBundle(notificationSub(p), r, 7, now)
			if err != nil {
				t.Fatal(err)
			}
			v.AssertValid(t, b)
			if err := fhir.ValidateResource(b, "Bundle"); err != nil {
				t.Errorf("fhir.ValidateResource: %v\n%s", err, b)
			}
			again, err := NotificationBundle(notificationSub(p), r, 7, now)
			if err != nil || !bytes.Equal(again, b) {
				t.Errorf("rendering the same event twice differs")
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, "notification-"+string(p)+".json", got)
			entries := got["entry"].([]any)
			status := entries[0].(map[string]any)["resource"].(map[string]any)
			if got["type"] != "history" || status["resourceType"] != "Parameters" {
				t.Errorf("want a history Bundle led by a Parameters resource: %s", b)
			}
			want := map[PayloadContent]int{PayloadIDOnly: 1, PayloadFullResource: 2}[p]
			if len(entries) != want {
				t.Errorf("%d entries, want %d", len(entries), want)
			}
			for _, s := range []string{`"event-number"`, `"valueString":"7"`, `"focus"`, `"https://socialrx.example/fhir/Task/` + r.Record.TaskID + `"`,
				`"https://socialrx.example/fhir/Subscription/sub-1"`, `"event-notification"`, BackportStatusProfile} {
				if !strings.Contains(string(b), s) {
					t.Errorf("notification lacks %s", s)
				}
			}
		})
	}
}

// TestNotificationBundleRefusesBadInput is a table of the programmer errors NotificationBundle reports.
func TestNotificationBundleRefusesBadInput(t *testing.T) {
	t.Parallel()
	r := referralAt(t, StatusRequested)
	noTask := r
	noTask.Record.TaskID = ""
	for _, tc := range []struct {
		name string
		sub  SubscriptionInfo
		ref  Referral
		n    int64
	}{
		{"event 0", notificationSub(PayloadIDOnly), r, 0},
		{"no payload content", notificationSub(""), r, 1},
		{"unknown payload content", notificationSub("empty"), r, 1},
		{"no task id", notificationSub(PayloadFullResource), noTask, 1},
		{"no subscription id", SubscriptionInfo{Payload: PayloadIDOnly}, r, 1},
	} {
		if _, err := NotificationBundle(tc.sub, tc.ref, tc.n, testNow); !errors.Is(err, ErrBadInput) {
			t.Errorf("%s: %v, want ErrBadInput", tc.name, err)
		}
	}
}

// TestSubscriptionStatusQuery checks the $status shape: no event, the count, valid R4.
func TestSubscriptionStatusQuery(t *testing.T) {
	t.Parallel()
	s := notificationSub(PayloadIDOnly)
	s.EventsSinceStart = 12
	b, err := SubscriptionStatus(s, NotificationQueryStatus, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	fhirtest.NewValidator(t).AssertValid(t, b)
	if !strings.Contains(string(b), `{"name":"events-since-subscription-start","valueString":"12"}`) ||
		!strings.Contains(string(b), `"query-status"`) || strings.Contains(string(b), "notification-event") {
		t.Errorf("$status parameters: %s", b)
	}
	if _, err := SubscriptionStatus(s, "", "", nil); !errors.Is(err, ErrBadInput) {
		t.Errorf("zero notification type: %v", err)
	}
}

// TestNotificationEnums walks every value of the notification enums.
func TestNotificationEnums(t *testing.T) {
	t.Parallel()
	for _, p := range AllPayloadContents() {
		if !p.Valid() {
			t.Errorf("%q listed but invalid", p)
		}
	}
	for _, nt := range AllNotificationTypes() {
		if !nt.Valid() {
			t.Errorf("%q invalid", nt)
		}
	}
	// Heartbeats (and handshakes) are produced since issue 8; "empty" and other types are not.
	for _, bad := range []string{"", "empty", "query-event"} {
		if PayloadContent(bad).Valid() || NotificationType(bad).Valid() {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, e := range []EventType{EventNotification, EventHandshake, EventHeartbeat} {
		if e.Valid() {
			t.Errorf("%s is not a community webhook event type", e)
		}
	}
}

// TestHandshakeAndHeartbeatBundles: the handshake and heartbeat are history Bundles holding only a
// SubscriptionStatus of their type with the events numbered so far (no notification-event), the topic of a
// topic-based subscription and, in error, the error; both are valid R4.
func TestHandshakeAndHeartbeatBundles(t *testing.T) {
	t.Parallel()
	info := SubscriptionInfo{ID: "sub-1", BaseURL: "https://socialrx.example/fhir", Status: "active", Payload: PayloadIDOnly,
		EventsSinceStart: 7, Topic: "https://socialrx.dev/fhir/SubscriptionTopic/practice-task-changes"}
	now := time.Date(2026, 11, 21, 9, 0, 0, 123000, time.UTC)
	for _, tc := range []struct {
		typ    NotificationType
		render func(SubscriptionInfo, time.Time) (json.RawMessage, error)
	}{{NotificationHandshake, HandshakeBundle}, {NotificationHeartbeat, HeartbeatBundle}} {
		b, err := tc.render(info, now)
		if err != nil {
			t.Fatal(err)
		}
		var bundle struct {
			ResourceType, Type, Timestamp string
			Entry                         []struct {
				Resource json.RawMessage
				Request  struct{ Method, URL string }
			}
		}
		if err := json.Unmarshal(b, &bundle); err != nil || bundle.ResourceType != "Bundle" || bundle.Type != "history" || len(bundle.Entry) != 1 {
			t.Fatalf("%s: %s", tc.typ, b)
		}
		st := string(bundle.Entry[0].Resource)
		for _, want := range []string{`"valueCode":"` + string(tc.typ) + `"`, `"events-since-subscription-start","valueString":"7"`,
			`"name":"topic","valueCanonical":"https://socialrx.dev/fhir/SubscriptionTopic/practice-task-changes"`} {
			if !strings.Contains(st, want) {
				t.Errorf("%s status lacks %s: %s", tc.typ, want, st)
			}
		}
		if strings.Contains(st, "notification-event") || bundle.Entry[0].Request.URL != "https://socialrx.example/fhir/Subscription/sub-1/$status" {
			t.Errorf("%s: %s", tc.typ, b)
		}
		if err := fhir.ValidateResource(b, "Bundle"); err != nil {
			t.Errorf("%s is not valid R4: %v", tc.typ, err)
		}
	}
	a, _ := HeartbeatBundle(info, now)
	c, _ := HeartbeatBundle(info, now.Add(time.Minute))
	if string(a) == string(c) {
		t.Error("two heartbeats have the same id")
	}
	info.Status, info.Error = "error", "HTTP 404 Not Found"
	st, err := SubscriptionStatus(info, NotificationQueryStatus, "", nil)
	if err != nil || !strings.Contains(string(st), `"name":"error","valueCodeableConcept":{"text":"HTTP 404 Not Found"}`) {
		t.Errorf("status in error: %s %v", st, err)
	}
	if _, err := HandshakeBundle(SubscriptionInfo{ID: "x"}, now); err == nil {
		t.Error("a handshake without a payload content was rendered")
	}
}
