//go:build linux

package token

import (
	"syscall"
	"time"
	"unsafe"
)

// cpuClock is the CPU time used by this process (CLOCK_PROCESS_CPUTIME_ID),
// garbage collection included. Unlike wall time it does not grow while
// other processes run.
func cpuClock() time.Duration { return clock(2) }

// threadClock is the CPU time of the calling thread
// (CLOCK_THREAD_CPUTIME_ID); callers lock the goroutine to its thread.
func threadClock() time.Duration { return clock(3) }

func clock(id uintptr) time.Duration {
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, id, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		panic(e)
	}
	return time.Duration(ts.Nano())
}
