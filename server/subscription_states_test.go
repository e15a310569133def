package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fhir/fhirtest"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
)

// gpEndpoint is a GP system's rest-hook endpoint on loopback that answers every request with the status it is
// set to (200 by default) and reports each request (accepted or not) on got.
type gpEndpoint struct {
	url    string
	answer atomic.Int32
	got    chan delivery
}

func newGPEndpoint(t *testing.T) *gpEndpoint {
	e := &gpEndpoint{got: make(chan delivery, 256)}
	e.answer.Store(http.StatusOK)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		e.got <- delivery{path: r.URL.Path, header: r.Header.Clone(), body: body}
		w.WriteHeader(int(e.answer.Load()))
	}))
	t.Cleanup(ts.Close)
	e.url = ts.URL
	return e
}

// status reads a notification's SubscriptionStatus.
func notificationStatus(t *testing.T, d delivery) map[string]string {
	t.Helper()
	var b notification
	if err := json.Unmarshal(d.body, &b); err != nil || len(b.Entry) == 0 {
		t.Fatalf("not a notification: %s", short(d.body))
	}
	return statusParams(t, b.Entry[0].Resource)
}

// subscriptionState reads a Subscription and its $status.
func subscriptionState(t *testing.T, h *harness, token, id string) (map[string]any, map[string]string) {
	t.Helper()
	r := h.do(http.MethodGet, "/fhir/Subscription/"+id, token, nil)
	if r.status != http.StatusOK {
		t.Fatalf("read Subscription/%s: %d %s", id, r.status, short(r.body))
	}
	st := h.do(http.MethodPost, "/fhir/Subscription/"+id+"/$status", token, nil)
	var b notification
	if err := json.Unmarshal(st.body, &b); st.status != http.StatusOK || err != nil || len(b.Entry) != 1 {
		t.Fatalf("POST $status: %d %s", st.status, short(st.body))
	}
	return r.json(t), statusParams(t, b.Entry[0].Resource)
}

