package main

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// cgroupMemoryFiles hold the memory limit of the process's container: cgroup v2, then
// v1.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// memoryLimitShare is the part of the container's memory limit the Go heap is held to:
// the rest is for what the runtime does not count (the binary's pages, C memory).
const memoryLimitShare = 0.9

// setMemoryLimit holds the Go heap to memoryLimitShare of the container's memory
// limit, unless GOMEMLIMIT sets one. Without it the runtime lets the heap grow to
// twice what is live before it collects (GOGC=100), and a manager whose live heap is
// half its limit is killed for memory it did not need. It returns the limit set, or 0.
func setMemoryLimit(read func(string) ([]byte, error)) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	for _, f := range cgroupMemoryFiles {
		raw, err := read(f)
		if err != nil {
			continue
		}
		if limit, ok := parseCgroupLimit(string(raw)); ok {
			soft := int64(float64(limit) * memoryLimitShare)
			debug.SetMemoryLimit(soft)
			return soft
		}
		return 0
	}
	return 0
}

// parseCgroupLimit reads a cgroup memory limit: a byte count, or "max" (v2) or a
// count near the largest int64 (v1) for none.
func parseCgroupLimit(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if s == "max" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n >= 1<<62 {
		return 0, false
	}
	return n, true
}
