// Package disktest gives tests a real disk that fills up: a small tmpfs mounted for the test, and a filler
// file that takes every free byte until the test frees it (ENOSPC from the kernel, not an injected error).
// Mounting needs root: without it the test is skipped with a message, or fails when CI is set.
package disktest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a new folder for t, unmounted and removed when t ends.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	skip := func(msg string) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if os.Geteuid() != 0 {
		skip("a full-disk test mounts a small tmpfs, which needs root")
	}
	dir, err := os.MkdirTemp("", "socialrx-fulldisk-")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10)+",mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		_ = os.Remove(dir)
		skip("mount tmpfs: " + err.Error() + ": " + string(bytes.TrimSpace(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
		_ = os.Remove(dir)
	})
	return dir
}

// Fill writes a filler file in dir until the disk is full (the kernel answers ENOSPC) and returns the
// function that removes it again.
func Fill(t testing.TB, dir string) (free func()) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err = f.Write(buf); err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the disk: %v, want ENOSPC", err)
	}
	// Take the last partial block too.
	for _, n := range []int{4096, 512, 1} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
	_ = f.Close()
	return func() {
		if err := os.Remove(path); err != nil {
			t.Error(err)
		}
	}
}
