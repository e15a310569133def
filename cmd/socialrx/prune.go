package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
)

// runPrune is `socialrx prune [--dry-run] [--delivered-days N] [--closed-months N] [--json]`: the retention
// periods applied once, now, to the database serve uses (safe while serve runs: a batch per short transaction,
// every row scrubbed once). Progress goes to stderr after each batch; the count printed is what was scrubbed,
// and a dry run counts the same selection.
func runPrune(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("prune", flag.ContinueOnError)
	apply := settingsFlags(fs)
	dry := fs.Bool("dry-run", false, "count what would be scrubbed, change nothing")
	days := fs.Int("delivered-days", -1, "scrub delivered payloads older than `N` days (default SOCIALRX_RETAIN_DELIVERED_DAYS, 30; 0: never)")
	months := fs.Int("closed-months", -1, "erase closed referrals last changed more than `N` months ago (default SOCIALRX_RETAIN_CLOSED_MONTHS, 24; 0: never)")
	asJSON := fs.Bool("json", false, "print the counts as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("prune takes no arguments (got %q)", fs.Arg(0))}
	}
	settings, err := apply(getenv)
	if err != nil {
		return usageError{err.Error()}
	}
	ret := settings.Retention
	if *days >= 0 {
		ret.DeliveredDays = *days
	}
	if *months >= 0 {
		ret.ClosedMonths = *months
	}
	log := newLogger(settings, stderr)
	store, err := openExisting(ctx, settings, log)
	if err != nil {
		return err
	}
	defer store.Close()
	sw := referral.RetentionSweeper{Store: store, Retention: ret, Logger: log}
	start := time.Now()
	res, err := sw.PruneOnce(ctx, *dry, func(r outbox.PruneResult) {
		fmt.Fprintf(stderr, "… %d payloads, %d referrals scrubbed\n", r.Payloads, r.Referrals)
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(struct {
			DryRun    bool `json:"dry_run"`
			Payloads  int  `json:"payloads"`
			Referrals int  `json:"referrals"`
		}{*dry, res.Payloads, res.Referrals})
	}
	verb := "scrubbed"
	if *dry {
		verb = "would scrub"
	}
	fmt.Fprintf(stdout, "%s %d delivered payloads (older than %d days) and %d closed referrals (older than %d months) in %s\n",
		verb, res.Payloads, ret.DeliveredDays, res.Referrals, ret.ClosedMonths, time.Since(start).Round(time.Millisecond))
	return nil
}
