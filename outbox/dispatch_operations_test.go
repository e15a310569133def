package outbox_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/outbox"
)

// TestDispatchKeepsReceiverAnswer: the start of each answer's body is kept with its attempt, as text and
// bounded: a JSON refusal whole, a long page cut at MaxResponseBytes with its size, a binary body described,
// never kept; the answer never reaches the log.
func TestDispatchKeepsReceiverAnswer(t *testing.T) {
	t.Parallel()
	refusal := `{"error":"unknown_service_code","message":"we do not take code 871731000000106 any more"}`
	long := strings.Repeat("é", 3000) // 6000 bytes of two-byte runes: the cut at 1024 bytes falls between runes
	bodies := map[string][]byte{"json": []byte(refusal), "long": []byte(long), "binary": {0x89, 'P', 'N', 'G', 0, 1, 2, 3}}
	e := newEnv(t)
	for name, body := range bodies {
		rc := newReceiver(t, e.clock.Now, func(_ int, _ hit, w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = w.Write(body)
		})
		e.serve(name, rc)
	}
	ids := map[string]string{}
	for name := range bodies {
		ids[name] = e.refer("r-"+name, created(name))[0]
	}
	r := e.start(nil)
	for _, id := range ids {
		r.expect(id, outbox.OutcomeDead, http.StatusUnprocessableEntity)
	}
	got := func(name string) string {
		d := e.message(ids[name])
		if len(d.Attempts) != 1 {
			t.Fatalf("%s: %d attempts", name, len(d.Attempts))
		}
		return d.Attempts[0].Response
	}
	if g := got("json"); g != refusal {
		t.Errorf("JSON answer kept as %q, want %q", g, refusal)
	}
	wantLong := strings.Repeat("é", outbox.MaxResponseBytes/2) + "… (6000 bytes in all)"
	if g := got("long"); g != wantLong {
		t.Errorf("long answer kept as %q…, want the first %d bytes and the size", g[:min(len(g), 40)], outbox.MaxResponseBytes)
	}
	if g := got("binary"); g != "(binary response body, 8 bytes; not kept)" {
		t.Errorf("binary answer kept as %q", g)
	}
	if logs := e.logs.String(); strings.Contains(logs, "871731000000106") || strings.Contains(logs, "ééé") {
		t.Errorf("a receiver's answer reached the log:\n%s", logs)
	}
}

// TestResponseText walks the rules of what is kept of an answer.
func TestResponseText(t *testing.T) {
	t.Parallel()
	kb := outbox.MaxResponseBytes
	cut := bytes.Repeat([]byte("a"), kb-1)
	cut = append(cut, "€x"...) // the three-byte € straddles the limit: dropped whole
	for _, tc := range []struct {
		name  string
		body  []byte
		total int
		whole bool
		want  string
	}{
		{"empty", nil, 0, true, ""},
		{"text", []byte("Service Unavailable\r\n\tretry later"), 33, true, "Service Unavailable\r\n\tretry later"},
		{"rune cut by the limit", cut, len(cut), true, strings.Repeat("a", kb-1) + "… (1027 bytes in all)"},
		{"read stopped early", []byte("abc"), 65536, false, "abc… (more than 65536 bytes in all)"},
		{"invalid UTF-8", []byte("ok\xffno"), 5, true, "(binary response body, 5 bytes; not kept)"},
		{"NUL", []byte("a\x00b"), 3, true, "(binary response body, 3 bytes; not kept)"},
		{"escape sequence", []byte("\x1b[31mred"), 8, true, "(binary response body, 8 bytes; not kept)"},
	} {
		if got := outbox.ResponseText(tc.body, tc.total, tc.whole); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestDispatchPausedDestination: with a dispatcher running, a paused destination gets no attempt, however
// long the clock runs past its messages' due times and retry budget, while another destination is served; on
// resume its messages are delivered, in order, without going dead.
func TestDispatchPausedDestination(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	walks, debt := newReceiver(t, e.clock.Now, nil), newReceiver(t, e.clock.Now, nil)
	e.serve("walks", walks)
	e.serve("debt", debt)
	ctx := context.Background()
	if _, _, err := e.store.PauseDestination(ctx, outbox.Pause{Destination: service("walks"), PausedAt: e.clock.Now(),
		PausedBy: "ops", Reason: "receiver down"}); err != nil {
		t.Fatal(err)
	}
	first := e.refer("r1", created("walks"), ev{dest: service("walks"), typ: "referral.updated"})
	r := e.start(func(o *outbox.DispatcherOptions) { o.RetryBudget = time.Hour })
	// Four hours pass, far beyond the budget; another service's referral is delivered meanwhile.
	e.clock.Advance(4 * time.Hour)
	other := e.refer("r2", created("debt"))
	r.expect(other[0], outbox.OutcomeDelivered, http.StatusNoContent)
	debt.next(t)
	select {
	case h := <-walks.hits:
		t.Fatalf("paused walks received %s", h.ID)
	default:
	}
	for _, id := range first {
		if d := e.message(id); d.Message.State != outbox.StatePending || len(d.Attempts) != 0 {
			t.Fatalf("%s while paused: %s, %d attempts", id, d.Message.State, len(d.Attempts))
		}
	}
	if _, err := e.store.ResumeDestination(ctx, service("walks"), e.clock.Now(), "ops"); err != nil {
		t.Fatal(err)
	}
	r.d.Wake()
	r.expect(first[0], outbox.OutcomeDelivered, http.StatusNoContent)
	r.expect(first[1], outbox.OutcomeDelivered, http.StatusNoContent)
	if h1, h2 := walks.next(t), walks.next(t); h1.ID != first[0] || h2.ID != first[1] {
		t.Errorf("walks received %s then %s, want %s then %s", h1.ID, h2.ID, first[0], first[1])
	}
}

// TestDispatchLogLinesCarryIDs: every log line the dispatcher writes about a delivery carries the message id
// and the referral id (an engineer follows one delivery with grep).
func TestDispatchLogLinesCarryIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, e.clock.Now, answer("", http.StatusServiceUnavailable, http.StatusBadRequest))
	e.serve("walks", rc)
	ids := e.refer("r1", created("walks"))
	r := e.start(nil)
	r.expect(ids[0], outbox.OutcomeRetry, http.StatusServiceUnavailable)
	e.clock.Advance(time.Hour)
	r.d.Wake()
	r.expect(ids[0], outbox.OutcomeDead, http.StatusBadRequest)
	var lines int
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if !strings.Contains(line, "delivery") {
			continue
		}
		lines++
		if !strings.Contains(line, "message_id="+ids[0]) || !strings.Contains(line, "referral_id=r1") {
			t.Errorf("delivery log line without its ids: %s", line)
		}
	}
	if lines < 2 {
		t.Errorf("%d delivery log lines, want one per attempt", lines)
	}
}

