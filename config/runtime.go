package config

// DefaultGCPercent is the garbage collector's target (GOGC) of a socialrx server when GOGC is not set: a
// collection starts once the heap has grown by twice what the last one left live, not once (Go's default of
// 100). Delivery allocates about 65 KB a message (the rows it reads and writes, the request and its answer),
// and at 100 the collector took about 13 % of the process's CPU in a backlog's drain. At 200, interleaved with 100
// (issue 12, twenty-third session), the process's CPU a delivered message fell by about a tenth and drains ran
// faster on both backends, for 10–20 MiB more resident memory while draining. The soft memory limit
// (GOMEMLIMIT, or socialrx's default) still bounds the heap: near it the collector runs as often as it must.
const DefaultGCPercent = 200

// GCPercent is the garbage collector's target a server process should set: DefaultGCPercent, or 0 when GOGC
// is set (the operator decides, and the Go runtime has already applied it).
func GCPercent(getenv func(string) string) int {
	if getenv("GOGC") != "" {
		return 0
	}
	return DefaultGCPercent
}
