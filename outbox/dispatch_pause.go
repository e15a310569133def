package outbox

import (
	"log/slog"
	"time"
)

// maxStorePause caps the dispatcher's pause after consecutive store failures.
const maxStorePause = time.Minute

// storePause is how the dispatcher backs off a store that fails (the database is down, locked or full):
// after n consecutive failed looks for work it stops looking for storePauseFor(n), so that a dead database
// costs one log line and a handful of connection attempts a minute, not a claim per wake-up. A commit in this
// process (Store.Changes: the database took a write) ends the pause at once; the first look that works logs
// the recovery. Only the Run loop touches it.
type storePause struct {
	failures int
	timer    *time.Timer
	paused   bool // the loop does not look for work until timer fires or a commit is signalled
}

// storePauseFor is the pause after n (≥ 1) consecutive failures: base doubling, at most maxStorePause.
func storePauseFor(base time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < maxStorePause; i++ {
		d *= 2
	}
	return min(d, maxStorePause)
}

func newStorePause() *storePause {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &storePause{timer: t}
}

// failed records a failed look for work and pauses; it logs the first failure of a run at error, the others
// at debug.
func (p *storePause) failed(log *slog.Logger, base time.Duration, err error) {
	p.failures++
	d := storePauseFor(base, p.failures)
	if p.failures == 1 {
		log.Error("outbox: the store does not answer; deliveries wait, retrying with backoff", "err", err, "retry_in", d)
	} else {
		log.Debug("outbox: the store still does not answer", "failures", p.failures, "err", err, "retry_in", d)
	}
	p.paused = true
	p.timer.Reset(d)
}

// ok records a look for work that worked, logging the recovery after failures.
func (p *storePause) ok(log *slog.Logger) {
	if p.failures > 0 {
		log.Info("outbox: the store answers again; deliveries resume", "failed_looks", p.failures)
	}
	p.failures = 0
	p.resume()
}

// resume ends the pause (its timer fired, or a commit proved the database writable).
func (p *storePause) resume() {
	p.paused = false
	p.timer.Stop()
}
