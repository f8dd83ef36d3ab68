package main

import (
	"fmt"
	"strings"
)

// statusShape is what an APIToken's status holds, for the variants that weigh its size.
type statusShape struct {
	// conditions is how many of Ready, Revoked, Expired, Stalled, in that order. A
	// served APIToken carries the first three (internal/controller/apitoken report).
	conditions int
	// previous is how many previous tokens: a rotated one has one until it retires.
	previous int
	// longMessages makes each condition message about 1 KiB instead of about 70 bytes.
	longMessages bool
}

// servedStatus is what the controller wrote on a rotation when these variants were
// first measured (session 4): three conditions (Ready, Revoked=False,
// Expired=False), one previous token, the messages it writes. The controller now
// writes Ready alone, the "1 condition" variant; the baseline stays as it was so that
// the table in docs/performance.md reads against the same reference.
var servedStatus = statusShape{conditions: 3, previous: 1}

var conditionTemplates = []struct{ typ, status, reason, msg string }{
	{"Ready", "True", "Rotated", "Secret %s holds token %s, valid until 2030-01-31T00:00:00Z"},
	{"Revoked", "False", "NotRevoked", "The tokens of this APIToken are not revoked"},
	{"Expired", "False", "NotExpired", "The current token has not expired"},
	{"Stalled", "False", "Reconciled", "The spec of this APIToken is served"},
}

// variantTokenID is the token ID of generation gen: each generation of a status
// differs from the one before, so that every write changes the object and none is
// answered without a write to etcd.
func variantTokenID(gen int) string { return fmt.Sprintf("01JD3ZQ7M8X4VNK2H5R9T6%04d", gen) }

// tokenStatus is the status of shape sh, generation gen, for the APIToken whose
// Secret is secret: every field the controller fills, none of them secret.
func tokenStatus(sh statusShape, secret string, gen int) map[string]any {
	id := variantTokenID(gen)
	st := map[string]any{
		"observedGeneration": 1,
		"current":            issuedToken(id, ""),
		"renewalTime":        "2030-01-20T00:00:00Z",
		"rotations":          gen,
		"secretName":         secret,
	}
	conds := make([]any, 0, sh.conditions)
	for _, c := range conditionTemplates[:sh.conditions] {
		msg := c.msg
		if strings.Contains(msg, "%s") {
			msg = fmt.Sprintf(msg, secret, id)
		}
		if sh.longMessages {
			msg += "; warning: " + strings.Repeat("rotation.gracePeriod is shorter than the validator's cache period; ", 15)
		}
		conds = append(conds, map[string]any{
			"type": c.typ, "status": c.status, "reason": c.reason, "message": msg,
			"lastTransitionTime": "2030-01-01T00:00:00Z", "observedGeneration": 1,
		})
	}
	if len(conds) > 0 {
		st["conditions"] = conds
	}
	prev := make([]any, 0, sh.previous)
	for i := range sh.previous {
		prev = append(prev, issuedToken(variantTokenID(gen-1-i), "2030-01-02T00:00:00Z"))
	}
	if len(prev) > 0 {
		st["previousTokens"] = prev
	}
	return st
}

func issuedToken(id, retireAt string) map[string]any {
	t := map[string]any{
		"tokenID":      id,
		"format":       "JWT",
		"signingKeyID": "abcdefabcdefabcdefabcdefabcdefabcdefabcdefa",
		"digest":       strings.Repeat("0123456789abcdef", 4),
		"claims":       map[string]any{"tenant": "costs", "role": "viewer", "audiences": []any{"acme-apis"}},
		"issuedAt":     "2030-01-01T00:00:00Z",
		"expiresAt":    "2030-01-31T00:00:00Z",
	}
	if retireAt != "" {
		t["retireAt"] = retireAt
	}
	return t
}
