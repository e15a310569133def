package clitest

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// binPath is the socialrx binary TestMain builds once.
var binPath string

func TestMain(m *testing.M) {
	flag.Parse()
	goTool, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "clitest: find the go command:", err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "socialrx-clitest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "clitest:", err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "socialrx")
	if out, err := exec.Command(goTool, "build", "-o", binPath, "github.com/socialrx/socialrx/cmd/socialrx").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "clitest: go build ./cmd/socialrx: %v\n%s", err, out)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// run runs the binary in dir with a shell's environment (PATH, HOME, USER) and extra variables, and returns
// its exit code and output.
func run(t *testing.T, dir string, extra []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "USER=oncall"}, extra...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// TestEmptyDirectoryFailsClearlyAndCreatesNothing: the CLI run from a directory without a database (the
// default SOCIALRX_DATABASE_URL, sqlite:socialrx.db) answers every outbox command with exit 1 and an error
// naming the URL and the file it tried, and leaves the directory empty; only migrate creates the database,
// after which the same command works.
func TestEmptyDirectoryFailsClearlyAndCreatesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	abs := filepath.Join(dir, "socialrx.db")
	for _, args := range [][]string{
		{"outbox", "list"}, {"outbox", "list", "--state", "dead", "--json"}, {"outbox", "show", "0190a0a0-0000-7000-8000-000000000000"},
		{"outbox", "replay", "--state", "dead", "--reason", "x", "--actor", "a"}, {"outbox", "pauses"},
		{"outbox", "discard", "x", "--reason", "x", "--actor", "a"}, {"outbox", "pause", "frome-walks", "--reason", "x", "--actor", "a"},
		{"outbox", "resume", "frome-walks", "--actor", "a"},
	} {
		code, out, errOut := run(t, dir, nil, args...)
		if code != 1 || out != "" || !strings.Contains(errOut, "no socialrx database at sqlite:socialrx.db ("+abs+")") ||
			!strings.Contains(errOut, "nothing was created") {
			t.Errorf("%s in an empty directory: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("%s created %d files in the directory", strings.Join(args, " "), len(entries))
		}
	}
	if code, out, errOut := run(t, dir, nil, "migrate"); code != 0 || !strings.Contains(out, "schema up to date") {
		t.Fatalf("migrate: %d %s %s", code, out, errOut)
	}
	if code, out, errOut := run(t, dir, nil, "outbox", "list"); code != 0 || !strings.Contains(out, "0 message(s)") {
		t.Errorf("outbox list after migrate: %d %q %q", code, out, errOut)
	}
}

// TestHelpFromTheBinary: --help answers on stdout with exit 0 for the commands an engineer tries first.
func TestHelpFromTheBinary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, args := range [][]string{{"--help"}, {"outbox", "--help"}, {"outbox", "replay", "--help"}, {"hash-token", "--help"}, {"serve", "-h"}} {
		code, out, errOut := run(t, dir, nil, args...)
		if code != 0 || errOut != "" || !strings.Contains(out, "socialrx") {
			t.Errorf("%s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("--help created %d files", len(entries))
	}
}
