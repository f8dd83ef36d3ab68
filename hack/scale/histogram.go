package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// histogram counts values into bins equal bins over [lo, hi]; hi falls in the last.
func histogram(values []float64, lo, hi float64, bins int) []int {
	out := make([]int, bins)
	if bins == 0 {
		return out
	}
	width := (hi - lo) / float64(bins)
	for _, v := range values {
		i := 0
		if width > 0 {
			i = int(math.Floor((v - lo) / width))
		}
		out[max(0, min(bins-1, i))]++
	}
	return out
}

// renewalLoad is when the tokens of a run fall due: with the jitter they were given,
// and as they would without it (renewBefore before expiry, exactly), in the same bins.
type renewalLoad struct {
	From    time.Time     `json:"from"`
	Bin     time.Duration `json:"bin"`
	Jitter  []int         `json:"withJitter"`
	Nominal []int         `json:"withoutJitter"`
}

// nominalRenewal is when t would fall due without jitter.
func nominalRenewal(t tokenState) time.Time {
	before := t.renewLater
	life := t.expiresAt.Sub(t.issuedAt)
	if before <= 0 || before >= life {
		before = life / 3
	}
	return t.expiresAt.Add(-before)
}

// loadOf bins the renewal times of states into bins bins spanning both sets.
func loadOf(states []tokenState, bins int) renewalLoad {
	var jit, nom []float64
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, t := range states {
		if t.renewal.IsZero() || t.expiresAt.IsZero() {
			continue
		}
		j, n := float64(t.renewal.Unix()), float64(nominalRenewal(t).Unix())
		jit, nom = append(jit, j), append(nom, n)
		lo, hi = math.Min(lo, math.Min(j, n)), math.Max(hi, math.Max(j, n))
	}
	if len(jit) == 0 {
		return renewalLoad{}
	}
	return renewalLoad{
		From:    time.Unix(int64(lo), 0).UTC(),
		Bin:     time.Duration((hi-lo)/float64(bins)) * time.Second,
		Jitter:  histogram(jit, lo, hi, bins),
		Nominal: histogram(nom, lo, hi, bins),
	}
}

// table renders the load as rows: bin start (from the first), with and without jitter.
func (l renewalLoad) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "| due from first + | with jitter | without |\n|---|---|---|\n")
	for i := range l.Jitter {
		fmt.Fprintf(&b, "| %s | %d | %d |\n", (time.Duration(i) * l.Bin).Round(time.Second), l.Jitter[i], l.Nominal[i])
	}
	return b.String()
}
