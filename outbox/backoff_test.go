package outbox

import (
	"testing"
	"time"
)

func TestExponential(t *testing.T) {
	t.Parallel()
	b := Exponential(10*time.Second, 4*time.Hour)
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{-3, 10 * time.Second},
		{0, 10 * time.Second},
		{1, 10 * time.Second},
		{2, 20 * time.Second},
		{3, 40 * time.Second},
		{8, 1280 * time.Second},
		{11, 10240 * time.Second},
		{12, 4 * time.Hour},
		{100, 4 * time.Hour},
		{1 << 30, 4 * time.Hour},
	}
	for _, tt := range tests {
		if got := b(tt.attempt); got != tt.want {
			t.Errorf("Exponential(10s, 4h)(%d) = %s, want %s", tt.attempt, got, tt.want)
		}
	}
}

func TestDefaultJitter(t *testing.T) {
	t.Parallel()
	if got := DefaultJitter(0); got != 0 {
		t.Errorf("DefaultJitter(0) = %s", got)
	}
	if got := DefaultJitter(-time.Second); got != 0 {
		t.Errorf("DefaultJitter(-1s) = %s", got)
	}
	for range 1000 {
		if got := DefaultJitter(40 * time.Second); got < 0 || got > 10*time.Second {
			t.Fatalf("DefaultJitter(40s) = %s, want within [0, 10s]", got)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		value  string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"   ", 0, false},
		{"0", 0, true},
		{"120", 120 * time.Second, true},
		{" 7 ", 7 * time.Second, true},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"99999999999999999999", 0, false},
		{"9223372036", 9223372036 * time.Second, true},
		{"92233720368547", time.Duration(9223372036) * time.Second, true},
		{"Thu, 01 Jan 2026 12:01:30 GMT", 90 * time.Second, true},    // IMF-fixdate
		{"Thursday, 01-Jan-26 12:00:10 GMT", 10 * time.Second, true}, // RFC 850
		{"Thu Jan  1 12:00:05 2026", 5 * time.Second, true},          // asctime
		{"Wed, 31 Dec 2025 23:00:00 GMT", 0, true},                   // in the past
		{"Thu, 01 Jan 2026 12:00:00 GMT", 0, true},                   // now
		{"Thu, 32 Jan 2026 12:00:00 GMT", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseRetryAfter(tt.value, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ParseRetryAfter(%q) = %s, %v; want %s, %v", tt.value, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestSchedulePlan(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := schedule{
		backoff:       Exponential(10*time.Second, 4*time.Hour),
		jitter:        func(d time.Duration) time.Duration { return d / 10 },
		maxRetryAfter: time.Hour,
		budget:        72 * time.Hour,
	}
	tests := []struct {
		name       string
		now        time.Time
		attempt    int
		retryAfter time.Duration
		hasRA      bool
		budgetFrom time.Time
		want       retryPlan
	}{
		{"first failure", t0, 1, 0, false, t0, retryPlan{next: t0.Add(11 * time.Second)}},
		{"third failure", t0.Add(time.Minute), 3, 0, false, t0, retryPlan{next: t0.Add(time.Minute + 44*time.Second)}},
		{"capped backoff", t0.Add(time.Hour), 40, 0, false, t0, retryPlan{next: t0.Add(time.Hour + 4*time.Hour + 24*time.Minute)}},
		{"retry-after longer than backoff", t0, 1, 5 * time.Minute, true, t0, retryPlan{next: t0.Add(5 * time.Minute)}},
		{"retry-after shorter than backoff", t0, 3, 2 * time.Second, true, t0, retryPlan{next: t0.Add(44 * time.Second)}},
		{"retry-after capped", t0, 1, 48 * time.Hour, true, t0, retryPlan{next: t0.Add(time.Hour)}},
		{"retry-after zero", t0, 1, 0, true, t0, retryPlan{next: t0.Add(11 * time.Second)}},
		{"last attempt at the end of the budget", t0.Add(72*time.Hour - time.Second), 30, 0, false, t0, retryPlan{next: t0.Add(72 * time.Hour)}},
		{"budget spent", t0.Add(72 * time.Hour), 31, 0, false, t0, retryPlan{dead: true}},
		{"budget restarted by a replay", t0.Add(100 * time.Hour), 31, 0, false, t0.Add(99 * time.Hour), retryPlan{next: t0.Add(104*time.Hour + 24*time.Minute)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := s.plan(tt.now, tt.attempt, tt.retryAfter, tt.hasRA, tt.budgetFrom)
			if got != tt.want {
				t.Errorf("plan = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSchedulePlanNegativeJitterAndBackoff(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := schedule{
		backoff: func(int) time.Duration { return -time.Minute },
		jitter:  func(time.Duration) time.Duration { return -time.Minute },
		budget:  time.Hour,
	}
	if got := s.plan(t0, 1, 0, false, t0); got != (retryPlan{next: t0}) {
		t.Errorf("plan = %+v, want an immediate retry", got)
	}
}
