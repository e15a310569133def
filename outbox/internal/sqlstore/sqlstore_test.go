package sqlstore

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

var sqliteD = Dialect{Name: "sqlite"}

func TestTimes(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 3, 3, 9, 0, 0, 123456789, time.FixedZone("x", 3600))
	tests := []struct {
		name string
		in   time.Time
		us   int64
		back time.Time
	}{
		{"zero", time.Time{}, 0, time.Time{}},
		{"truncated to UTC micros", at, at.UnixMicro(), time.Date(2025, 3, 3, 8, 0, 0, 123456000, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Micros(tt.in); got != tt.us {
				t.Errorf("Micros = %d, want %d", got, tt.us)
			}
			if got := Norm(tt.in); !got.Equal(tt.back) || got.Location() != tt.back.Location() {
				t.Errorf("Norm = %v, want %v", got, tt.back)
			}
		})
	}
}

func TestClampLimitAndPlaceholders(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want int }{{-1, DefaultLimit}, {0, DefaultLimit}, {1, 1}, {MaxLimit, MaxLimit}, {MaxLimit + 1, MaxLimit}} {
		if got := ClampLimit(tt.in); got != tt.want {
			t.Errorf("ClampLimit(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
	for n, want := range []string{"", "?", "?, ?", "?, ?, ?"} {
		if got := Placeholders(n); got != want {
			t.Errorf("Placeholders(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestReferralSearch(t *testing.T) {
	t.Parallel()
	at := time.UnixMicro(1_000_000).UTC()
	tests := []struct {
		name      string
		q         outbox.ReferralQuery
		where     string
		args      []any
		limit     int
		matchNone bool
	}{
		{name: "all", where: "", args: []any{DefaultLimit + 1}, limit: DefaultLimit},
		{name: "empty practices", q: outbox.ReferralQuery{Practices: []string{}}, matchNone: true},
		{name: "every filter", q: outbox.ReferralQuery{ID: "r", TaskID: "t", ServiceRequestID: "s",
			Identifier: &mapping.Identifier{System: "sys", Value: "v"}, Practices: []string{"A", "B"}, ServiceID: "svc",
			Statuses: []mapping.TaskStatus{mapping.StatusRequested}, PatientRef: "p", PatientNHSNumber: "n", RequesterRef: "q",
			UpdatedAfter: at, UpdatedFrom: at, UpdatedBefore: at, UpdatedUntil: at,
			After: &outbox.Cursor{UpdatedAt: at, ID: "c"}, Limit: 5},
			where: " WHERE id = ? AND task_id = ? AND service_request_id = ? AND id IN (SELECT referral_id FROM " +
				"referral_identifiers WHERE system = ? AND value = ?) AND practice_ods IN (?, ?) AND service_id = ? AND " +
				"status IN (?) AND patient_ref = ? AND patient_nhs_number = ? AND requester_ref = ? AND updated_at > ? AND " +
				"updated_at >= ? AND updated_at < ? AND updated_at <= ? AND (updated_at, id) > (?, ?)",
			args: []any{"r", "t", "s", "sys", "v", "A", "B", "svc", "requested", "p", "n", "q",
				int64(1_000_000), int64(1_000_000), int64(1_000_000), int64(1_000_000), int64(1_000_000), "c", 6},
			limit: 5},
		{name: "identifier value only", q: outbox.ReferralQuery{Identifier: &mapping.Identifier{Value: "v"}},
			where: " WHERE id IN (SELECT referral_id FROM referral_identifiers WHERE value = ?)",
			args:  []any{"v", DefaultLimit + 1}, limit: DefaultLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			query, args, limit, none := ReferralSearch(tt.q)
			if none != tt.matchNone {
				t.Fatalf("none = %v, want %v", none, tt.matchNone)
			}
			if none {
				return
			}
			want := `SELECT ` + ReferralCols + ` FROM referrals` + tt.where + " ORDER BY updated_at, id LIMIT ?"
			if query != want {
				t.Errorf("query:\n%s\nwant:\n%s", query, want)
			}
			if diff := cmp.Diff(tt.args, args); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
			if limit != tt.limit {
				t.Errorf("limit = %d, want %d", limit, tt.limit)
			}
		})
	}
}

func TestMessageWhere(t *testing.T) {
	t.Parallel()
	dest := mapping.Destination{Kind: mapping.DestinationSubscription, ID: "sub"}
	tests := []struct {
		name  string
		q     outbox.MessageQuery
		where string
		args  []any
	}{
		{name: "all", where: "1 = 1"},
		{name: "every filter", q: outbox.MessageQuery{States: []outbox.MessageState{outbox.StateDead, outbox.StatePending},
			Destination: &dest, ServiceID: "svc", ReferralID: "r", CreatedBefore: time.UnixMicro(7), AfterSeq: 3},
			where: "1 = 1 AND state IN (?, ?) AND destination_kind = ? AND destination_id = ? AND destination_kind = ? " +
				"AND destination_id = ? AND referral_id = ? AND created_at < ? AND seq > ?",
			args: []any{"dead", "pending", "subscription", "sub", "service", "svc", "r", int64(7), int64(3)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			where, args := MessageWhere(tt.q)
			if where != tt.where {
				t.Errorf("where = %q, want %q", where, tt.where)
			}
			if diff := cmp.Diff(tt.args, args); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRoom(t *testing.T) {
	t.Parallel()
	a := mapping.Destination{Kind: mapping.DestinationService, ID: "a"}
	b := mapping.Destination{Kind: mapping.DestinationService, ID: "b"}
	c := mapping.Destination{Kind: mapping.DestinationSubscription, ID: "c"}
	tests := []struct {
		name string
		f    outbox.ClaimFilter
		used map[mapping.Destination]int
		left map[mapping.Destination]int
		full []mapping.Destination
	}{
		{name: "no limits", used: map[mapping.Destination]int{a: 5}, left: map[mapping.Destination]int{a: -1, b: -1}},
		{name: "per destination", f: outbox.ClaimFilter{PerDestination: 2}, used: map[mapping.Destination]int{a: 2, b: 1},
			left: map[mapping.Destination]int{a: 0, b: 1, c: 2}, full: []mapping.Destination{a}},
		{name: "room overrides", f: outbox.ClaimFilter{PerDestination: 2, Room: map[mapping.Destination]int{b: 0, c: -3, a: 5}},
			used: map[mapping.Destination]int{a: 1}, left: map[mapping.Destination]int{a: 4, b: 0, c: 0},
			full: []mapping.Destination{b, c}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := NewRoom(tt.f)
			for d, n := range tt.used {
				r.Used[d] = n
			}
			for d, want := range tt.left {
				if got := r.Left(d); got != want {
					t.Errorf("Left(%v) = %d, want %d", d, got, want)
				}
			}
			if diff := cmp.Diff(tt.full, r.Full()); diff != "" {
				t.Errorf("Full (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStateDecisions walks every message state through ValidNext and Replayable.
func TestStateDecisions(t *testing.T) {
	t.Parallel()
	now := time.Unix(100, 0).UTC()
	for _, st := range outbox.AllStates() {
		wantNext := st == outbox.StateDelivered || st == outbox.StatePending || st == outbox.StateDead
		if got := ValidNext(st); got != wantNext {
			t.Errorf("ValidNext(%s) = %v, want %v", st, got, wantNext)
		}
		for _, byID := range []bool{false, true} {
			for _, due := range []time.Time{now, now.Add(time.Second)} {
				m := outbox.Message{State: st, NextAttemptAt: due}
				want := st == outbox.StateDead || (st == outbox.StatePending && byID && due.After(now))
				if got := Replayable(m, now, byID); got != want {
					t.Errorf("Replayable(%s, byID %v, due %v) = %v, want %v", st, byID, due, got, want)
				}
			}
		}
	}
}

func TestDedupe(t *testing.T) {
	t.Parallel()
	x, y := mapping.Identifier{System: "s", Value: "x"}, mapping.Identifier{System: "s", Value: "y"}
	if got := Dedupe(nil); got != nil {
		t.Errorf("Dedupe(nil) = %v", got)
	}
	if diff := cmp.Diff([]mapping.Identifier{y, x}, Dedupe([]mapping.Identifier{y, x, y, x})); diff != "" {
		t.Errorf("Dedupe (-want +got):\n%s", diff)
	}
}

func TestEventRows(t *testing.T) {
	t.Parallel()
	dest := mapping.Destination{Kind: mapping.DestinationService, ID: "s"}
	n := 0
	newID := func() string { n++; return "gen-" + string(rune('0'+n)) }
	rows, err := sqliteD.EventRows([]mapping.Event{
		{ID: "m1", Type: mapping.EventReferralCreated, Destination: dest, Payload: json.RawMessage(`{}`)},
		{Type: mapping.EventReferralUpdated, Destination: dest},
	}, newID)
	if err != nil {
		t.Fatal(err)
	}
	want := []EventRow{{ID: "m1", Kind: "service", Dest: "s", Type: "referral.created", Payload: []byte(`{}`)},
		{ID: "gen-1", Kind: "service", Dest: "s", Type: "referral.updated", Payload: []byte{}}}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	if _, err := sqliteD.EventRows([]mapping.Event{{Type: mapping.EventReferralCreated}}, newID); err == nil ||
		!strings.HasPrefix(err.Error(), "sqlite: event 0:") {
		t.Errorf("event without destination: %v", err)
	}
}

func TestNewCreation(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 3, 3, 9, 0, 0, 1500, time.UTC)
	ok := mapping.Intake{
		Referral: mapping.Referral{Record: mapping.Record{ID: "r", TaskID: "t", ServiceRequestID: "s", Version: 7,
			CreatedAt: at, Patient: mapping.Person{}}, Patient: mapping.Reference{Reference: "Patient/p",
			Identifier: &mapping.Identifier{System: NHSNumberSystem, Value: "9434765919"}}},
		Identifiers: []mapping.Identifier{{System: "a", Value: "1"}, {System: "a", Value: "1"}},
		Fingerprint: "fp",
	}
	c, err := sqliteD.NewCreation(ok, func() string { return "id" })
	if err != nil {
		t.Fatal(err)
	}
	rec := c.Result.Referral.Record
	if rec.Version != 1 || !rec.CreatedAt.Equal(at.Truncate(time.Microsecond)) || !rec.UpdatedAt.Equal(rec.CreatedAt) {
		t.Errorf("record = version %d, created %v, updated %v", rec.Version, rec.CreatedAt, rec.UpdatedAt)
	}
	if !c.Result.Created || len(c.Identifiers) != 1 || c.Row.PatientNHS != "9434765919" || c.Row.ServiceRequest == nil {
		t.Errorf("creation = %+v", c)
	}
	back, err := sqliteD.ScanReferral(rowScanner{c.Row})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Referral, c.Result.Referral.Referral) || back.Fingerprint != "fp" ||
		!reflect.DeepEqual(back.Identifiers, c.Identifiers) {
		t.Errorf("round trip:\n%+v\nwant\n%+v", back, c.Result.Referral)
	}

	missing := ok
	missing.Referral.Record.TaskID = ""
	noTime := ok
	noTime.Referral.Record.CreatedAt = time.Time{}
	for name, in := range map[string]mapping.Intake{"no task id": missing, "no created_at": noTime} {
		if _, err := sqliteD.NewCreation(in, nil); err == nil || !strings.HasPrefix(err.Error(), "sqlite: create referral:") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// rowScanner scans a ReferralRow as its ReferralCols would read back.
type rowScanner struct{ r ReferralRow }

func (s rowScanner) Scan(dest ...any) error {
	if len(dest) != 7 {
		return errors.New("want 7 columns")
	}
	*dest[0].(*int) = s.r.Version
	*dest[1].(*int64) = s.r.CreatedAt
	*dest[2].(*int64) = s.r.UpdatedAt
	*dest[3].(*string) = s.r.Fingerprint
	*dest[4].(*[]byte) = s.r.Identifiers
	*dest[5].(*[]byte) = s.r.Referral
	*dest[6].(*[]byte) = s.r.ServiceRequest
	return nil
}

func TestNewSubscriptionRow(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)
	sub := outbox.Subscription{ID: "s", OwnerClientID: "o", PracticeODS: "A", Endpoint: "https://x",
		Payload: mapping.PayloadIDOnly, CreatedAt: at, EventsSinceStart: 9, Status: outbox.SubscriptionStatus("off")}
	row, err := sqliteD.NewSubscriptionRow(sub)
	if err != nil {
		t.Fatal(err)
	}
	if row.Sub.Status != outbox.SubscriptionActive || row.Sub.EventsSinceStart != 0 || !row.Sub.UpdatedAt.Equal(at) ||
		string(row.Headers) != "[]" || row.Resource == nil || len(row.Args()) != strings.Count(insertSubscription, "?") {
		t.Errorf("row = %+v", row)
	}
	bad := sub
	bad.Endpoint = ""
	if _, err := sqliteD.NewSubscriptionRow(bad); err == nil || !strings.HasPrefix(err.Error(), "sqlite: create subscription:") {
		t.Errorf("no endpoint: %v", err)
	}
}

func TestRebindDollar(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                      "",
		"SELECT 1":              "SELECT 1",
		"a = ? AND b IN (?, ?)": "a = $1 AND b IN ($2, $3)",
		"é = ?, ü = ?" + strings.Repeat(", ?", 9): "é = $1, ü = $2, $3, $4, $5, $6, $7, $8, $9, $10, $11",
	} {
		if got := RebindDollar(in); got != want {
			t.Errorf("RebindDollar(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCompile: every static statement and the two composed ones are rebound once, as Rebind would.
func TestCompile(t *testing.T) {
	t.Parallel()
	pg := Dialect{Name: "postgres", Rebind: RebindDollar, NextSeq: "DEFAULT", Subscribers: "lower(practice_ods) = lower(?)"}.Compile()
	for _, q := range statements() {
		if got := pg.rebind(q); got != RebindDollar(q) || strings.Contains(got, "?") {
			t.Errorf("bound %q = %q", q, got)
		}
	}
	if !strings.Contains(pg.insertMessage, "VALUES ($1, DEFAULT, $2,") || !strings.HasSuffix(pg.insertMessage, "$10)") {
		t.Errorf("insert message: %s", pg.insertMessage)
	}
	if !strings.HasSuffix(pg.fanOut, "WHERE lower(practice_ods) = lower($1) ORDER BY id") {
		t.Errorf("fan-out: %s", pg.fanOut)
	}
	lite := Dialect{Name: "sqlite", NextSeq: "(next)"}.Compile()
	if lite.bound != nil || lite.rebind(insertEvent) != insertEvent || !strings.Contains(lite.insertMessage, "VALUES (?, (next), ?,") {
		t.Errorf("sqlite: %+v", lite)
	}
}

func TestStorableError(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", maxErrorLen-1) + "é" // the cut falls inside é
	pg := Dialect{CleanText: func(s string) string { return strings.ReplaceAll(strings.ToValidUTF8(s, ""), "\x00", "") }}
	tests := []struct {
		name     string
		d        Dialect
		in, want string
	}{
		{"short kept", sqliteD, "HTTP 500", "HTTP 500"},
		{"cut without splitting a rune", sqliteD, long, strings.Repeat("x", maxErrorLen-1)},
		{"short text with NUL kept where storable", sqliteD, "a\x00b", "a\x00b"},
		{"cleaned", pg, "a\x00b\xff", "ab"},
		{"cut and cleaned", pg, long + "\x00", strings.Repeat("x", maxErrorLen-1)},
	}
	for _, tt := range tests {
		if got := tt.d.storableError(tt.in); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestVersionUpdateArgs(t *testing.T) {
	t.Parallel()
	v := Version{Row: ReferralRow{ID: "r", Practice: "A", Version: 3, UpdatedAt: 9}, From: 2}
	args := v.UpdateArgs()
	if n := strings.Count(UpdateReferral, "?"); len(args) != n || args[0] != "A" || args[7] != 3 || args[12] != "r" || args[13] != 2 {
		t.Errorf("args %v for %d placeholders", args, n)
	}
}

// TestLimitLiteral: a claim's limit is written as one of a few literals, never below what it must allow.
func TestLimitLiteral(t *testing.T) {
	for n, want := range map[int]string{1: " LIMIT 1", 2: " LIMIT 2", 3: " LIMIT 4", 8: " LIMIT 8", 9: " LIMIT 16", 32: " LIMIT 32", 33: " LIMIT 64"} {
		if got := LimitLiteral(n); got != want {
			t.Errorf("LimitLiteral(%d) = %q, want %q", n, got, want)
		}
	}
}
