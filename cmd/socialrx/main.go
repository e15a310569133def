// Command socialrx is the social-prescribing FHIR adapter: `socialrx serve` runs the service; the other
// subcommands operate it (migrate, outbox list|show|replay, hash-token, version, demo-receiver).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/socialrx/socialrx/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := CLI(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `socialrx — social-prescribing FHIR R4 adapter

Usage:
  socialrx serve [flags]                 run the service (FHIR, community, admin APIs, console; outbox dispatcher)
  socialrx migrate [flags]               create or upgrade the database schema
  socialrx outbox list [--state S] [--service ID] [--referral ID] [--type T] [--older-than D] [--limit N] [--json]
  socialrx outbox show ID [--actor NAME] [--json]
  socialrx outbox replay (ID… | --state dead [--service ID] …) --reason TEXT [--actor NAME] [--rate N] [--dry-run]
  socialrx outbox discard ID… --reason TEXT [--actor NAME] [--dry-run]
  socialrx outbox pause SERVICE --reason TEXT [--actor NAME]
  socialrx outbox resume SERVICE [--actor NAME]
  socialrx outbox pauses
  socialrx prune [--dry-run] [--delivered-days N] [--closed-months N] [--json]
                                         apply the retention periods now (README "Patient data"); safe while serve runs
  socialrx audit list [--referral ID] [--client ID] [--since T] [--until T] [--limit N] [--json]
  socialrx audit verify [--json]         check the audit trail's hash chains (exit 1 when tampered with)
  socialrx hash-token [TOKEN]            print the SHA-256 hex of a client token (reads stdin without TOKEN)
  socialrx jwks [--kid K] KEY.pem        print a client's directory jwks (public JWK Set) for an RSA or P-384 key
  socialrx client-assertion --key KEY.pem --kid K --client ID [--aud URL]
                                         sign a SMART Backend Services client assertion (prints the JWT)
  socialrx demo-receiver [--addr A]      a webhook receiver for the demo that verifies and prints events
  socialrx version
  socialrx help [COMMAND [SUBCOMMAND]]   this text, or a command's (as COMMAND --help does)

Every command and subcommand answers --help with its flags.