// TestSubscriptionErrorAndRecovery: a notification that goes dead (the handshake, here: the endpoint answers
// 404) puts the Subscription in error, visible in a read and in $status with why; later changes are numbered
// and wait, they do not stall silently; the owner fixes its endpoint and re-activates the subscription by PUT
// (status requested): the dead handshake is replayed and everything follows in order. A second failure and a
// re-activation by PATCH do the same. Deleted, it reads as 410.
func TestSubscriptionErrorAndRecovery(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ep := newGPEndpoint(t)
	ep.answer.Store(http.StatusNotFound)
	attempts := startObservedDispatcher(t, h)
	sub := createSubscription(t, h, tokGP, subscriptionBody(gpCriteria, ep.url+"/hook", "id-only"))
	id := sub["id"].(string)
	first := waitFor(t, ep.got, "the handshake")
	if p := notificationStatus(t, first); p["type"] != "handshake" || p["events-since-subscription-start"] != "0" {
		t.Fatalf("first message: %v", p)
	}
	// The dead handshake puts it in error; reads and $status say so, and why.
	if a := waitFor(t, attempts, "the handshake's attempt"); a.Outcome != outbox.OutcomeDead || a.Type != mapping.EventHandshake {
		t.Fatalf("handshake attempt: %+v", a)
	}
	read, st := subscriptionState(t, h, tokGP, id)
	if read["status"] != "error" || read["error"] != "HTTP 404 Not Found" || st["status"] != "error" || st["error"] != "HTTP 404 Not Found" {
		t.Fatalf("after a dead handshake: read %v, $status %v", read, st)
	}
	// Changes while in error are numbered and queued, not lost and not sent.
	task := refer(h, tokGP, "walking-group-performer.json").task
	if r := h.do(http.MethodGet, "/fhir/Task/"+task, tokGP, nil); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	_, st = subscriptionState(t, h, tokGP, id)
	if st["events-since-subscription-start"] != "1" || st["status"] != "error" {
		t.Errorf("in error after a change: %v", st)
	}
	select {
	case d := <-ep.got:
		t.Fatalf("a notification was sent past the dead handshake: %s", short(d.body))
	default:
	}

	// Re-activation must be by the owner, with nothing else changed.
	body := func(status string, mod func(map[string]any)) []byte {
		m := h.do(http.MethodGet, "/fhir/Subscription/"+id, tokGP, nil).json(t)
		m["status"] = status
		if mod != nil {
			mod(m)
		}
		return mustMarshal(t, m)
	}
	for _, c := range []struct {
		name   string
		token  string
		body   []byte
		status int
		expr   string
	}{
		{"another endpoint", tokGP, body("requested", func(m map[string]any) { m["channel"].(map[string]any)["endpoint"] = "https://elsewhere.example/hook" }), 422, "Subscription.channel.endpoint"},
		{"new headers", tokGP, body("requested", func(m map[string]any) { m["channel"].(map[string]any)["header"] = []string{"Authorization: Bearer x"} }), 422, "Subscription.channel.header"},
		{"another reason", tokGP, body("requested", func(m map[string]any) { m["reason"] = "other" }), 422, "Subscription.reason"},
		{"status off", tokGP, body("off", nil), 422, "Subscription.status"},
		{"another id", tokGP, body("requested", func(m map[string]any) { m["id"] = "other" }), 400, "Subscription.id"},
		{"another GP client", tokGP2, body("requested", nil), 404, ""},
		{"not a Subscription", tokGP, []byte(`{"resourceType":"Task","status":"requested","intent":"order"}`), 400, ""},
	} {
		r := h.do(http.MethodPut, "/fhir/Subscription/"+id, c.token, c.body)
		if r.status != c.status || (c.expr != "" && !hasExpression(issues(t, r), c.expr)) {
			t.Errorf("%s: %d %s; want %d naming %s", c.name, r.status, short(r.body), c.status, c.expr)
		}
	}
	ep.answer.Store(http.StatusOK)
	r := h.do(http.MethodPut, "/fhir/Subscription/"+id, tokGP, body("requested", nil))
	if r.status != http.StatusOK || r.json(t)["status"] != "active" || r.json(t)["error"] != nil {
		t.Fatalf("re-activate by PUT: %d %s", r.status, short(r.body))
	}
	// The replayed handshake (same webhook-id), then notification 1.
	again := waitFor(t, ep.got, "the replayed handshake")
	if again.header.Get("webhook-id") != first.header.Get("webhook-id") || notificationStatus(t, again)["type"] != "handshake" {
		t.Errorf("replayed: %v %s", again.header, short(again.body))
	}
	n1 := waitFor(t, ep.got, "notification 1")
	if p := notificationStatus(t, n1); p["event.event-number"] != "1" || !strings.HasSuffix(p["event.focus"], "/Task/"+task) {
		t.Errorf("notification 1: %v", p)
	}

	// Broken again: notification 2 goes dead, error again; PATCH re-activates and it arrives.
	ep.answer.Store(http.StatusGone)
	if r := setStatus(h, tokWalks, refer2ids(t, h, mustSR(t, h, task)).referral, `{"status": "received"}`); r.status != http.StatusOK {
		t.Fatalf("community move: %d", r.status)
	}
	dead := waitFor(t, ep.got, "notification 2 (refused)")
	for a := range attempts {
		if a.MessageID == dead.header.Get("webhook-id") {
			if a.Outcome != outbox.OutcomeDead {
				t.Fatalf("notification 2's attempt: %+v", a)
			}
			break
		}
	}
	if read, _ = subscriptionState(t, h, tokGP, id); read["status"] != "error" || read["error"] != "HTTP 410 Gone" {
		t.Fatalf("after notification 2 went dead: %v", read)
	}
	ep.answer.Store(http.StatusOK)
	r = h.do(http.MethodPatch, "/fhir/Subscription/"+id, tokGP, []byte(`[{"op": "replace", "path": "/status", "value": "requested"}]`),
		"Content-Type: application/json-patch+json")
	if r.status != http.StatusOK || r.json(t)["status"] != "active" {
		t.Fatalf("re-activate by PATCH: %d %s", r.status, short(r.body))
	}
	n2 := waitFor(t, ep.got, "notification 2 replayed")
	if n2.header.Get("webhook-id") != dead.header.Get("webhook-id") || notificationStatus(t, n2)["event.event-number"] != "2" {
		t.Errorf("notification 2: %s", short(n2.body))
	}
	// Re-activating an active subscription changes nothing.
	if r := h.do(http.MethodPut, "/fhir/Subscription/"+id, tokGP, body("requested", nil)); r.status != http.StatusOK || r.json(t)["status"] != "active" {
		t.Errorf("re-activate an active one: %d %s", r.status, short(r.body))
	}

	// Deleted: 410 on read, $status and update; DELETE again is harmless.
	if r := h.do(http.MethodDelete, "/fhir/Subscription/"+id, tokGP, nil); r.status != http.StatusOK {
		t.Fatalf("delete: %d", r.status)
	}
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/fhir/Subscription/" + id},
		{http.MethodGet, "/fhir/Subscription/" + id + "/$status"},
		{http.MethodPut, "/fhir/Subscription/" + id},
	} {
		var b []byte
		if c.method == http.MethodPut {
			b = body("requested", nil)
		}
		r := h.do(c.method, c.path, tokGP, b)
		if r.status != http.StatusGone || issues(t, r)[0].Code != "deleted" {
			t.Errorf("%s %s after delete: %d %s; want 410", c.method, c.path, r.status, short(r.body))
		}
	}
	if r := h.do(http.MethodGet, "/fhir/Subscription/"+id, tokAdmin, nil); r.status != http.StatusGone {
		t.Errorf("admin read after delete: %d", r.status)
	}
	if r := h.do(http.MethodDelete, "/fhir/Subscription/"+id, tokGP, nil); r.status != http.StatusOK {
		t.Errorf("delete again: %d", r.status)
	}
}

