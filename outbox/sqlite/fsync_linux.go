package sqlite

import (
	"errors"
	"syscall"
	"unsafe"

	lib "modernc.org/sqlite/lib"
)

// canDeferSyncs: the syncer can sync the WAL by its descriptor on this platform.
const canDeferSyncs = true

// fsyncFD syncs the file open as fd, again when a signal interrupts it (as os.File.Sync does).
func fsyncFD(fd int) error {
	for {
		if err := syscall.Fsync(fd); !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// unixFileLayout reports whether the default VFS's file objects (szOsFile bytes) are this SQLite's unixFile,
// which begins as unixFileHead.
func unixFileLayout(szOsFile int32) bool {
	return uintptr(szOsFile) == unsafe.Sizeof(lib.TunixFile{}) &&
		unsafe.Offsetof(lib.TunixFile{}.Fh) == unsafe.Offsetof(unixFileHead{}.h)
}
