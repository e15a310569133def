package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/postgres"
	"github.com/socialrx/socialrx/outbox/sqlite"
	"github.com/socialrx/socialrx/referral"
)

// defaultReplayRate is how many replayed messages a filtered replay makes due per second unless --rate says
// otherwise.
const defaultReplayRate = 10

// outboxRun is one `socialrx outbox SUBCOMMAND` invocation: the opened store, the operator over it, and where
// to write.
type outboxRun struct {
	op             referral.Operator
	stdout, stderr io.Writer
	asJSON         bool
	// actor is who changes something ("cli:" + --actor or SOCIALRX_ACTOR), recorded with the change.
	actor string
}

// outboxCommand is the flag set of `outbox sub` and the function that runs it once the store is open.
type outboxCommand struct {
	fs  *flag.FlagSet
	run func(ctx context.Context, r *outboxRun, pos []string) error
	// changes: the subcommand changes something (it needs an actor, unless it is a dry run).
	changes bool
	// reads: the subcommand shows patient data (it needs an actor, recorded in the audit trail).
	reads bool
}

// filterFlags are the message filter flags of list and replay.
type filterFlags struct {
	state, service, referral, types string
	olderThan                       time.Duration
	limit                           int
}

func (f *filterFlags) define(fs *flag.FlagSet, what string) {
	fs.StringVar(&f.state, "state", "", "only messages in these `states` (comma list of pending, inflight, delivered, dead, cancelled, discarded)")
	fs.StringVar(&f.service, "service", "", "only messages to this community service (its directory `id`)")
	fs.StringVar(&f.referral, "referral", "", "only messages of this referral (its `id`)")
	fs.StringVar(&f.types, "type", "", "only messages of these event `types` (comma list, e.g. referral.created,referral.cancelled)")
	fs.DurationVar(&f.olderThan, "older-than", 0, "only messages created longer ago than this `duration` (e.g. 30m, 2h, 72h)")
	fs.IntVar(&f.limit, "limit", 0, "at most `N` messages "+what+" (0: every one that matches; the database is read a page at a time)")
}

// set reports whether any filter flag was given.
func (f *filterFlags) set() bool {
	return f.state != "" || f.service != "" || f.referral != "" || f.types != "" || f.olderThan != 0
}

// query is the MessageQuery of the flags at now.
func (f *filterFlags) query(now time.Time) (outbox.MessageQuery, error) {
	q := outbox.MessageQuery{ServiceID: f.service, ReferralID: f.referral}
	if f.limit < 0 {
		return q, usageError{"--limit must not be negative"}
	}
	q.Limit = f.limit
	for _, s := range splitList(f.state) {
		st, err := outbox.ParseState(s)
		if err != nil {
			return q, usageError{"--state: " + strings.TrimPrefix(err.Error(), outbox.ErrBadRequest.Error()+": ")}
		}
		q.States = append(q.States, st)
	}
	for _, t := range splitList(f.types) {
		q.Types = append(q.Types, mapping.EventType(t))
	}
	switch {
	case f.olderThan < 0:
		return q, usageError{"--older-than must be a positive duration such as 30m or 2h"}
	case f.olderThan > 0:
		q.CreatedBefore = now.Add(-f.olderThan)
	}
	return q, nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// runOutbox is `socialrx outbox list|show|replay|discard|pause|resume|pauses`, against the database of
// SOCIALRX_DATABASE_URL, through the same referral.Operator as the admin API and the console. It never
// creates nor migrates the database.
func runOutbox(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"outbox needs a subcommand: list, show, replay, discard, pause, resume or pauses (see socialrx outbox --help)"}
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		return parseFlags(flag.NewFlagSet("outbox", flag.ContinueOnError), []string{"--help"})
	}
	r := &outboxRun{stdout: stdout, stderr: stderr}
	cmd, ok := outboxCommands()[args[0]]
	if !ok {
		return usageError{fmt.Sprintf("unknown outbox subcommand %q (list, show, replay, discard, pause, resume, pauses)", args[0])}
	}
	fs := cmd.fs
	apply := settingsFlags(fs)
	fs.BoolVar(&r.asJSON, "json", false, "print JSON instead of a table")
	var actorFlag string
	var dryRun bool
	switch {
	case cmd.changes:
		fs.StringVar(&actorFlag, "actor", "", "who you are, recorded with the change and in the audit trail (SOCIALRX_ACTOR; one of the two is required)")
	case cmd.reads:
		fs.StringVar(&actorFlag, "actor", "", "who you are, recorded in the audit trail (SOCIALRX_ACTOR; one of the two is required)")
	}
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	if f := fs.Lookup("dry-run"); f != nil {
		dryRun = f.Value.String() == "true"
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
	r.op = referral.Operator{Store: store, Logger: log,
		Progress: func(done, total int) { fmt.Fprintf(stderr, "… %d of %d\n", done, total) }}
	if settings.ConfigPath != "" {
		cfg, err := config.Load(settings.ConfigPath)
		if err != nil {
			return err
		}
		r.op.Directory = &cfg.Directory
	}
	if cmd.changes || cmd.reads {
		if r.actor, err = actorOf(fs, actorFlag, getenv("SOCIALRX_ACTOR"), dryRun); err != nil {
			return err
		}
		// This run's reads and changes of patient data go into the audit trail, on a chain of its own.
		audit := outbox.NewAuditLog(store, outbox.AuditLogOptions{Instance: "cli", Logger: log})
		defer audit.Close()
		r.op.Audit = audit
		ctx = referral.WithOrigin(ctx, referral.CLIOrigin(r.actor))
	}
	err = cmd.run(ctx, r, pos)
	if errors.Is(err, outbox.ErrBadRequest) {
		return usageError{strings.TrimPrefix(err.Error(), outbox.ErrBadRequest.Error()+": ")}
	}
	return err
}

