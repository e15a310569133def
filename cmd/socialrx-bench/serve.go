package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// serveProcs are `socialrx serve` processes draining a rig's PostgreSQL schema: the deployment the issue
// names (several instances behind a load balancer), each with its own pools, dispatcher and Go runtime.
type serveProcs struct {
	// ctx is cancelled as soon as any process exits (until stop, none should): a drain waits on it.
	ctx    context.Context
	cancel context.CancelFunc
	dir    string
	addrs  []string // each process's API listener (host:port)
	cmds   []*exec.Cmd
	done   []chan error
}

// startServe starts n `socialrx serve` processes of the binary bin on r's schema (r.dsn) with r's directory
// (written to a file in dir), each on a free loopback port, logging warnings and errors to a file in dir. They
// run the product's defaults (Concurrency, PerDestination, lease) with the directory's max_in_flight for the
// service (r.inFlight), as serve reads it, and skip nothing: migrations (already
// applied), listeners, sweepers.
func startServe(ctx context.Context, bin, dir string, r *rig, n int) (*serveProcs, error) {
	if r.dsn == "" {
		return nil, errors.New("serve processes need PostgreSQL")
	}
	directory := filepath.Join(dir, "serve-directory.yaml")
	if err := os.WriteFile(directory, []byte(benchDirectoryYAML(r.sinkURL, r.inFlight)), 0o600); err != nil {
		return nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	sp := &serveProcs{ctx: pctx, cancel: cancel, dir: dir}
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			_, _, _ = sp.stop()
			return nil, err
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("serve-%d.log", i+1)))
		if err != nil {
			_, _, _ = sp.stop()
			return nil, err
		}
		cmd := exec.CommandContext(ctx, bin, "serve")
		cmd.Env = append(os.Environ(), "SOCIALRX_ADDR="+addr, "SOCIALRX_DATABASE_URL="+r.dsn, "SOCIALRX_CONFIG="+directory,
			"SOCIALRX_LOG_LEVEL=warn", "SOCIALRX_LOG_FORMAT=json", fmt.Sprintf("GOMAXPROCS=%d", shareOfCores(n)))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			_ = logf.Close()
			_, _, _ = sp.stop()
			return nil, fmt.Errorf("start %s serve: %w", bin, err)
		}
		done := make(chan error, 1)
		go func() {
			err := cmd.Wait()
			_ = logf.Close()
			sp.cancel()
			done <- err
		}()
		sp.addrs, sp.cmds, sp.done = append(sp.addrs, addr), append(sp.cmds, cmd), append(sp.done, done)
	}
	return sp, nil
}

// stop sends SIGTERM to every process, waits for them (serve drains within 15 s; SIGKILL after 30 s) and
// returns the largest peak RSS among them, in KiB, the CPU time they used together (user and system), and
// the first failure (a process that had already exited, or did not exit 0).
func (sp *serveProcs) stop() (int64, time.Duration, error) {
	for _, c := range sp.cmds {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	defer sp.cancel()
	var (
		rss      int64
		cpu      time.Duration
		firstErr error
	)
	for i, c := range sp.cmds {
		var err error
		select {
		case err = <-sp.done[i]:
		case <-time.After(30 * time.Second):
			_ = c.Process.Kill()
			err = <-sp.done[i]
			if err == nil {
				err = errors.New("killed: no exit within 30 s of SIGTERM")
			}
		}
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("serve process %d: %w", i+1, err)
		}
		if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
			rss = max(rss, ru.Maxrss) // KiB on Linux
		}
		cpu += c.ProcessState.UserTime() + c.ProcessState.SystemTime()
	}
	return rss, cpu, firstErr
}

// shareOfCores is the GOMAXPROCS of each of n serve processes on this machine: its share of the cores (at
// least 1), as each of n instances on machines or containers of their own would have its own cores. With
// the default (every core) each, 3 processes on 2 cores used about 30 % more CPU a message than one, much of
// it in the Go scheduler's spinning for work (runtime.findRunnable: 0.56 s in one process's drain, 1.88 s in
// the three's), and drained at 0.83–0.91× one (issue 12).
func shareOfCores(n int) int {
	return max(runtime.NumCPU()/max(n, 1), 1)
}

// waitServing waits until every process answers GET /healthz with 200: it has opened (and warmed) its store
// and listens (serve starts its dispatcher just before). It returns the moment the last one did.
func (sp *serveProcs) waitServing(timeout time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(sp.ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for i, addr := range sp.addrs {
		for {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
			if err != nil {
				return time.Time{}, fmt.Errorf("serve process %d (%s): %w", i+1, addr, err)
			}
			if resp, err := client.Do(req); err == nil {
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-ctx.Done():
				if sp.ctx.Err() != nil {
					return time.Time{}, fmt.Errorf("serve process %d not serving: a process exited", i+1)
				}
				return time.Time{}, fmt.Errorf("serve process %d not serving after %s: %w", i+1, timeout, ctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return time.Now(), nil
}

// early describes why the drain's wait ended before the sink was full because a process exited: its exit and
// its log's last lines.
func (sp *serveProcs) early() error {
	for i := range sp.cmds {
		select {
		case err := <-sp.done[i]:
			sp.done[i] <- err // kept for stop
			b, _ := os.ReadFile(filepath.Join(sp.dir, fmt.Sprintf("serve-%d.log", i+1)))
			return fmt.Errorf("serve process %d exited during the drain (%v): %.2000s", i+1, err, b)
		default:
		}
	}
	return nil
}
