package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
)

// runAudit is `socialrx audit list|verify`, against the database of SOCIALRX_DATABASE_URL (never created nor
// migrated here).
func runAudit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"audit needs a subcommand: list or verify (see socialrx audit --help)"}
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		return parseFlags(flag.NewFlagSet("audit", flag.ContinueOnError), []string{"--help"})
	}
	var fs *flag.FlagSet
	var q outbox.AuditQuery
	var since, until string
	switch args[0] {
	case "list":
		fs = flag.NewFlagSet("audit list", flag.ContinueOnError)
		fs.StringVar(&q.ReferralID, "referral", "", "only the records of this referral (its `id`)")
		fs.StringVar(&q.ActorID, "client", "", "only the records of this actor: a client `id`, or console:CLIENT/NAME or cli:NAME for an engineer")
		fs.StringVar(&since, "since", "", "only records at or after this `time` (RFC 3339, e.g. 2026-12-01T09:00:00Z)")
		fs.StringVar(&until, "until", "", "only records before this `time` (RFC 3339)")
		fs.IntVar(&q.Limit, "limit", 0, "at most `N` records (0: every one that matches; the database is read a page at a time)")
	case "verify":
		fs = flag.NewFlagSet("audit verify", flag.ContinueOnError)
	default:
		return usageError{fmt.Sprintf("unknown audit subcommand %q (list, verify)", args[0])}
	}
	apply := settingsFlags(fs)
	var asJSON bool
	fs.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("audit %s takes no arguments, only flags (see --help)", args[0])}
	}
	for _, t := range []struct {
		name, v string
		to      *time.Time
	}{{"since", since, &q.Since}, {"until", until, &q.Until}} {
		if t.v == "" {
			continue
		}
		if *t.to, err = time.Parse(time.RFC3339Nano, t.v); err != nil {
			return usageError{fmt.Sprintf("--%s must be an RFC 3339 time such as 2026-12-01T09:00:00Z", t.name)}
		}
	}
	if q.Limit < 0 {
		return usageError{"--limit must not be negative"}
	}
	settings, err := apply(getenv)
	if err != nil {
		return usageError{err.Error()}
	}
	log := newLogger(settings, stderr)
	store, err := openExisting(ctx, settings, log)
	if err != nil {
		return err
	}
	defer store.Close()
	op := referral.Operator{Store: store, Logger: log,
		Progress: func(done, _ int) { fmt.Fprintf(stderr, "… %d records checked\n", done) }}
	if args[0] == "verify" {
		return auditVerify(ctx, op, stdout, asJSON)
	}
	return auditList(ctx, op, q, stdout, asJSON)
}

// auditList prints every record q selects, oldest first, a page at a time.
func auditList(ctx context.Context, op referral.Operator, q outbox.AuditQuery, stdout io.Writer, asJSON bool) error {
	limit := q.Limit
	var all []outbox.AuditRecord
	for {
		page := q
		page.Limit = 1000
		if limit > 0 {
			page.Limit = min(page.Limit, limit-len(all))
		}
		recs, err := op.AuditTrail(ctx, page)
		if err != nil {
			return err
		}
		all = append(all, recs...)
		if len(recs) < page.Limit || (limit > 0 && len(all) >= limit) {
			break
		}
		q.AfterSeq = recs[len(recs)-1].Seq
	}
	if asJSON {
		return writeJSON(stdout, referral.AuditViews(all))
	}
	if len(all) == 0 {
		fmt.Fprintln(stdout, "no audit record matches")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tAT\tACTOR\tROLE\tVIA\tACTION\tRESOURCE\tREFERRAL\tADDRESS\tREQUEST")
	for _, v := range referral.AuditViews(all) {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Seq, v.At.Format(time.RFC3339), v.Actor, v.Role, v.Via,
			v.Action, v.Resource, dash(v.ReferralID), dash(v.Address), v.RequestID)
	}
	return tw.Flush()
}

// auditVerify checks every chain and prints what it found; a trail with problems is an error (exit 1).
func auditVerify(ctx context.Context, op referral.Operator, stdout io.Writer, asJSON bool) error {
	rep, err := op.VerifyAudit(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		if err := writeJSON(stdout, rep); err != nil {
			return err
		}
	} else {
		for _, c := range rep.Chains {
			state := "ok"
			if len(c.Problems) > 0 {
				state = fmt.Sprintf("%d problems", len(c.Problems))
			}
			fmt.Fprintf(stdout, "chain %s (%s): %d records, head %d %s: %s\n", c.Chain, dash(c.Instance), c.Records, c.HeadSeq, c.HeadHash, state)
			for _, p := range c.Problems {
				fmt.Fprintf(stdout, "  record %d: %s\n", p.ChainSeq, p.Problem)
			}
		}
		fmt.Fprintf(stdout, "%d records in %d chains\n", rep.Records, len(rep.Chains))
	}
	if !rep.OK {
		return fmt.Errorf("the audit trail was tampered with: see the problems above")
	}
	if !asJSON {
		fmt.Fprintln(stdout, "the audit trail is intact")
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
