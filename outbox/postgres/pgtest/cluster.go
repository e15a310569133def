package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a private PostgreSQL server that a test starts and stops (pg_ctl) to see what socialrx does when
// its database goes away and comes back: its own data directory in a temporary folder, its own port on
// loopback, trust authentication, removed when the test ends.
type Cluster struct {
	t       testing.TB
	bin     string // the folder of initdb, pg_ctl and postgres
	dir     string // data directory
	port    int
	runAs   string // "postgres" when the test runs as root (initdb refuses root), else ""
	logf    string
	stopped bool
}

// NewCluster creates and starts a private cluster for t, stopped and removed when t ends. Without the
// PostgreSQL server binaries (initdb, pg_ctl: Debian's postgresql package puts them in
// /usr/lib/postgresql/<version>/bin), the test is skipped with a message, or fails when CI is set.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, err := serverBin()
	if err != nil {
		msg := "a private PostgreSQL cluster needs the server binaries (initdb, pg_ctl): " + err.Error()
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	root, err := os.MkdirTemp("", "socialrx-pgcluster-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, bin: bin, dir: filepath.Join(root, "data"), logf: filepath.Join(root, "server.log")}
	t.Cleanup(func() {
		if !c.stopped {
			_ = c.pgctl("stop", "-m", "immediate")
		}
		_ = os.RemoveAll(root)
	})
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root: run them as the postgres user, in folders it owns.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skipf("running as root without a postgres user to run the private cluster as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(root, uid, gid); err != nil {
			t.Fatal(err)
		}
		c.runAs = "postgres"
	}
	if out, err := c.command(filepath.Join(bin, "initdb"), "-D", c.dir, "-U", "postgres", "--auth=trust",
		"--no-sync", "-E", "UTF8", "--locale=C").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	c.port = freePort(t)
	c.Start()
	return c
}

// serverBin finds the folder of initdb and pg_ctl: on PATH, or the newest /usr/lib/postgresql/*/bin.
func serverBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("not on PATH nor in /usr/lib/postgresql/*/bin")
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	if c.runAs != "" {
		return exec.Command("runuser", append([]string{"-u", c.runAs, "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

func (c *Cluster) pgctl(args ...string) error {
	full := append(args, "-D", c.dir, "-w", "-t", "60")
	out, err := c.command(filepath.Join(c.bin, "pg_ctl"), full...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// URL is the cluster's postgres database (the server may be stopped).
func (c *Cluster) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// Start starts the server (again) on the same port and waits until it accepts connections.
func (c *Cluster) Start() {
	c.t.Helper()
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories='%s' -c fsync=off -c max_connections=60",
		c.port, filepath.Dir(c.dir))
	if err := c.pgctl("start", "-l", c.logf, "-o", opts); err != nil {
		c.t.Fatal(err)
	}
	c.stopped = false
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", c.URL())
	if err != nil {
		c.t.Fatal(err)
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		c.t.Fatalf("the private cluster does not answer after start: %v", err)
	}
}

// Stop stops the server (fast shutdown: sessions are ended, as when an operator stops the service).
func (c *Cluster) Stop() {
	c.t.Helper()
	if err := c.pgctl("stop", "-m", "fast"); err != nil {
		c.t.Fatal(err)
	}
	c.stopped = true
}
