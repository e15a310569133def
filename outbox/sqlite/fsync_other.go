//go:build !linux

package sqlite

import "errors"

// canDeferSyncs: on this platform SQLite syncs every commit on the writer itself.
const canDeferSyncs = false

// fsyncFD is never called here.
func fsyncFD(int) error { return errors.ErrUnsupported }

// unixFileLayout is not checked here: no descriptor is read.
func unixFileLayout(int32) bool { return false }
