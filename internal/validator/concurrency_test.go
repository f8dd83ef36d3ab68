package validator

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// TestConcurrency hammers /authorize from many clients while APITokens are revoked,
// rotated and reported used, and an issuer gains a key. Under -race it checks the
// index, the decision cache and the limiters for data races; the answers must stay
// right throughout: untouched tokens always pass, and a client that once saw a
// revoked token refused never sees it accepted again.
func TestConcurrency(t *testing.T) {
	h := start(t, Options{Limits: RateLimits{TokenRate: 1e6, TokenBurst: 1e6, FailureRate: 1e6, FailureBurst: 1e6}})
	iss := h.issuer(token.ES256, true)
	const stable = 4
	var stableToks []*minted
	for i := range stable {
		f := tokensv1.FormatJWT
		if i%2 == 1 {
			f = tokensv1.FormatOpaque
		}
		stableToks = append(stableToks, h.apiToken(iss, tokenSpec{format: f}))
	}
	doomed := h.apiToken(iss, tokenSpec{})
	rotating := h.apiToken(iss, tokenSpec{})
	for _, m := range append(stableToks, doomed, rotating) {
		h.waitIndexed(m)
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}, Timeout: 10 * time.Second}
	status := func(tok string) (int, error) {
		req, err := http.NewRequest(http.MethodGet, h.url+validatorapi.PathAuthorize+"?tenant=acme&role=viewer", nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}

	const workers, rounds = 16, 60
	errs := make(chan error, workers+1)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sawRevoked := false
			for r := range rounds {
				tok := stableToks[(w+r)%stable]
				if code, err := status(tok.token); err != nil || code != 200 {
					errs <- fmt.Errorf("worker %d: stable token %s: %d %w", w, tok.issued.TokenID, code, err)
					return
				}
				code, err := status(doomed.token)
				switch {
				case err != nil:
					errs <- err
					return
				case code == 401:
					sawRevoked = true
				case code == 200 && sawRevoked:
					errs <- fmt.Errorf("worker %d: revoked token accepted again", w)
					return
				case code != 200:
					errs <- fmt.Errorf("worker %d: doomed token: %d", w, code)
					return
				}
				if code, err := status(rotating.token); err != nil || code != 200 {
					errs <- fmt.Errorf("worker %d: rotating token (in grace): %d %w", w, code, err)
					return
				}
			}
		}()
	}

	// Meanwhile: rotate, revoke, report use, add a key.
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.rotate(iss, rotating, tokenSpec{}, h.clk.Now().Add(time.Hour))
		h.updateSpec(doomed, func(s *tokensv1.APITokenSpec) { s.Revoked = true })
		h.usage.Flush(h.ctx)
		next, err := token.GenerateKey(token.ES256)
		if err != nil {
			errs <- err
			return
		}
		h.setIssuerKeys(iss, true, next, iss.keys[0])
		h.usage.Flush(h.ctx)
	}()
	wg.Wait()
	close(errs)
	g := NewWithT(t)
	for err := range errs {
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Eventually(func() (int, error) { return status(doomed.token) }).WithTimeout(informerEvent).Should(Equal(401))
}
