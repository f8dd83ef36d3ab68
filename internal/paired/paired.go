// Package paired runs the benchmarks that put a component next to a bare baseline:
// batches of each kind of request in turn, timed with the process's CPU clock, so the
// load of a shared machine weighs on all of them alike. The validator's and the
// exchange's benchmarks use it; nothing else should.
package paired

import (
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// Batch is how many runs of a step go between two readings of the CPU clock: enough
// to dwarf the reading itself.
const Batch = 10

// Client is shared by the HTTP benchmarks: keep-alive, no compression.
var Client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}

// Get sends GET url with tok as its bearer token and fails b unless the answer is 200.
func Get(b *testing.B, url, tok string) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := Client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// CPUTime is the CPU time the process (client, server and runtime alike) has used.
// On a machine shared with other jobs, wall time also counts the time they hold the
// CPU; CPU time does not, and it is what bounds throughput once the CPU is busy.
func CPUTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// InTurn runs Batch runs of each step in turn, for as long as b asks, and returns
// the CPU time each step took per run.
func InTurn(b *testing.B, steps ...func(i int)) []float64 {
	total := make([]time.Duration, len(steps))
	n := 0
	for b.Loop() {
		for k, step := range steps {
			t0 := CPUTime(b)
			for j := range Batch {
				step(n*Batch + j)
			}
			total[k] += CPUTime(b) - t0
		}
		n++
	}
	out := make([]float64, len(steps))
	for k := range total {
		out[k] = float64(total[k]) / float64(n*Batch)
	}
	return out
}
