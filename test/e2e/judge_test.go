package e2e

import (
	"fmt"
	"net/http"
	"time"
)

// figures are what a client saw, judged against the history of the statuses.
type figures struct {
	Validations int `json:"validations"`
	Accepted    int `json:"accepted"`
	// ExpectedRefusals were refusals of tokens past their expiry or grace period.
	ExpectedRefusals int `json:"expectedRefusals"`
	// LagRefusals were refusals of a token the status had listed less than the
	// informer slack before: the validator may not have heard of it yet.
	LagRefusals int `json:"lagRefusals"`
	// FalseRefusals were refusals of a token that was listed, and current or within
	// its grace period: the failures this suite exists to find.
	FalseRefusals int `json:"falseRefusals"`
	// LateAcceptances were acceptances of a token after its expiry or grace period,
	// or after it left the status.
	LateAcceptances int `json:"lateAcceptances"`
	// UnlistedAcceptances were acceptances of a token no status ever listed.
	UnlistedAcceptances int `json:"unlistedAcceptances"`
	// WrongIdentity were acceptances that named another token ID.
	WrongIdentity int `json:"wrongIdentity"`
	// BlindRefusals and BlindAcceptances happened while the validator's watch was
	// down (a blind window, see judge): refusals of tokens listed meanwhile and
	// acceptances of tokens retired meanwhile.
	BlindRefusals    int `json:"blindRefusals,omitempty"`
	BlindAcceptances int `json:"blindAcceptances,omitempty"`
	// Errors were answers other than accepted or 401, and transport errors.
	Errors int `json:"errors"`
	// SecretReads were reads of a token Secret; StaleSecretReads found a token past
	// its expiry or grace period there, UnlistedSecretTokens one no status listed.
	SecretReads          int `json:"secretReads"`
	StaleSecretReads     int `json:"staleSecretReads"`
	UnlistedSecretTokens int `json:"unlistedSecretTokens"`
}

// judge checks every observation and Secret read against what the statuses said of
// the token: lookup returns the history of a token ID, nil when no status listed it.
//
// A token must be accepted from slack after a status first listed it (the time the
// validator's informer may take to hear of it) until its notAfter (expiry or end of
// grace), or until slack before it left the status; it must be refused from its
// notAfter on. The validator decides between the request's start (req) and the
// answer (resp), so an acceptance is late only when req is already past notAfter,
// and a refusal is false only when resp is still before it: no timing tolerance is
// needed beyond the informer slack.
//
// blind are windows in which the validator's watch was known to be down (the API
// server restarting, until the validator saw a change made after it came back): a
// token listed, or a token retired, within one is not known as such by the validator
// until the window ends, so refusing the one or accepting the other then is counted
// apart, not as a failure. Expiry is known in advance and is never excused.
func judge(lookup func(string) *issued, obs []observation, reads []secretRead, slack time.Duration, blind ...window) (figures, []string) {
	var f figures
	var problems []string
	problem := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	for _, o := range obs {
		f.Validations++
		rec := lookup(o.tokenID)
		what := fmt.Sprintf("%s %s of token %s (APIToken %s) asked at %s, answered at %s",
			o.endpoint, verdictString(o.v), o.tokenID, o.apiToken, stamp(o.req), stamp(o.resp))
		switch {
		case o.v.err != nil || (o.v.status != http.StatusOK && o.v.status != http.StatusUnauthorized):
			f.Errors++
			problem("%s: unexpected answer", what)
		case o.v.allowed:
			f.Accepted++
			switch {
			case rec == nil:
				f.UnlistedAcceptances++
				problem("%s: no status ever listed it", what)
			case o.v.tokenID != o.tokenID:
				f.WrongIdentity++
				problem("%s: the validator named token %s", what, o.v.tokenID)
			case !o.req.Before(rec.notAfter()) && o.req.Before(rec.expiresAt) && within(blind, o.req, rec.retiredSeen, slack):
				f.BlindAcceptances++
			case !o.req.Before(rec.notAfter()):
				f.LateAcceptances++
				problem("%s: accepted after its end %s", what, stamp(rec.notAfter()))
			case !rec.gone.IsZero() && !o.req.Before(rec.gone.Add(slack)):
				f.LateAcceptances++
				problem("%s: accepted after it left the status at %s", what, stamp(rec.gone))
			}
		default:
			if rec == nil {
				f.FalseRefusals++
				problem("%s: read from the Secret, but no status ever listed it", what)
				continue
			}
			end := rec.notAfter()
			if !rec.gone.IsZero() && rec.gone.Add(-slack).Before(end) {
				end = rec.gone.Add(-slack)
			}
			switch {
			case !o.resp.Before(end):
				f.ExpectedRefusals++
			case o.req.Before(rec.firstListed.Add(slack)):
				f.LagRefusals++
			case within(blind, o.req, rec.firstListed, slack):
				f.BlindRefusals++
			default:
				f.FalseRefusals++
				problem("%s: refused while valid (listed at %s, valid until %s)", what, stamp(rec.firstListed), stamp(end))
			}
		}
	}
	for _, r := range reads {
		f.SecretReads++
		rec := lookup(r.tokenID)
		switch {
		case rec == nil:
			f.UnlistedSecretTokens++
			problem("Secret %s held token %s at %s, which no status listed", r.apiToken, r.tokenID, stamp(r.at))
		case !r.at.Before(rec.notAfter()):
			f.StaleSecretReads++
			problem("Secret %s held token %s at %s, past its end %s", r.apiToken, r.tokenID, stamp(r.at), stamp(rec.notAfter()))
		}
	}
	return f, problems
}

// window is a span of time.
type window struct{ from, to time.Time }

// within reports whether a request at req, about a change the statuses made at
// changed, falls in one of the blind windows: the change was made during the window
// and the request came before the validator caught up (plus slack).
func within(blind []window, req, changed time.Time, slack time.Duration) bool {
	for _, w := range blind {
		if !changed.IsZero() && !changed.Before(w.from.Add(-slack)) && changed.Before(w.to) && req.Before(w.to.Add(slack)) {
			return true
		}
	}
	return false
}

func verdictString(v verdict) string {
	if v.err != nil {
		return "error " + v.err.Error()
	}
	if v.allowed {
		return "accepted"
	}
	return fmt.Sprintf("refused %d (%s)", v.status, v.reason)
}

func stamp(t time.Time) string { return t.Format("15:04:05.000") }

// firstFew keeps an error message readable.
func firstFew(problems []string) []string {
	const n = 15
	if len(problems) <= n {
		return problems
	}
	return append(problems[:n:n], fmt.Sprintf("... and %d more", len(problems)-n))
}