// actorOf is who a change is recorded as: "cli:" and the --actor flag, else SOCIALRX_ACTOR (never $USER);
// a dry run needs neither. Without one it says what to do (a missing reason first, as it is asked first).
func actorOf(fs *flag.FlagSet, flagValue, env string, dryRun bool) (string, error) {
	actor := strings.TrimSpace(firstNonEmpty(flagValue, env))
	if actor == "" && !dryRun {
		if f := fs.Lookup("reason"); f != nil && strings.TrimSpace(f.Value.String()) == "" {
			return "", usageError{"a reason is required: --reason TEXT (it is recorded with the change)"}
		}
		return "", usageError{"say who you are: --actor NAME or SOCIALRX_ACTOR=NAME (it is recorded with the change and in the audit trail)"}
	}
	return "cli:" + firstNonEmpty(actor, "dry-run"), nil
}

// outboxCommands are the outbox subcommands, their flags bound to fresh variables.
func outboxCommands() map[string]outboxCommand {
	return map[string]outboxCommand{
		"list":    listCommand(),
		"show":    {fs: flag.NewFlagSet("outbox show", flag.ContinueOnError), run: runShow, reads: true},
		"replay":  replayCommand(),
		"discard": discardCommand(),
		"pause":   pauseCommand(),
		"resume":  {fs: flag.NewFlagSet("outbox resume", flag.ContinueOnError), run: runResume, changes: true},
		"pauses":  {fs: flag.NewFlagSet("outbox pauses", flag.ContinueOnError), run: runPauses},
	}
}

