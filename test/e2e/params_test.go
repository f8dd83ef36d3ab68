package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// params are the sizes of the tests. The defaults fit the CI run (the whole suite in
// about six minutes on two shared cores); `make e2e-soak` sets the full sizes.
type params struct {
	// Chaos: how many APITokens rotate, for how long, while the manager is
	// SIGKILLed every KillMin to KillMax.
	chaosTokens   int
	chaosDuration time.Duration
	// exchangeParents are the APITokens whose tokens are exchanged during the chaos,
	// half of them revoked half way.
	exchangeParents int
	killMin         time.Duration
	killMax         time.Duration
	// Failover: how many APITokens rotate while the leader is killed or frozen
	// failoverRounds times.
	failoverTokens int
	failoverRounds int
	// Restart: how long the API server stays down.
	apiDowntime time.Duration
	// Bad input: how many bad requests, sent within at most badDuration.
	badRequests int
	badDuration time.Duration
	// probeRate is how many token Secrets per second the client reads (each read is
	// followed by a validation of every token it still holds).
	probeRate float64
	// informerSlack is how long after a token first shows in an APIToken's status
	// the validator may still not know it: the time its informer takes to hear of it.
	informerSlack time.Duration
	// seed seeds the random choices (kill times, bad inputs); logged, so a failing
	// run can be replayed with E2E_SEED.
	seed uint64
}

var (
	loadParams = sync.OnceValue(func() params {
		p := params{
			chaosTokens:     envInt("E2E_CHAOS_TOKENS", 100),
			chaosDuration:   envDuration("E2E_CHAOS_DURATION", 2*time.Minute),
			exchangeParents: envInt("E2E_EXCHANGE_PARENTS", 6),
			killMin:         envDuration("E2E_CHAOS_KILL_MIN", 5*time.Second),
			killMax:         envDuration("E2E_CHAOS_KILL_MAX", 20*time.Second),
			failoverTokens:  envInt("E2E_FAILOVER_TOKENS", 20),
			failoverRounds:  envInt("E2E_FAILOVER_ROUNDS", 2),
			apiDowntime:     envDuration("E2E_API_DOWNTIME", 8*time.Second),
			badRequests:     envInt("E2E_BAD_REQUESTS", 20000),
			badDuration:     envDuration("E2E_BAD_DURATION", 90*time.Second),
			probeRate:       float64(envInt("E2E_PROBE_RATE", 40)),
			informerSlack:   envDuration("E2E_INFORMER_SLACK", time.Second),
			seed:            uint64(envInt("E2E_SEED", 0)),
		}
		if p.seed == 0 {
			p.seed = uint64(time.Now().UnixNano())
		}
		return p
	})
)

func envInt(name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		panic(fmt.Sprintf("%s=%q is not an integer", name, v))
	}
	return n
}

func envDuration(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		panic(fmt.Sprintf("%s=%q is not a duration", name, v))
	}
	return d
}

// rng returns a random source of a test, seeded from E2E_SEED, the test's name and
// stream (one per goroutine that needs one).
func rng(t *testing.T, stream ...uint64) *rand.Rand {
	var h uint64
	for _, c := range t.Name() {
		h = h*31 + uint64(c)
	}
	for _, s := range stream {
		h = h*1000003 + s + 1
	}
	return rand.New(rand.NewPCG(loadParams().seed, h))
}

// report logs a test's figures and, when E2E_FIGURES names a file, appends them to it
// as one JSON line, for docs/reliability.md.
func report(t *testing.T, figures map[string]any) {
	t.Helper()
	figures["test"] = t.Name()
	figures["seed"] = loadParams().seed
	figures["race"] = raceEnabled
	figures["failed"] = t.Failed()
	line, err := json.Marshal(figures)
	if err != nil {
		t.Errorf("encoding the figures: %v", err)
		return
	}
	t.Logf("Figures: %s", line)
	path := os.Getenv("E2E_FIGURES")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Errorf("writing the figures: %v", err)
		return
	}
	defer f.Close()
	_, _ = f.Write(append(line, '\n'))
}
