package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// commandHelp is what `socialrx COMMAND --help` says of a command besides its flags.
type commandHelp struct {
	synopsis string // after "socialrx <name>"
	about    string // what it does, in a few lines
}

// helps is the help of every command and subcommand, by the name of its flag set (which is how it is typed).
// Every command answers --help (and -h) with this and every flag it parses, its meaning and its default, on
// stdout, exit 0.
var helps = map[string]commandHelp{
	"serve": {"[flags]", `Runs the service: the FHIR, community and admin APIs, the community inbox, the operations
console, the outbox dispatcher and the overdue sweeper. Creates and migrates the database if needed.
Stops gracefully on SIGINT or SIGTERM.`},
	"migrate": {"[flags]", `Creates the database (SQLite) or the schema tables (PostgreSQL) if needed and applies every
migration. Only serve and migrate ever create or change a schema.`},
	"outbox": {"SUBCOMMAND [flags]", `Operates the outbox against the database of SOCIALRX_DATABASE_URL, the same code path as the
admin API and the console. It never creates nor migrates a database: a missing database or an
unmigrated schema is an error naming the URL it tried.

Subcommands:
  list      list messages (every match, paged internally)
  show      one message with every attempt (and the receiver's answer), replay and discard
  replay    send messages again (by id, or every dead message matching a filter, paced)
  discard   retire messages for good: they will never be sent
  pause     hold the deliveries to a community service (its messages stay pending)
  resume    end a pause: the held messages are delivered, in order
  pauses    list the paused services

Run socialrx outbox SUBCOMMAND --help for its flags.`},
	"outbox list": {"[--state S[,S…]] [--service ID] [--referral ID] [--type T[,T…]] [--older-than D] [--limit N] [--json]",
		`Lists every outbox message that matches, oldest first, reading the database a page at a time (a
filter matching 10,000 messages lists 10,000). Messages of a paused service say so.`},
	"audit": {"SUBCOMMAND [flags]", `Reads and checks the audit trail (every read and change of patient data: who, what, when, from
where, the server's request id and the client's) in the database of SOCIALRX_DATABASE_URL. It
never creates nor migrates a database.

Subcommands:
  list      the records that match, oldest first (paged internally)
  verify    check every hash chain: reports each record changed, deleted, inserted or reordered

Run socialrx audit SUBCOMMAND --help for its flags.`},
	"audit list": {"[--referral ID] [--client ID] [--since T] [--until T] [--limit N] [--json]",
		`Lists the audit records that match, oldest first: time, actor and role, route, action, resource,
referral, client address and request id.`},
	"audit verify": {"[--json]", `Walks every chain of the audit trail and recomputes each record's hash. Prints each chain (its
writer, records and head hash: keep the heads elsewhere to prove later that nothing was rewritten) and
every problem: a record changed, deleted, inserted or reordered. Exit 0 when intact, 1 otherwise.`},
	"outbox show": {"ID [--actor NAME] [--json]", `Shows one message: its state, every attempt (time, HTTP status, latency, error and the start
of the receiver's answer), every replay, and the discard if it was discarded.`},
	"outbox replay": {"(ID… | --state dead [--service ID] [--referral ID] [--type T] [--older-than D] [--limit N]) --reason TEXT [flags]",
		`Sends messages again: named ones, or every dead message matching the filter (paged internally;
the count printed is the number changed; --dry-run finds exactly the same messages). A replay keeps
the message id (receivers dedupe on it), records your name and reason, and moves the message back to
pending. Filtered replays are paced (--rate) so that a receiver that just recovered is not flooded.`},
	"outbox discard": {"ID… --reason TEXT [--actor NAME] [--dry-run] [--json]", `Retires pending or dead messages for good: they become discarded and are never sent. Your
name and reason are recorded; the referral's Task shows delivery-failed. A message being delivered
right now (inflight) is refused: pause its service first.`},
	"outbox pause": {"SERVICE --reason TEXT [--actor NAME] [--json]", `Holds the deliveries to a community service on every instance: its messages stay pending, no
attempt is made and their retry budget does not run out. Pausing a paused service changes nothing.`},
	"outbox resume": {"SERVICE [--actor NAME] [--json]", `Ends a service's pause: its held messages are due at once and delivered in order, and the
paused time is given back to their retry budgets.`},
	"outbox pauses": {"[--json]", `Lists the paused services: since when, by whom and why.`},
	"prune": {"[--dry-run] [--delivered-days N] [--closed-months N] [--json] [flags]", `Applies the retention periods now (serve also does, every SOCIALRX_RETENTION_INTERVAL): delivered
messages' payloads older than the days are scrubbed (their metadata, a SHA-256 and their attempts kept);
closed referrals last changed longer ago than the months lose their personal fields; dead messages are
never scrubbed. Safe while serve runs, on either backend (a batch per short transaction). Progress on
stderr; --dry-run counts the same selection and changes nothing. It never creates nor migrates a database.`},
	"hash-token": {"[TOKEN]", `Prints the SHA-256 hex of a client token, the form the directory file stores (token_sha256).
Without TOKEN it reads the token from stdin (so that it stays out of the shell history). A token
that starts with "-" goes after "--".`},
	"jwks":             {"[--kid K] KEY.pem", `Prints a client's directory jwks entry (a public JWK Set) for an RSA or EC P-384 key.`},
	"client-assertion": {"--key KEY.pem --kid K --client ID [--aud URL] [--ttl D]", `Signs a SMART Backend Services client assertion (a JWT) and prints it.`},
	"demo-receiver":    {"[--addr A] [--secret whsec_…]", `A webhook receiver for the demo: verifies each signature, drops duplicates and prints each event.`},
	"version":          {"", `Prints the version.`},
	"help":             {"[COMMAND [SUBCOMMAND]]", `Prints the help of socialrx, or of one command.`},
}

// helpShown is returned by parseFlags for -h or --help: CLI prints text on stdout and exits 0.
type helpShown struct{ text string }

func (h helpShown) Error() string { return "help requested" }

// helpText renders the help of the command whose flag set is fs.
func helpText(fs *flag.FlagSet) string {
	h := helps[fs.Name()]
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: socialrx %s %s\n\n%s\n", fs.Name(), h.synopsis, h.about)
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	if len(flags) == 0 {
		return b.String()
	}
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	b.WriteString("\nFlags:\n")
	for _, f := range flags {
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(&b, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(&b, " %s", name)
		}
		fmt.Fprintf(&b, "\n      %s", usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			fmt.Fprintf(&b, " (default %s)", f.DefValue)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// parseFlags parses fs, turning flag errors into usage errors and -h/--help into helpShown.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return helpShown{helpText(fs)}
		}
		return usageError{err.Error() + " (see --help)"}
	}
	return nil
}
