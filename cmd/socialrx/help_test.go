package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/config"
)

// TestHelpOnEveryCommand: every command and subcommand answers --help and -h on stdout with exit 0 (never
// running: serve does not start, hash-token hashes nothing), starting with its usage, and documents each of
// its flags with a description; `socialrx help CMD` says the same.
func TestHelpOnEveryCommand(t *testing.T) {
	t.Parallel()
	settings := []string{"addr", "database-url", "config", "log-level", "log-format"}
	filter := []string{"state", "service", "referral", "type", "older-than", "limit"}
	commands := map[string][]string{
		"serve":            settings,
		"migrate":          settings,
		"outbox":           nil,
		"outbox list":      append(append([]string{"json"}, filter...), settings...),
		"outbox show":      append([]string{"json", "actor"}, settings...),
		"outbox replay":    append(append([]string{"json", "reason", "actor", "dry-run", "rate"}, filter...), settings...),
		"outbox discard":   append([]string{"json", "reason", "actor", "dry-run"}, settings...),
		"outbox pause":     append([]string{"json", "reason", "actor"}, settings...),
		"outbox resume":    append([]string{"json", "actor"}, settings...),
		"outbox pauses":    append([]string{"json"}, settings...),
		"hash-token":       nil,
		"jwks":             {"kid"},
		"client-assertion": {"key", "kid", "client", "aud", "ttl"},
		"demo-receiver":    {"addr", "secret"},
		"version":          nil,
		"audit":            nil,
		"audit list":       append([]string{"json", "referral", "client", "since", "until", "limit"}, settings...),
		"audit verify":     append([]string{"json"}, settings...),
	}
	flagLine := regexp.MustCompile(`(?m)^  --([a-z-]+)[^\n]*\n {6}(\S[^\n]*)$`)
	for name, flags := range commands {
		args := strings.Fields(name)
		for _, h := range []string{"--help", "-h"} {
			code, out, errOut := cliRun(nil, append(args, h)...)
			if code != 0 || errOut != "" || !strings.HasPrefix(out, "Usage: socialrx "+name+" ") {
				t.Errorf("%s %s: exit %d, stderr %q, stdout %q", name, h, code, errOut, firstLine(out))
				continue
			}
			documented := map[string]bool{}
			for _, m := range flagLine.FindAllStringSubmatch(out, -1) {
				documented[m[1]] = len(m[2]) > 10
			}
			for _, f := range flags {
				if !documented[f] {
					t.Errorf("%s %s does not document --%s:\n%s", name, h, f, out)
				}
			}
			if len(documented) != len(flags) {
				t.Errorf("%s %s documents %d flags, want %d (%v):\n%s", name, h, len(documented), len(flags), flags, out)
			}
		}
		_, viaHelp, _ := cliRun(nil, append([]string{"help"}, args...)...)
		if _, direct, _ := cliRun(nil, append(args, "--help")...); viaHelp != direct {
			t.Errorf("socialrx help %s differs from %s --help", name, name)
		}
	}
	if _, out, _ := cliRun(nil, "hash-token", "--help"); strings.Contains(out, config.HashToken("--help")) {
		t.Error("hash-token --help printed the hash of \"--help\"")
	}
	if code, out, _ := cliRun(nil, "hash-token", "--", "-starts-with-a-dash"); code != 0 || strings.TrimSpace(out) != config.HashToken("-starts-with-a-dash") {
		t.Errorf("hash-token -- TOKEN: %d %q", code, out)
	}
	if code, out, _ := cliRun(nil, "outbox", "--help"); code != 0 || !strings.Contains(out, "pause ") || !strings.Contains(out, "discard ") {
		t.Errorf("outbox --help lists no subcommands: %d %s", code, out)
	}
	if code, _, errOut := cliRun(nil, "outbox", "list", "--bogus"); code != exitUsage || !strings.Contains(errOut, "--help") {
		t.Errorf("unknown flag: %d %q", code, errOut)
	}
}