// mustSR is the ServiceRequest id of a Task.
func mustSR(t *testing.T, h *harness, task string) string {
	t.Helper()
	ref, err := h.store.GetReferral(t.Context(), task)
	if err != nil {
		t.Fatal(err)
	}
	return ref.Record.ServiceRequestID
}

// topicSubscription is a topic-based Subscription (Backport IG) to socialrx's topic with filter and channel
// extensions.
func topicSubscription(topic, filter, endpoint string, channelExt ...map[string]any) []byte {
	sub := map[string]any{
		"resourceType": "Subscription",
		"meta":         map[string]any{"profile": []string{"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"}},
		"status":       "requested", "reason": "Keep our record in step", "criteria": topic,
		"channel": map[string]any{"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
			"_payload": map[string]any{"extension": []any{map[string]any{
				"url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content", "valueCode": "id-only"}}}},
	}
	if filter != "" {
		sub["_criteria"] = map[string]any{"extension": []any{map[string]any{"url": referral.BackportFilterCriteriaURL, "valueString": filter}}}
	}
	if len(channelExt) > 0 {
		sub["channel"].(map[string]any)["extension"] = channelExt
	}
	b, err := json.Marshal(sub)
	if err != nil {
		panic(err)
	}
	return b
}

// TestTopicSubscriptionHeartbeatsAndStatus: a topic-based Subscription (socialrx's topic with a practice filter)
// is accepted beside classic criteria; its handshake and notifications name the topic; the heartbeat it asks for
// is sent once a period passes in silence (the sweeper on the harness's clock), and none before; requests
// socialrx cannot honour are 422 naming the element. The type-level $status answers for the caller's
// subscriptions by id and status.
func TestTopicSubscriptionHeartbeatsAndStatus(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ep := newGPEndpoint(t)
	attempts := startObservedDispatcher(t, h)
	filter := gpCriteria
	heartbeat := map[string]any{"url": referral.BackportHeartbeatPeriodURL, "valueUnsignedInt": 60}
	for _, c := range []struct {
		name string
		body []byte
		expr string
	}{
		{"another topic", topicSubscription("https://example.org/SubscriptionTopic/x", filter, ep.url), "Subscription.criteria"},
		{"no filter", topicSubscription(referral.TopicPracticeTasks, "", ep.url), "Subscription.criteria.extension"},
		{"another practice's filter", topicSubscription(referral.TopicPracticeTasks, "Task?requester:identifier="+odsSystemURL+"|B82002", ep.url), "Subscription.criteria.extension"},
		{"heartbeat too often", topicSubscription(referral.TopicPracticeTasks, filter, ep.url, map[string]any{"url": referral.BackportHeartbeatPeriodURL, "valueUnsignedInt": 10}), "Subscription.channel.extension[0]"},
		{"a timeout", topicSubscription(referral.TopicPracticeTasks, filter, ep.url, map[string]any{"url": referral.BackportTimeoutURL, "valueUnsignedInt": 30}), "Subscription.channel.extension[0]"},
		{"classic criteria with a filter extension", []byte(strings.Replace(string(topicSubscription(referral.TopicPracticeTasks, filter, ep.url)),
			`"criteria":"`+referral.TopicPracticeTasks+`"`, `"criteria":"`+gpCriteria+`"`, 1)), "Subscription.criteria.extension"},
	} {
		r := h.do(http.MethodPost, "/fhir/Subscription", tokGP, c.body)
		if r.status != http.StatusUnprocessableEntity || !hasExpression(issues(t, r), c.expr) {
			t.Errorf("%s: %d %s; want 422 naming %s", c.name, r.status, short(r.body), c.expr)
		}
	}
	maxCount := map[string]any{"url": referral.BackportMaxCountURL, "valuePositiveInt": 5}
	sub := createSubscription(t, h, tokGP, topicSubscription(referral.TopicPracticeTasks, filter, ep.url+"/topic", heartbeat, maxCount))
	id := sub["id"].(string)
	if sub["criteria"] != referral.TopicPracticeTasks {
		t.Errorf("criteria %v", sub["criteria"])
	}
	hs := waitFor(t, ep.got, "the handshake")
	if p := notificationStatus(t, hs); p["type"] != "handshake" || p["topic"] != referral.TopicPracticeTasks {
		t.Errorf("handshake: %v", p)
	}
	if err := h.v.Validate(t, hs.body); err != nil {
		t.Errorf("handshake is not valid R4: %v", err)
	}
	if a := waitFor(t, attempts, "the handshake recorded"); a.Outcome != outbox.OutcomeDelivered {
		t.Fatalf("handshake: %+v", a)
	}
	sweeper := referral.HeartbeatSweeper{Store: h.store, Clock: h.now}
	if n, err := sweeper.SweepOnce(t.Context()); err != nil || n != 0 {
		t.Fatalf("a sweep within the period: %d %v", n, err)
	}
	h.clock.Add((61 * time.Second).Microseconds())
	if n, err := sweeper.SweepOnce(t.Context()); err != nil || n != 1 {
		t.Fatalf("a sweep after the period: %d %v", n, err)
	}
	hb := waitFor(t, ep.got, "the heartbeat")
	if p := notificationStatus(t, hb); p["type"] != "heartbeat" || p["events-since-subscription-start"] != "0" || p["topic"] != referral.TopicPracticeTasks {
		t.Errorf("heartbeat: %v", p)
	}
	if err := h.v.Validate(t, hb.body); err != nil {
		t.Errorf("heartbeat is not valid R4: %v", err)
	}
	refer(h, tokGP, "walking-group-performer.json")
	n1 := waitFor(t, ep.got, "notification 1")
	if p := notificationStatus(t, n1); p["type"] != "event-notification" || p["event.event-number"] != "1" || p["topic"] != referral.TopicPracticeTasks {
		t.Errorf("notification: %v", p)
	}
	// Type-level $status: the caller's subscriptions, by id or status.
	classic := createSubscription(t, h, tokGP, subscriptionBody(gpCriteria, ep.url+"/classic", "id-only"))["id"].(string)
	other := createSubscription(t, h, tokGP2, subscriptionBody("Task?requester:identifier="+odsSystemURL+"|B82002", ep.url+"/other", "id-only"))["id"].(string)
	statuses := func(method, query string, body []byte, hdr ...string) (int, []map[string]string) {
		t.Helper()
		r := h.do(method, "/fhir/Subscription/$status"+query, tokGP, body, hdr...)
		var b notification
		if r.status != http.StatusOK {
			return r.status, nil
		}
		if err := json.Unmarshal(r.body, &b); err != nil {
			t.Fatal(err)
		}
		var out []map[string]string
		for _, e := range b.Entry {
			out = append(out, statusParams(t, e.Resource))
		}
		return r.status, out
	}
	if st, all := statuses(http.MethodGet, "", nil); st != 200 || len(all) != 2 {
		t.Errorf("type-level $status: %d %v", st, all)
	}
	if st, one := statuses(http.MethodGet, "?id="+classic, nil); st != 200 || len(one) != 1 || !strings.HasSuffix(one[0]["subscription"], "/Subscription/"+classic) {
		t.Errorf("$status?id: %d %v", st, one)
	}
	params := []byte(`{"resourceType":"Parameters","parameter":[{"name":"id","valueString":"` + id + `"},{"name":"status","valueCode":"active"}]}`)
	if st, one := statuses(http.MethodPost, "", params); st != 200 || len(one) != 1 || !strings.HasSuffix(one[0]["subscription"], "/Subscription/"+id) || one[0]["events-since-subscription-start"] != "1" {
		t.Errorf("POST $status with Parameters: %d %v", st, one)
	}
	if st, none := statuses(http.MethodGet, "?status=error", nil); st != 200 || len(none) != 0 {
		t.Errorf("$status?status=error: %d %v", st, none)
	}
	for _, q := range []string{"?id=" + other, "?status=bogus", "?colour=red"} {
		if st, _ := statuses(http.MethodGet, q, nil); st == http.StatusOK {
			t.Errorf("$status%s: 200, want a refusal", q)
		}
	}
	if r := h.do(http.MethodPost, "/fhir/Subscription/"+id+"/$status", tokGP, []byte(`{"resourceType":"Parameters","parameter":[{"valueString":"x"}]}`)); r.status != http.StatusBadRequest {
		t.Errorf("POST $status with an invalid Parameters resource: %d %s", r.status, short(r.body))
	}
	if r := h.do(http.MethodPost, "/fhir/Subscription/"+id+"/$status", tokGP, []byte(`{"resourceType":"Parameters"}`)); r.status != http.StatusOK {
		t.Errorf("POST $status with an empty Parameters resource: %d %s", r.status, short(r.body))
	}
}
