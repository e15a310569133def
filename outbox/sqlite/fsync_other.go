//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package sqlite

import "errors"

// canDeferSyncs: on this platform SQLite syncs every commit on the writer itself.
const canDeferSyncs = false

// fsyncFD is never called here.
func fsyncFD(int) error { return errors.ErrUnsupported }