Settings (flags override): SOCIALRX_ADDR (127.0.0.1:8080), SOCIALRX_DATABASE_URL (sqlite:socialrx.db or
postgres://…), SOCIALRX_CONFIG (directory file; unset: embedded demo), SOCIALRX_LOG_LEVEL (info),
SOCIALRX_LOG_FORMAT (text|json), SOCIALRX_RETRY_BUDGET (72h), SOCIALRX_DELIVERY_TIMEOUT (10s),
SOCIALRX_DELIVERY_LEASE (derived from the timeout), SOCIALRX_ACK_DEADLINE (72h),
SOCIALRX_MAX_BODY_BYTES (1048576), SOCIALRX_TOKEN_KEY (signs SMART access tokens; base64, 32+ bytes),
SOCIALRX_BASE_URL (the public URL of every absolute URL socialrx writes; unset: http://<listen address>),
SOCIALRX_CORS_ORIGINS (browser origins allowed to call the FHIR API; unset: CORS off),
SOCIALRX_INBOX_IDLE_TIMEOUT (30m), SOCIALRX_INBOX_SESSION_MAX (8h).
Retention (README "Patient data"): SOCIALRX_RETAIN_DELIVERED_DAYS (30), SOCIALRX_RETAIN_CLOSED_MONTHS (24),
SOCIALRX_RETENTION_INTERVAL (1h); 0 days or months: keep for ever.
Security (README "Security"): SOCIALRX_SECRET_KEY (encrypts stored credentials; base64, 32 bytes),
SOCIALRX_SECRET_KEY_PREVIOUS, SOCIALRX_RATE_GP|COMMUNITY|ADMIN|TOKEN|AUTH_FAILURES|BODY_BYTES (RATE,BURST or off),
SOCIALRX_MAX_CONCURRENT_BODIES (16), SOCIALRX_MAX_CONCURRENT_BODIES_PER_CLIENT (4), SOCIALRX_REFUSAL_DELAY (1s),
SOCIALRX_SUBSCRIPTIONS_PER_CLIENT (10), SOCIALRX_TRUSTED_PROXIES, SOCIALRX_METRICS_TOKEN, SOCIALRX_METRICS_ADDR,
SOCIALRX_METRICS_SUBSCRIPTION_IDS, SOCIALRX_DEMO_PUBLIC, GOMEMLIMIT, GOGC (200).
SOCIALRX_ACTOR (who runs the outbox commands that change something or show patient data; --actor overrides).
`

// exitUsage is the exit code for a command-line mistake.
const exitUsage = 2

// CLI runs socialrx with the given arguments and environment; it returns the process exit code. It is the
// whole program, so tests run it in-process exactly as the binary does. The serve command runs a Main.
func CLI(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "serve":
		err = runServe(ctx, args[1:], getenv, stderr)
	case "migrate":
		err = runMigrate(ctx, args[1:], getenv, stdout, stderr)
	case "outbox":
		err = runOutbox(ctx, args[1:], getenv, stdout, stderr)
	case "audit":
		err = runAudit(ctx, args[1:], getenv, stdout, stderr)
	case "hash-token":
		err = runHashToken(args[1:], stdin, stdout)
	case "prune":
		err = runPrune(ctx, args[1:], getenv, stdout, stderr)
	case "help":
		if len(args) > 1 {
			return CLI(ctx, append(slices.Clone(args[1:]), "--help"), getenv, stdin, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
	case "demo-receiver":
		err = runDemoReceiver(ctx, args[1:], stdout, stderr)
	case "jwks":
		err = runJWKS(args[1:], stdout)
	case "client-assertion":
		err = runClientAssertion(args[1:], stdout)
	case "version", "--version", "-version":
		err = runVersion(args[1:], stdout)
	case "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "socialrx: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	if err != nil {
		var ue usageError
		var help helpShown
		if errors.As(err, &help) {
			fmt.Fprint(stdout, help.text)
			return 0
		}
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "socialrx %s: %v\n", args[0], err)
			return exitUsage
		}
		fmt.Fprintf(stderr, "socialrx %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// usageError is a command-line mistake (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// settingsFlags binds the process-setting flags shared by serve, migrate and outbox.
func settingsFlags(fs *flag.FlagSet) (apply func(getenv func(string) string) (config.Settings, error)) {
	addrHelp := "listen `address` (SOCIALRX_ADDR)"
	if fs.Name() != "serve" {
		addrHelp = "listen `address` (SOCIALRX_ADDR; used by serve only, accepted here for scripts that pass it to every command)"
	}
	addr := fs.String("addr", "", addrHelp)
	db := fs.String("database-url", "", "the database: sqlite:`PATH` or postgres://… (SOCIALRX_DATABASE_URL; default sqlite:socialrx.db)")
	cfg := fs.String("config", "", "directory `file` (SOCIALRX_CONFIG); unset: the embedded demo")
	level := fs.String("log-level", "", "`level`: debug|info|warn|error (SOCIALRX_LOG_LEVEL; default info)")
	format := fs.String("log-format", "", "`format`: text|json (SOCIALRX_LOG_FORMAT; default text)")
	return func(getenv func(string) string) (config.Settings, error) {
		over := map[string]string{
			"SOCIALRX_ADDR": *addr, "SOCIALRX_DATABASE_URL": *db, "SOCIALRX_CONFIG": *cfg,
			"SOCIALRX_LOG_LEVEL": *level, "SOCIALRX_LOG_FORMAT": *format,
		}
		return config.FromEnv(config.Defaults(), func(k string) string {
			if v := over[k]; v != "" {
				return v
			}
			return getenv(k)
		})
	}
}

// newLogger builds the process logger from the settings.
func newLogger(s config.Settings, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(s.LogLevel)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if s.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// runVersion prints the version.
func runVersion(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"version takes no arguments"}
	}
	fmt.Fprintln(stdout, "socialrx", version)
	return nil
}

// runHashToken prints the SHA-256 hex of a token (never of a flag: --help prints the help).
func runHashToken(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("hash-token", flag.ContinueOnError)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	args = fs.Args()
	var token string
	switch len(args) {
	case 0:
		b, err := io.ReadAll(io.LimitReader(stdin, 4096))
		if err != nil {
			return fmt.Errorf("read token: %w", err)
		}
		token = string(b)
		for len(token) > 0 && (token[len(token)-1] == '\n' || token[len(token)-1] == '\r') {
			token = token[:len(token)-1]
		}
	case 1:
		token = args[0]
	default:
		return usageError{"hash-token takes one token (or reads it from stdin)"}
	}
	if token == "" {
		return usageError{"empty token"}
	}
	fmt.Fprintln(stdout, config.HashToken(token))
	return nil
}
