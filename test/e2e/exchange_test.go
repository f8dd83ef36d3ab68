package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
	"github.com/apitoken-operator/apitoken-operator/pkg/exchangeapi"
)

// exchanger exchanges the tokens of long-lived parent APITokens at the exchange
// service for short-lived ones while the chaos runs, and asks the validator about
// every token it received. Half the parents are revoked half way: from the moment the
// validator refuses such a parent, every token exchanged from it must be refused too,
// and until then, as for the parents never revoked, every one must be accepted.
type exchanger struct {
	ns            string
	exchangeURL   string
	validatorURL  string
	hc            *http.Client
	good, doomed  []string // APIToken names
	mu            sync.Mutex
	parents       map[string]string   // name -> parent token, read once from its Secret
	children      map[string][]string // name -> tokens exchanged from it
	revoked       map[string]bool     // doomed parents the validator refuses
	problems      []string
	issued, asked int
}

// parentNamespace holds the parents: the default issuer lets a namespace mint only
// for the tenant named like it.
const parentNamespace = "chaos-parents"

// newExchanger creates n parents that will not rotate during the run, half of them
// doomed, waits until they are Ready, and reads their tokens.
func newExchanger(s *sut, n int, exchangeURL, validatorURL string) *exchanger {
	s.t.Helper()
	if err := cp.Client.Create(s.ctx, testenv.Namespace(parentNamespace)); err != nil && !apierrors.IsAlreadyExists(err) {
		s.t.Fatal(err)
	}
	x := &exchanger{ns: parentNamespace, exchangeURL: exchangeURL, validatorURL: validatorURL,
		hc: &http.Client{Timeout: 5 * time.Second}, parents: map[string]string{}, children: map[string][]string{}, revoked: map[string]bool{}}
	var toks []*tokensv1.APIToken
	for i := range n {
		name := fmt.Sprintf("parent-%02d", i)
		if i%2 == 0 {
			x.good = append(x.good, name)
		} else {
			x.doomed = append(x.doomed, name)
		}
		toks = append(toks, rotatingToken(parentNamespace, name, time.Hour, 0, 0, tokensv1.FormatJWT))
	}
	parents := &sut{t: s.t, g: s.g, ctx: s.ctx, ns: parentNamespace, dir: s.dir}
	parents.createTokens(toks, time.Second)
	parents.waitAllReady(2 * time.Minute)
	for _, name := range append(append([]string{}, x.good...), x.doomed...) {
		_, tok, err := secretToken(s.ctx, parentNamespace, name)
		s.g.Expect(err).NotTo(HaveOccurred())
		x.parents[name] = tok
	}
	// Removed while a manager still runs, so their finalizers go.
	s.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_ = cp.Client.DeleteAllOf(ctx, &tokensv1.APIToken{}, client.InNamespace(parentNamespace))
	})
	return x
}

func (x *exchanger) problem(format string, args ...any) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.problems = append(x.problems, fmt.Sprintf(format, args...))
}

// exchange asks for a 2-minute token from parent and returns it with the status.
func (x *exchanger) exchange(ctx context.Context, parent string) (tok string, status int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, x.exchangeURL+exchangeapi.PathToken+"?expiration=120&role=viewer", nil)
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Authorization", "Bearer "+parent)
	resp, err := x.hc.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", resp.StatusCode, err
	}
	var out exchangeapi.TokenResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", resp.StatusCode, err
	}
	return out.Token, resp.StatusCode, nil
}

// round exchanges one token from every parent and asks the validator about the last
// tokens exchanged from each.
func (x *exchanger) round(ctx context.Context) {
	for name, parent := range x.parents {
		x.mu.Lock()
		revoked := x.revoked[name]
		x.mu.Unlock()
		tok, status, err := x.exchange(ctx, parent)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			x.problem("exchanging %s's token: %v", name, err)
		case status == http.StatusOK:
			// The exchange's informer may learn of a revocation after the
			// validator's: a token it issued then must still be refused.
			x.keep(name, tok)
		case status == http.StatusUnauthorized && x.isDoomed(name):
		default:
			x.problem("the exchange answered %d for %s (revoked: %v)", status, name, revoked)
		}
	}
	x.mu.Lock()
	children := make(map[string][]string, len(x.children))
	for k, v := range x.children {
		children[k] = append([]string(nil), v...)
	}
	revoked := make(map[string]bool, len(x.revoked))
	for k, v := range x.revoked {
		revoked[k] = v
	}
	x.mu.Unlock()
	for name, toks := range children {
		for _, tok := range toks {
			v := ask(ctx, x.hc, x.validatorURL, authorizeEndpoint, tok, "", "viewer")
			if ctx.Err() != nil {
				return
			}
			x.mu.Lock()
			x.asked++
			x.mu.Unlock()
			switch {
			case v.err != nil:
				x.problem("asking about a token of %s: %v", name, v.err)
			case revoked[name] && v.allowed:
				x.problem("a token exchanged from %s was accepted after the validator refused its parent", name)
			case !revoked[name] && !v.allowed && !x.isDoomed(name):
				x.problem("a token exchanged from %s, never revoked, was refused: %d %s", name, v.status, v.reason)
			}
		}
	}
}

// keep remembers a token exchanged from name; only the last few of each parent are
// asked about, well within their two minutes of life.
func (x *exchanger) keep(name, tok string) {
	const last = 10
	x.mu.Lock()
	defer x.mu.Unlock()
	x.issued++
	kids := append(x.children[name], tok)
	if len(kids) > last {
		kids = kids[len(kids)-last:]
	}
	x.children[name] = kids
}

func (x *exchanger) isDoomed(name string) bool {
	for _, d := range x.doomed {
		if d == name {
			return true
		}
	}
	return false
}

// revoke revokes the doomed parents and records each as revoked once the validator
// refuses it.
func (x *exchanger) revoke(ctx context.Context) {
	for _, name := range x.doomed {
		// The API server refuses the update while no webhook answers (the manager
		// is being killed): try until it lands.
		_ = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			var tok tokensv1.APIToken
			if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: x.ns, Name: name}, &tok); err != nil {
				return false, nil
			}
			tok.Spec.Revoked = true
			return cp.Client.Update(ctx, &tok) == nil, nil
		})
		_ = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			v := ask(ctx, x.hc, x.validatorURL, authorizeEndpoint, x.parents[name], "", "")
			if v.err != nil || v.allowed {
				return false, nil
			}
			x.mu.Lock()
			x.revoked[name] = true
			x.mu.Unlock()
			return true, nil
		})
	}
}

// run exchanges until ctx is done, revoking the doomed parents at revokeAt.
func (x *exchanger) run(ctx context.Context, revokeAt time.Time) {
	revoking := false
	for ctx.Err() == nil {
		if !revoking && time.Now().After(revokeAt) {
			revoking = true
			go x.revoke(ctx)
		}
		x.round(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second): // the pace of the client
		}
	}
}

// results are the exchanger's figures and what went wrong.
func (x *exchanger) results() (map[string]any, []string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return map[string]any{"exchanged": x.issued, "asked": x.asked, "parentsRevoked": len(x.revoked), "parents": len(x.parents)},
		append([]string(nil), x.problems...)
}
