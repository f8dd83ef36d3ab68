//go:build !linux

package token

import "time"

var processStart = time.Now()

// cpuClock and threadClock fall back to wall time where we have no CPU
// clocks.
func cpuClock() time.Duration { return time.Since(processStart) }

func threadClock() time.Duration { return time.Since(processStart) }