func listCommand() outboxCommand {
	fs := flag.NewFlagSet("outbox list", flag.ContinueOnError)
	var f filterFlags
	f.define(fs, "listed")
	return outboxCommand{fs: fs, run: func(ctx context.Context, r *outboxRun, pos []string) error {
		if len(pos) > 0 {
			return usageError{"list takes no arguments, only flags (see --help)"}
		}
		q, err := f.query(time.Now())
		if err != nil {
			return err
		}
		pauses, err := r.op.Pauses(ctx)
		if err != nil {
			return err
		}
		if r.asJSON {
			return r.listJSON(ctx, q, pauses)
		}
		printPauses(r.stdout, pauses)
		tw := tabwriter.NewWriter(r.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tDESTINATION\tTYPE\tATTEMPTS\tCREATED\tLAST ERROR")
		listed := 0
		n, err := r.op.Each(ctx, q, func(page []outbox.Message) error {
			printRows(tw, page, pauses)
			if listed += len(page); listed > len(page) { // a long run: say how far it got (the table comes at the end)
				fmt.Fprintf(r.stderr, "… %d listed\n", listed)
			}
			return nil
		})
		_ = tw.Flush()
		if err != nil {
			return err
		}
		fmt.Fprintf(r.stdout, "%d message(s)\n", n)
		return nil
	}}
}

// listJSON streams the matching messages as one JSON array, a page at a time.
func (r *outboxRun) listJSON(ctx context.Context, q outbox.MessageQuery, pauses []outbox.Pause) error {
	first := true
	fmt.Fprint(r.stdout, "[")
	_, err := r.op.Each(ctx, q, func(page []outbox.Message) error {
		for _, v := range referral.MarkPaused(referral.Views(page), pauses) {
			b, err := json.MarshalIndent(v, "  ", "  ")
			if err != nil {
				return err
			}
			if !first {
				fmt.Fprint(r.stdout, ",")
			}
			first = false
			fmt.Fprintf(r.stdout, "\n  %s", b)
		}
		return nil
	})
	if !first {
		fmt.Fprint(r.stdout, "\n")
	}
	fmt.Fprintln(r.stdout, "]")
	return err
}

func runShow(ctx context.Context, r *outboxRun, pos []string) error {
	if len(pos) != 1 {
		return usageError{"show takes one message id"}
	}
	d, err := r.op.Show(ctx, pos[0])
	if errors.Is(err, outbox.ErrNotFound) {
		return fmt.Errorf("no message %s", pos[0])
	}
	if err != nil {
		return err
	}
	pauses, err := r.op.Pauses(ctx)
	if err != nil {
		return err
	}
	if r.asJSON {
		v := referral.DetailViewOf(d)
		v.Message.Paused = referral.MarkPaused([]referral.MessageView{v.Message}, pauses)[0].Paused
		return writeJSON(r.stdout, v)
	}
	printDetail(r.stdout, d, pauses)
	return nil
}

func replayCommand() outboxCommand {
	fs := flag.NewFlagSet("outbox replay", flag.ContinueOnError)
	var f filterFlags
	f.define(fs, "replayed")
	reason := fs.String("reason", "", "why you replay: the `text` is recorded with every replayed message (required)")
	dryRun := fs.Bool("dry-run", false, "show what would be replayed (found exactly as the real run finds it); change nothing")
	rate := fs.Float64("rate", defaultReplayRate, "a filtered replay makes at most `N` messages due per second, so that a receiver that just recovered is not flooded (0: all at once)")
	return outboxCommand{fs: fs, changes: true, run: func(ctx context.Context, r *outboxRun, pos []string) error {
		req := outbox.ReplayRequest{IDs: pos, Reason: *reason, Actor: r.actor, DryRun: *dryRun}
		switch {
		case *rate < 0:
			return usageError{"--rate must not be negative"}
		case len(pos) == 0 && f.state == "":
			return usageError{"replay needs message ids, or --state dead [--service ID …] (see --help)"}
		case len(pos) > 0 && (f.set() || f.limit != 0):
			return usageError{"replay takes message ids or a filter, not both"}
		case len(pos) == 0:
			q, err := f.query(time.Now())
			if err != nil {
				return err
			}
			req.Filter = &q
			if *rate > 0 {
				req.Pace = time.Duration(float64(time.Second) / *rate)
			}
		}
		msgs, err := r.op.Replay(ctx, req)
		if err != nil {
			return err
		}
		note := ""
		if req.Pace > 0 && len(msgs) > 1 && !*dryRun {
			note = fmt.Sprintf(", due over the next %s (%g a second)", (time.Duration(len(msgs)-1) * req.Pace).Round(time.Second), *rate)
		}
		return r.changed("replayed", "would replay", *dryRun, msgs, note)
	}}
}

// changed reports the messages a change (or its dry run) touched: how many and which, as JSON under key or as
// a line ("<verb> N message(s)<note>") and a table.
func (r *outboxRun) changed(key, dryVerb string, dryRun bool, msgs []outbox.Message, note string) error {
	if r.asJSON {
		return writeJSON(r.stdout, map[string]any{"dry_run": dryRun, "count": len(msgs), key: referral.Views(msgs)})
	}
	verb := key
	if dryRun {
		verb = dryVerb
	}
	fmt.Fprintf(r.stdout, "%s %d message(s)%s\n", verb, len(msgs), note)
	printMessages(r.stdout, msgs, nil)
	return nil
}

func discardCommand() outboxCommand {
	fs := flag.NewFlagSet("outbox discard", flag.ContinueOnError)
	reason := fs.String("reason", "", "why these messages must never be sent: the `text` is recorded with each (required)")
	dryRun := fs.Bool("dry-run", false, "show what would be discarded; change nothing")
	return outboxCommand{fs: fs, changes: true, run: func(ctx context.Context, r *outboxRun, pos []string) error {
		if len(pos) == 0 {
			return usageError{"discard needs the ids of the messages to discard"}
		}
		msgs, err := r.op.Discard(ctx, outbox.DiscardRequest{IDs: pos, Reason: *reason, Actor: r.actor, DryRun: *dryRun})
		if err != nil {
			return err
		}
		return r.changed("discarded", "would discard", *dryRun, msgs, "")
	}}
}

func pauseCommand() outboxCommand {
	fs := flag.NewFlagSet("outbox pause", flag.ContinueOnError)
	reason := fs.String("reason", "", "why you pause the service: the `text` is recorded and shown with the pause (required)")
	return outboxCommand{fs: fs, changes: true, run: func(ctx context.Context, r *outboxRun, pos []string) error {
		if len(pos) != 1 {
			return usageError{"pause takes one community service id"}
		}
		p, started, err := r.op.Pause(ctx, pos[0], *reason, r.actor)
		if err != nil {
			return err
		}
		if r.asJSON {
			return writeJSON(r.stdout, map[string]any{"started": started, "pause": referral.PauseViewOf(p)})
		}
		if !started {
			fmt.Fprintf(r.stdout, "%s was already paused (nothing changed): ", p.Destination.ID)
		} else {
			fmt.Fprintf(r.stdout, "paused %s: its messages are held (no attempts, retry budgets stopped) until socialrx outbox resume %s\n",
				p.Destination.ID, p.Destination.ID)
		}
		printPauses(r.stdout, []outbox.Pause{p})
		return nil
	}}
}

func runResume(ctx context.Context, r *outboxRun, pos []string) error {
	if len(pos) != 1 {
		return usageError{"resume takes one community service id"}
	}
	res, err := r.op.Resume(ctx, pos[0], r.actor)
	if err != nil {
		return err
	}
	if r.asJSON {
		return writeJSON(r.stdout, map[string]any{"pause": referral.PauseViewOf(res.Pause), "messages": res.Messages})
	}
	p := res.Pause
	fmt.Fprintf(r.stdout, "resumed %s after %s paused: %d message(s) waiting are due now (their retry budgets got the paused time back)\n",
		p.Destination.ID, p.ResumedAt.Sub(p.PausedAt).Round(time.Second), res.Messages)
	return nil
}

func runPauses(ctx context.Context, r *outboxRun, pos []string) error {
	if len(pos) > 0 {
		return usageError{"pauses takes no arguments"}
	}
	ps, err := r.op.Pauses(ctx)
	if err != nil {
		return err
	}
	if r.asJSON {
		return writeJSON(r.stdout, referral.PauseViews(ps))
	}
	if len(ps) == 0 {
		fmt.Fprintln(r.stdout, "no service is paused")
		return nil
	}
	printPauses(r.stdout, ps)
	return nil
}

// openExisting opens the existing, migrated database named by SOCIALRX_DATABASE_URL, creating and migrating
// nothing; the error names the URL it tried and what to do.
func openExisting(ctx context.Context, s config.Settings, log *slog.Logger) (outbox.Store, error) {
	backend, target, err := config.ParseDatabaseURL(s.DatabaseURL)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	var st outbox.Store
	var where string
	switch backend {
	case "sqlite":
		where = s.DatabaseURL
		if abs, err := filepath.Abs(target); err == nil && abs != target {
			where += " (" + abs + ")"
		}
		st, err = sqlite.Open(ctx, target, sqlite.Options{Logger: log, Existing: true})
	case "postgres":
		where = redactedURL(target)
		st, err = postgres.Open(ctx, target, postgres.Options{Logger: log, Existing: true, NoListen: true, MaxConns: 4})
	default:
		return nil, fmt.Errorf("SOCIALRX_DATABASE_URL: the %s backend is not available in this build", backend)
	}
	switch {
	case errors.Is(err, outbox.ErrNoDatabase):
		return nil, fmt.Errorf("no socialrx database at %s: nothing was created. Point SOCIALRX_DATABASE_URL (or --database-url) at the service's database, or create one with socialrx migrate", where)
	case errors.Is(err, outbox.ErrSchemaBehind):
		return nil, fmt.Errorf("the database at %s needs migrating before this socialrx can use it: run socialrx migrate (%v)", where, err)
	case err != nil:
		return nil, fmt.Errorf("open %s: %w", where, err)
	}
	return st, nil
}

// redactedURL is a database URL without its password.
func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a database URL that does not parse)"
	}
	return u.Redacted()
}

