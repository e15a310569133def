package config

import (
	"runtime/debug"
	"strconv"
)

// DefaultGCPercent is the garbage collector's target (GOGC) of a socialrx server when GOGC is not set: the heap
// may grow to three times what the last collection left live before the next one starts (Go's default, 100,
// lets it double). A delivery allocates about 65 KB (the rows it reads and writes, the request and its answer),
// and at 100 the collector took about 13 % of the process's CPU in a backlog's drain. At 200, interleaved with
// 100 (issue 12, twenty-third session), the process's CPU a delivered message fell by a tenth to a fifth, for
// 8–35 MiB more resident memory while draining. The soft memory limit (GOMEMLIMIT, or socialrx's default)
// still bounds the heap: near it the collector runs as often as it must.
const DefaultGCPercent = 200

// GCPercent is the garbage collector's target a server process should set: DefaultGCPercent, or 0 when GOGC
// holds a setting the Go runtime takes ("off" or a number: the operator decides, and the runtime has already
// applied it). A GOGC the runtime ignores is treated as unset.
func GCPercent(getenv func(string) string) int {
	switch v := getenv("GOGC"); {
	case v == "off":
		return 0
	case v != "":
		if _, err := strconv.Atoi(v); err == nil {
			return 0
		}
	}
	return DefaultGCPercent
}

// ApplyGCPercent sets the garbage collector's target to GCPercent's, when it gives one, and returns what it set
// (0: nothing, GOGC decides).
func ApplyGCPercent(getenv func(string) string) int {
	p := GCPercent(getenv)
	if p > 0 {
		debug.SetGCPercent(p)
	}
	return p
}
