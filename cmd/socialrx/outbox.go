package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
)

// runOutbox is `socialrx outbox list|show|replay`, against the database of SOCIALRX_DATABASE_URL, through the
// same referral.Operator as the admin API.
func runOutbox(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"outbox needs a subcommand: list, show or replay"}
	}
	sub := args[0]
	fs := flag.NewFlagSet("outbox "+sub, flag.ContinueOnError)
	apply := settingsFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	state := fs.String("state", "", "pending|inflight|delivered|dead|cancelled")
	service := fs.String("service", "", "community service id")
	referralID := fs.String("referral", "", "referral id")
	olderThan := fs.Duration("older-than", 0, "only messages created longer ago than this (e.g. 1h)")
	limit := fs.Int("limit", 100, "at most this many messages")
	reason := fs.String("reason", "", "why you replay (recorded)")
	dryRun := fs.Bool("dry-run", false, "show what would be replayed; change nothing")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	settings, err := apply(getenv)
	if err != nil {
		return usageError{err.Error()}
	}
	store, err := openStore(ctx, settings, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	defer store.Close()
	op := referral.Operator{Store: store}

	filter := func() (outbox.MessageQuery, error) {
		q := outbox.MessageQuery{ServiceID: *service, ReferralID: *referralID, Limit: *limit}
		if *state != "" {
			st, err := outbox.ParseState(*state)
			if err != nil {
				return q, usageError{err.Error()}
			}
			q.States = []outbox.MessageState{st}
		}
		if *olderThan > 0 {
			q.CreatedBefore = time.Now().Add(-*olderThan)
		}
		return q, nil
	}
	switch sub {
	case "list":
		if len(pos) > 0 {
			return usageError{"list takes no arguments, only flags"}
		}
		q, err := filter()
		if err != nil {
			return err
		}
		msgs, err := op.List(ctx, q)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, referral.Views(msgs))
		}
		printMessages(stdout, msgs)
		return nil
	case "show":
		if len(pos) != 1 {
			return usageError{"show takes one message id"}
		}
		d, err := op.Show(ctx, pos[0])
		if errors.Is(err, outbox.ErrNotFound) {
			return fmt.Errorf("no message %s", pos[0])
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, referral.DetailViewOf(d))
		}
		printDetail(stdout, d)
		return nil
	case "replay":
		req := outbox.ReplayRequest{IDs: pos, Reason: *reason, Actor: "cli:" + firstNonEmpty(getenv("USER"), "unknown"), DryRun: *dryRun}
		if len(pos) == 0 {
			if *state == "" {
				return usageError{"replay needs message ids, or --state dead [--service ID]"}
			}
			q, err := filter()
			if err != nil {
				return err
			}
			req.Filter = &q
		} else if *state != "" || *service != "" || *referralID != "" {
			return usageError{"replay takes message ids or a filter, not both"}
		}
		msgs, err := op.Replay(ctx, req)
		if errors.Is(err, outbox.ErrBadRequest) {
			return usageError{err.Error()}
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, map[string]any{"dry_run": *dryRun, "replayed": referral.Views(msgs)})
		}
		verb := "replayed"
		if *dryRun {
			verb = "would replay"
		}
		fmt.Fprintf(stdout, "%s %d message(s)\n", verb, len(msgs))
		printMessages(stdout, msgs)
		return nil
	}
	return usageError{fmt.Sprintf("unknown outbox subcommand %q (list, show, replay)", sub)}
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

func printMessages(w io.Writer, msgs []outbox.Message) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tDESTINATION\tTYPE\tATTEMPTS\tCREATED\tLAST ERROR")
	for _, m := range msgs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", m.ID, m.State, m.Destination, m.Type, m.Attempts,
			m.CreatedAt.UTC().Format(time.RFC3339), truncate(m.LastError, 60))
	}
	_ = tw.Flush()
}

func printDetail(w io.Writer, d outbox.MessageDetail) {
	m := d.Message
	fmt.Fprintf(w, "message      %s\nreferral     %s\ndestination  %s\ntype         %s\nstate        %s\nattempts     %d\ncreated      %s\n",
		m.ID, m.ReferralID, m.Destination, m.Type, m.State, m.Attempts, m.CreatedAt.UTC().Format(time.RFC3339))
	if !m.NextAttemptAt.IsZero() && m.State == outbox.StatePending {
		fmt.Fprintf(w, "next attempt %s\n", m.NextAttemptAt.UTC().Format(time.RFC3339))
	}
	if !m.DeliveredAt.IsZero() {
		fmt.Fprintf(w, "delivered    %s\n", m.DeliveredAt.UTC().Format(time.RFC3339))
	}
	if m.LastError != "" {
		fmt.Fprintf(w, "last error   %s\n", m.LastError)
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
	if len(d.Replays) > 0 {
		fmt.Fprintln(w, "\nreplays:")
		for _, r := range d.Replays {
			fmt.Fprintf(w, "  %s by %s from %s: %s\n", r.At.UTC().Format(time.RFC3339), r.Actor, r.FromState, r.Reason)
		}
	}
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