// parseInterleaved parses flags that may come before or after positional arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// stateOf is a message's state as the tables show it: a pending message of a paused destination says so.
func stateOf(m outbox.Message, pauses []outbox.Pause) string {
	for _, p := range pauses {
		if p.Destination == m.Destination && (m.State == outbox.StatePending || m.State == outbox.StateInflight) {
			return string(m.State) + " (paused)"
		}
	}
	return string(m.State)
}

func printMessages(w io.Writer, msgs []outbox.Message, pauses []outbox.Pause) {
	if len(msgs) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tDESTINATION\tTYPE\tATTEMPTS\tCREATED\tLAST ERROR")
	printRows(tw, msgs, pauses)
	_ = tw.Flush()
}

func printRows(tw io.Writer, msgs []outbox.Message, pauses []outbox.Pause) {
	for _, m := range msgs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", m.ID, stateOf(m, pauses), m.Destination, m.Type, m.Attempts,
			m.CreatedAt.UTC().Format(time.RFC3339), truncate(m.LastError, 60))
	}
}

func printPauses(w io.Writer, ps []outbox.Pause) {
	for _, p := range ps {
		fmt.Fprintf(w, "PAUSED %s since %s by %s: %s\n", p.Destination, p.PausedAt.UTC().Format(time.RFC3339), p.PausedBy, p.Reason)
	}
}

