package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// reconcileTotal sums controller_runtime_reconcile_total of controller in a metrics
// page.
func reconcileTotal(r io.Reader, controller string) (float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return 0, err
	}
	var total float64
	if f, ok := families["controller_runtime_reconcile_total"]; ok {
		for _, m := range f.GetMetric() {
			if labels(m.GetLabel())["controller"] == controller {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total, nil
}

// stormPhase creates o.storm APITokens of the shortest lifetime that leaves time to
// watch (2m: due 80s after their mint, less up to 4s of jitter) and records the
// second each first rotation was minted in.
func (e *env) stormPhase(ctx context.Context) (*stormReport, error) {
	n := e.o.storm
	logf("Storm: %d APITokens of 2m lifetime, due together about 80s after their mint", n)
	w, err := watchTokens(ctx, e.cp.Config, stormNamespace)
	if err != nil {
		return nil, err
	}
	defer w.stop()
	if err := e.parallel(n, func(i int) error {
		return e.client.Create(ctx, benchToken(stormNamespace, tokenName(i), 2*time.Minute))
	}); err != nil {
		return nil, err
	}
	if _, err := w.waitFor(ctx, n, 0, timeoutFor(n), "Ready"); err != nil {
		return nil, err
	}
	var first, last time.Time
	for _, t := range w.states() {
		if first.IsZero() || t.renewal.Before(first) {
			first = t.renewal
		}
		if t.renewal.After(last) {
			last = t.renewal
		}
	}
	if _, err := w.waitFor(ctx, n, 1, 2*time.Minute+timeoutFor(n), "rotated"); err != nil {
		return nil, err
	}
	s := &stormReport{Tokens: n, DueSpan: last.Sub(first).Seconds()}
	var mints []time.Time
	for _, t := range w.states() {
		// A token's first rotation minted its current token, unless it rotated twice.
		if t.rotations == 1 {
			mints = append(mints, t.issuedAt)
		}
	}
	sort.Slice(mints, func(i, j int) bool { return mints[i].Before(mints[j]) })
	if len(mints) > 0 {
		s.Took = mints[len(mints)-1].Sub(first).Seconds()
		s.PerSecond = make([]int, int(mints[len(mints)-1].Sub(first).Seconds())+1)
		for _, m := range mints {
			if i := int(m.Sub(first).Seconds()); i >= 0 && i < len(s.PerSecond) {
				s.PerSecond[i]++
			}
		}
	}
	logf("    due within %.0fs; all rotated %.0fs after the first was due", s.DueSpan, s.Took)
	return s, nil
}

// print writes the report for a person.
func (e *env) print() {
	r := e.rep
	var b strings.Builder
	fmt.Fprintf(&b, "\n== scale benchmark, %s, N=%d, client concurrency %d, manager flags %v\n", r.Date, r.N, r.Concurrency, r.ManagerArgs)
	if len(r.ManagerEnv)+len(r.ValEnv) > 0 {
		fmt.Fprintf(&b, "manager environment %v, validator environment %v\n", r.ManagerEnv, r.ValEnv)
	}
	fmt.Fprintf(&b, "machine: %s\n\n", r.Machine)
	if r.BoundCreate2N > 0 {
		fmt.Fprintf(&b, "bound: %d Secrets created in %.2fs; %d updated in %.2fs\n", 2*r.N, r.BoundCreate2N, r.N, r.BoundUpdateN)
	}
	fmt.Fprintf(&b, "mint: all %d Ready in %.2fs", r.N, r.MintSeconds)
	if r.MintXBound > 0 {
		fmt.Fprintf(&b, " = %.2fx the 2N-Secret bound", r.MintXBound)
	}
	fmt.Fprintf(&b, "\n  per token: %s\n", r.Mint.summary())
	if r.Rotate != nil {
		fmt.Fprintf(&b, "rotation: all %d rotated in %.2fs", r.N, r.RotateSeconds)
		if r.RotateXBound > 0 {
			fmt.Fprintf(&b, " = %.2fx the N-Secret-update bound", r.RotateXBound)
		}
		fmt.Fprintf(&b, "\n  per token: %s\n", r.Rotate.summary())
	}
	if r.RestartReconcileSeconds > 0 {
		fmt.Fprintf(&b, "restart: every APIToken reconciled %.2fs after the manager started; %.0f writes by the operator\n", r.RestartReconcileSeconds, r.RestartWrites)
		for _, k := range sortedKeys(r.RestartRequests) {
			fmt.Fprintf(&b, "  %s: %.0f\n", k, r.RestartRequests[k])
		}
	}
	if r.ValidatorReadySeconds > 0 {
		fmt.Fprintf(&b, "validator: ready %.2fs after start\n", r.ValidatorReadySeconds)
	}
	fmt.Fprintf(&b, "peak RSS (MiB):")
	for _, k := range sortedKeys(r.PeakRSS) {
		fmt.Fprintf(&b, " %s %.0f;", k, r.PeakRSS[k])
	}
	fmt.Fprintf(&b, "\nCPU seconds by phase:\n")
	phases := make([]string, 0, len(r.CPU))
	for p := range r.CPU {
		phases = append(phases, p)
	}
	sort.Strings(phases)
	for _, p := range phases {
		fmt.Fprintf(&b, "  %s:", p)
		for _, k := range sortedKeys(r.CPU[p]) {
			fmt.Fprintf(&b, " %s %.1f;", k, r.CPU[p][k])
		}
		fmt.Fprintln(&b)
	}
	if len(r.RenewalLoad.Jitter) > 0 {
		fmt.Fprintf(&b, "\nwhen the %d tokens fall due (first due %s, bins of %s):\n%s", r.N, r.RenewalLoad.From.Format(time.RFC3339), r.RenewalLoad.Bin, r.RenewalLoad.table())
	}
	if r.ManagerScrapeMiB > 0 {
		fmt.Fprintf(&b, "manager /metrics: %.1f MiB, read in %.2fs\n", r.ManagerScrapeMiB, r.ManagerScrapeSeconds)
	}
	if len(r.Costs) > 0 {
		fmt.Fprintf(&b, "\nwhat each kind of request costs (operator stopped, %d at a time):\n| request | kube-apiserver CPU ms | etcd CPU ms | wall ms |\n|---|---|---|---|\n", r.Concurrency)
		for _, c := range r.Costs {
			fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f |\n", c.Request, c.APIMs, c.EtcdMs, c.WallMs)
		}
	}
	if s := r.Storm; s != nil {
		fmt.Fprintf(&b, "\nstorm: %d tokens due within %.0fs, all rotated %.0fs after the first was due; rotations per second: %v\n", s.Tokens, s.DueSpan, s.Took, s.PerSecond)
	}
	fmt.Print(b.String())
}

// summary is one line of per-token figures.
func (p perToken) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%.2f writes, %.2f reads, %.2f events, %.2f webhook calls", p.Writes, p.Reads, p.Events, p.Webhook)
	var parts []string
	for _, k := range sortedKeys(p.Detail) {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, p.Detail[k]))
	}
	fmt.Fprintf(&b, "\n  in all: %s", strings.Join(parts, ", "))
	if len(p.Other) > 0 {
		parts = parts[:0]
		for _, k := range sortedKeys(p.Other) {
			parts = append(parts, fmt.Sprintf("%s %.0f", k, p.Other[k]))
		}
		fmt.Fprintf(&b, "\n  other resources: %s", strings.Join(parts, ", "))
	}
	return b.String()
}
