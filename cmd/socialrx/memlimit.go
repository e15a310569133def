package main

import (
	"log/slog"
	"math"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/socialrx/socialrx/config"
)

// defaultMemoryLimit is the Go runtime's soft memory limit socialrx sets when GOMEMLIMIT is not set: three
// quarters of the container's memory limit (cgroup v2 memory.max, or v1 memory.limit_in_bytes) when there is
// one, at most 512 MiB. Request memory is bounded by the body slots (SOCIALRX_MAX_CONCURRENT_BODIES × what a
// maximum-size body costs, about 16 MiB), far below that; the soft limit makes the garbage collector return
// memory before the heap grows past it. 0: leave the runtime's default (GOMEMLIMIT is set: the operator
// decides).
func defaultMemoryLimit(getenv func(string) string, readFile func(string) ([]byte, error)) int64 {
	const ceiling = 512 << 20
	if getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit := int64(ceiling)
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := readFile(p)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || n <= 0 || n >= math.MaxInt64/2 { // "max", or the v1 "no limit" value
			continue
		}
		limit = min(limit, n/4*3)
		break
	}
	return limit
}

// applyMemoryLimit sets the default soft memory limit (defaultMemoryLimit) and logs what applies.
func applyMemoryLimit(log *slog.Logger, getenv func(string) string, readFile func(string) ([]byte, error)) {
	if n := defaultMemoryLimit(getenv, readFile); n > 0 {
		debug.SetMemoryLimit(n)
		log.Info("memory soft limit (GOMEMLIMIT unset)", "bytes", n)
		return
	}
	log.Info("memory soft limit from GOMEMLIMIT", "GOMEMLIMIT", getenv("GOMEMLIMIT"))
}

// applyGCPercent sets the garbage collector's target to config.DefaultGCPercent unless GOGC sets it, and logs
// what applies.
func applyGCPercent(log *slog.Logger, getenv func(string) string) {
	if p := config.ApplyGCPercent(getenv); p > 0 {
		log.Info("garbage collector target (socialrx's default)", "percent", p)
		return
	}
	log.Info("garbage collector target from GOGC", "GOGC", getenv("GOGC"))
}
