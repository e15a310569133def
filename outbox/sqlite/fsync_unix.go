//go:build linux || darwin || freebsd || netbsd || openbsd

package sqlite

import "syscall"

// canDeferSyncs: the syncer can sync the WAL by its descriptor on this platform.
const canDeferSyncs = true

// fsyncFD syncs the file open as fd.
func fsyncFD(fd int) error { return syscall.Fsync(fd) }
