package e2e

import (
	"errors"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// TestJudge checks the judge's rules on made-up histories, without a cluster: the
// e2e tests are only as good as the verdicts they rest on.
func TestJudge(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	const slack = time.Second
	// tok was listed at 0s, rotated out at 40s with a grace period ending at 60s.
	tok := &issued{id: "tok", owner: "a", firstListed: at(0), expiresAt: at(60), retireAt: at(60), retiredSeen: at(40)}
	// cut was listed at 0s and left the status at 30s (revoked) though it would expire at 60s.
	cut := &issued{id: "cut", owner: "a", firstListed: at(0), expiresAt: at(60), gone: at(30)}
	// late was listed at 100s, while the validator was blind from 90s to 110s.
	late := &issued{id: "late", owner: "a", firstListed: at(100), expiresAt: at(160)}
	lookup := func(id string) *issued {
		return map[string]*issued{"tok": tok, "cut": cut, "late": late}[id]
	}
	blind := window{from: at(90), to: at(110)}
	ok := verdict{status: http.StatusOK, allowed: true}
	no := verdict{status: http.StatusUnauthorized}
	obs := func(id string, req, resp float64, v verdict) observation {
		if v.allowed && v.tokenID == "" {
			v.tokenID = id
		}
		return observation{apiToken: "a", tokenID: id, req: at(req), resp: at(resp), v: v}
	}

	tests := []struct {
		name string
		obs  observation
		want figures
	}{
		{"accepted while current", obs("tok", 10, 10.1, ok), figures{Validations: 1, Accepted: 1}},
		{"accepted within grace", obs("tok", 59.9, 60.1, ok), figures{Validations: 1, Accepted: 1}},
		{"accepted after grace", obs("tok", 60, 60.1, ok), figures{Validations: 1, Accepted: 1, LateAcceptances: 1}},
		{"accepted naming another token", obs("tok", 10, 10.1, verdict{status: http.StatusOK, allowed: true, tokenID: "other"}), figures{Validations: 1, Accepted: 1, WrongIdentity: 1}},
		{"accepted, never listed", obs("ghost", 10, 10.1, ok), figures{Validations: 1, Accepted: 1, UnlistedAcceptances: 1}},
		{"accepted just after leaving the status", obs("cut", 30.5, 30.6, ok), figures{Validations: 1, Accepted: 1}},
		{"accepted long after leaving the status", obs("cut", 31, 31.1, ok), figures{Validations: 1, Accepted: 1, LateAcceptances: 1}},
		{"refused before the validator could know", obs("tok", 0.5, 0.6, no), figures{Validations: 1, LagRefusals: 1}},
		{"refused while current", obs("tok", 10, 10.1, no), figures{Validations: 1, FalseRefusals: 1}},
		{"refused within grace", obs("tok", 59, 59.9, no), figures{Validations: 1, FalseRefusals: 1}},
		{"refused as grace ends", obs("tok", 59.9, 60, no), figures{Validations: 1, ExpectedRefusals: 1}},
		{"refused after leaving the status", obs("cut", 29.5, 29.6, no), figures{Validations: 1, ExpectedRefusals: 1}},
		{"refused, never listed", obs("ghost", 10, 10.1, no), figures{Validations: 1, FalseRefusals: 1}},
		{"refused while the validator was blind", obs("late", 105, 105.1, no), figures{Validations: 1, BlindRefusals: 1}},
		{"refused after the validator caught up", obs("late", 112, 112.1, no), figures{Validations: 1, FalseRefusals: 1}},
		{"another answer", obs("tok", 10, 10.1, verdict{status: http.StatusTooManyRequests}), figures{Validations: 1, Errors: 1}},
		{"no answer", obs("tok", 10, 10.1, verdict{err: errors.New("connection refused")}), figures{Validations: 1, Errors: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got, problems := judge(lookup, []observation{tt.obs}, nil, slack, blind)
			g.Expect(got).To(Equal(tt.want))
			failures := got.FalseRefusals + got.LateAcceptances + got.UnlistedAcceptances + got.WrongIdentity + got.Errors
			g.Expect(problems).To(HaveLen(failures))
		})
	}

	t.Run("Secret reads", func(t *testing.T) {
		g := NewWithT(t)
		got, problems := judge(lookup, nil, []secretRead{
			{apiToken: "a", tokenID: "tok", at: at(50)},   // fine: within grace
			{apiToken: "a", tokenID: "tok", at: at(61)},   // stale: the Secret still holds it
			{apiToken: "a", tokenID: "ghost", at: at(10)}, // never listed
		}, slack)
		g.Expect(got).To(Equal(figures{SecretReads: 3, StaleSecretReads: 1, UnlistedSecretTokens: 1}))
		g.Expect(problems).To(HaveLen(2))
	})

	t.Run("a blind window does not excuse an expiry", func(t *testing.T) {
		g := NewWithT(t)
		exp := &issued{id: "exp", owner: "a", firstListed: at(0), expiresAt: at(95), retireAt: at(95), retiredSeen: at(92)}
		got, _ := judge(func(string) *issued { return exp }, []observation{obs("exp", 96, 96.1, ok)}, nil, slack, blind)
		g.Expect(got.LateAcceptances).To(Equal(1))
	})
}

// TestMintChecks checks the rules on mints: a replacement before the renewal time is
// a repair only when the Secret never held the replaced token.
func TestMintChecks(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name               string
		inSecret           time.Time
		issuedAt, dueAt    time.Time
		rotations, repairs int
		problems           int
	}{
		{"on time", t0, t0.Add(40 * time.Second), t0.Add(40 * time.Second), 1, 0, 0},
		{"late", t0, t0.Add(50 * time.Second), t0.Add(40 * time.Second), 1, 0, 0},
		{"early, the Secret never held the replaced token", time.Time{}, t0.Add(5 * time.Second), t0.Add(40 * time.Second), 0, 1, 0},
		{"early, the Secret held it: minted twice", t0, t0.Add(5 * time.Second), t0.Add(40 * time.Second), 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			h := newHistory()
			h.tokens["old"] = &issued{id: "old", owner: "a", firstListed: t0, inSecret: tt.inSecret}
			h.mints = []mint{{owner: "a", previous: "old", id: "new", issuedAt: tt.issuedAt, dueAt: tt.dueAt}}
			st, problems := h.mintFigures()
			g.Expect(st.Rotations).To(Equal(tt.rotations))
			g.Expect(st.Repairs).To(Equal(tt.repairs))
			g.Expect(problems).To(HaveLen(tt.problems))
		})
	}
}