func printDetail(w io.Writer, d outbox.MessageDetail, pauses []outbox.Pause) {
	m := d.Message
	fmt.Fprintf(w, "message      %s\nreferral     %s\ndestination  %s\ntype         %s\nstate        %s\nattempts     %d\ncreated      %s\n",
		m.ID, m.ReferralID, m.Destination, m.Type, stateOf(m, pauses), m.Attempts, m.CreatedAt.UTC().Format(time.RFC3339))
	if !m.NextAttemptAt.IsZero() && m.State == outbox.StatePending {
		fmt.Fprintf(w, "next attempt %s\n", m.NextAttemptAt.UTC().Format(time.RFC3339))
	}
	if !m.DeliveredAt.IsZero() {
		fmt.Fprintf(w, "delivered    %s\n", m.DeliveredAt.UTC().Format(time.RFC3339))
	}
	if m.LastError != "" {
		fmt.Fprintf(w, "last error   %s\n", m.LastError)
	}
	if dc := d.Discard; dc != nil {
		fmt.Fprintf(w, "discarded    %s by %s (was %s): %s\n", dc.At.UTC().Format(time.RFC3339), dc.Actor, dc.FromState, dc.Reason)
	}
	fmt.Fprintln(w, "\nattempts:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  N\tSTARTED\tSTATUS\tLATENCY\tERROR")
	for _, a := range d.Attempts {
		code := "-"
		if a.StatusCode != 0 {
			code = fmt.Sprint(a.StatusCode)
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\n", a.N, a.StartedAt.UTC().Format(time.RFC3339), code, a.Latency.Round(time.Millisecond), a.Error)
	}
	_ = tw.Flush()
	for _, a := range d.Attempts {
		if a.Response != "" {
			fmt.Fprintf(w, "\nanswer to attempt %d (first %d bytes, as text):\n%s\n", a.N, outbox.MaxResponseBytes, indent(a.Response))
		}
	}
	if len(d.Replays) > 0 {
		fmt.Fprintln(w, "\nreplays:")
		for _, r := range d.Replays {
			fmt.Fprintf(w, "  %s by %s from %s: %s\n", r.At.UTC().Format(time.RFC3339), r.Actor, r.FromState, r.Reason)
		}
	}
}

// indent prefixes every line of s with four spaces, and makes control characters visible.
func indent(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' {
			return -1
		}
		return r
	}, s)
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