// TestDispatchHeldMessagesOfAPausedServiceGetNoAttempt: a message claimed ahead for a service that answered
// (held until one of its requests is answered) is not sent if the service is paused while it waits, a second
// or more after its claim: the pause holds it as it holds the service's pending messages, and it is delivered,
// in order, after the resume. Before, a held message was started whenever room came, pause or not.
func TestDispatchHeldMessagesOfAPausedServiceGetNoAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newGatedReceiver(t)
	e.serve("walks", rc.receiver)
	ctx := context.Background()
	var ids []string
	for i := range 4 {
		ids = append(ids, e.refer(fmt.Sprintf("r%d", i), created("walks"))...)
	}
	r := e.start(func(o *outbox.DispatcherOptions) { o.Concurrency, o.PerDestination = 4, 1 })
	if h := rc.next(t); h.ID != ids[0] {
		t.Fatalf("first request %s, want %s", h.ID, ids[0])
	}
	rc.gate <- struct{}{} // answered: the next claim takes one more ahead
	r.expect(ids[0], outbox.OutcomeDelivered, http.StatusNoContent)
	if h := rc.next(t); h.ID != ids[1] {
		t.Fatalf("second request %s, want %s", h.ID, ids[1])
	}
	if d := e.message(ids[2]); d.Message.State != outbox.StateInflight {
		t.Fatalf("%s is %s while %s is being sent, want inflight (claimed ahead, held)", ids[2], d.Message.State, ids[1])
	}
	if _, _, err := e.store.PauseDestination(ctx, outbox.Pause{Destination: service("walks"), PausedAt: e.clock.Now(),
		PausedBy: "ops", Reason: "receiver down"}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Second)
	rc.gate <- struct{}{} // room for the held message, but its service is paused now
	r.expect(ids[1], outbox.OutcomeDelivered, http.StatusNoContent)
	select {
	case h := <-rc.hits:
		t.Fatalf("paused walks received %s", h.ID)
	case <-time.After(300 * time.Millisecond):
	}
	if d := e.message(ids[2]); len(d.Attempts) != 0 {
		t.Fatalf("%s: %d attempts while its service was paused, want none", ids[2], len(d.Attempts))
	}
	if !strings.Contains(e.logs.String(), "held message's destination was paused") {
		t.Error("no log line says why the held message was not sent")
	}
	e.clock.Advance(2 * time.Hour) // the held message's lease runs out: it is claimed again, first, on resume
	if _, err := e.store.ResumeDestination(ctx, service("walks"), e.clock.Now(), "ops"); err != nil {
		t.Fatal(err)
	}
	r.d.Wake()
	for _, id := range ids[2:] {
		if h := rc.next(t); h.ID != id {
			t.Fatalf("after the resume: request %s, want %s", h.ID, id)
		}
		rc.gate <- struct{}{}
		r.expect(id, outbox.OutcomeDelivered, http.StatusNoContent)
	}
}
