package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/keystore"
	"github.com/apitoken-operator/apitoken-operator/internal/localenv"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/pkg/middleware"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// keyRollLead is the publishBefore of the test's issuer: longer than the offline
// verifier's refresh floor (30s) plus the time the validator takes to hear of a new
// key, shorter than the 5m default to keep the test short. The validator's
// Cache-Control max-age plays no part: the middleware does not cache the JWKS by
// HTTP, and no cache sits between them here.
const keyRollLead = 45 * time.Second

// TestKeyRotationOffline rotates an issuer's signing key (apitoken.dev/rotate-key,
// which follows the pre-publication rule) while new tokens keep being minted, one new
// APIToken every two seconds, and checks every token, from the moment its Secret
// holds it until the end, with a pkg/middleware offline verifier that keeps its
// default schedule: it fetches the JWKS when it meets an unknown kid, at most every
// 30s. A stream of tokens signed by a key nobody publishes makes it fetch as often as
// that floor allows, the worst case for a key that signs right after it is
// published: the verifier's keys are then up to 30s old at any moment. The new key is
// in the JWKS publishBefore before it signs, so no token is refused, before or after
// the rotation.
func TestKeyRotationOffline(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	const name = "keyroll"
	issuerURL := "https://" + name + ".e2e.test"
	iss := &tokensv1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: tokensv1.ClusterTokenIssuerSpec{Issuer: issuerURL, Audiences: []string{"keyroll-api"},
			Signing: tokensv1.SigningSpec{PublishBefore: &metav1.Duration{Duration: keyRollLead}}},
	}
	g.Expect(cp.Client.Create(ctx, iss)).To(Succeed())
	// Registered before the SUT's teardown, so it runs after it: the APITokens go
	// first. No garbage collector runs here, so the key Secret goes by hand.
	t.Cleanup(func() {
		c := context.Background()
		_ = cp.Client.Delete(c, &tokensv1.ClusterTokenIssuer{ObjectMeta: metav1.ObjectMeta{Name: name}})
		_ = cp.Client.DeleteAllOf(c, &tokensv1.APIToken{}, client.InNamespace(name))
		_ = cp.Client.Delete(c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: keystore.SecretName(name)}})
	})
	s := newSUT(t, name)
	s.startManager("m")
	g.Expect(localenv.WaitReady(ctx, cp.Client, iss, 2*time.Minute)).To(Succeed(), "the issuer never became Ready")
	v := s.startValidator("--failed-attempt-rate-limit=0")
	first := iss.Status.CurrentKeyID

	// The offline verifier, behind the middleware on a real listener. The validator
	// of the tests serves plain HTTP on loopback.
	o, err := middleware.NewOffline(middleware.OfflineOptions{
		JWKSURL: v.url + validatorapi.PathJWKS + "?issuer=" + name, AllowInsecureHTTP: true, Issuer: issuerURL,
	})
	g.Expect(err).NotTo(HaveOccurred())
	var errsMu sync.Mutex
	var errs []string
	m, err := middleware.New(middleware.Options{Checker: o, OnError: func(_ *http.Request, err error) {
		errsMu.Lock()
		defer errsMu.Unlock()
		errs = append(errs, err.Error())
	}})
	g.Expect(err).NotTo(HaveOccurred())
	api := httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })))
	t.Cleanup(api.Close)
	hc := &http.Client{Timeout: 10 * time.Second}
	check := func(tok string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, api.URL, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := hc.Do(req)
		if err != nil {
			return 0
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}

	stranger, err := token.GenerateKey(token.ES256)
	g.Expect(err).NotTo(HaveOccurred())
	noise, err := token.MintJWT(stranger, token.Claims{Issuer: issuerURL, ExpiresAt: time.Now().Add(time.Hour), ID: token.NewTokenID(), Tenant: name, Role: "editor"})
	g.Expect(err).NotTo(HaveOccurred())

	// The traffic: a new APIToken every 2s; every token read from a Secret is checked
	// every second until the end.
	type held struct {
		apiToken, kid, value string
		readAt               time.Time
	}
	type refusal struct {
		held
		status int
		at     time.Time
	}
	var (
		mu       sync.Mutex
		tokens   []held
		refused  []refusal
		checks   = map[string]int{} // by kid
		noiseOK  int
		created  int
		trafficC = make(chan struct{})
	)
	trafficCtx, stopTraffic := context.WithCancel(ctx)
	defer stopTraffic()
	go func() {
		defer close(trafficC)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		pending := map[string]bool{}
		for n := 0; ; n++ {
			select {
			case <-trafficCtx.Done():
				return
			case <-tick.C:
			}
			if n%2 == 0 {
				tok := rotatingToken(name, fmt.Sprintf("t-%03d", created), time.Hour, 0, time.Hour, tokensv1.FormatJWT)
				tok.Spec.IssuerRef = tokensv1.IssuerReference{Name: name}
				if err := cp.Client.Create(trafficCtx, tok); err == nil {
					pending[tok.Name] = true
					created++
				}
			}
			for apiToken := range pending {
				if _, value, err := secretToken(trafficCtx, name, apiToken); err == nil {
					kid, _, _ := token.ParseUnverified(value)
					mu.Lock()
					tokens = append(tokens, held{apiToken: apiToken, kid: kid, value: value, readAt: time.Now()})
					mu.Unlock()
					delete(pending, apiToken)
				}
			}
			if check(noise) == http.StatusOK {
				noiseOK++
			}
			mu.Lock()
			current := append([]held(nil), tokens...)
			mu.Unlock()
			for _, h := range current {
				status := check(h.value)
				if trafficCtx.Err() != nil {
					return
				}
				mu.Lock()
				checks[h.kid]++
				if status != http.StatusNoContent {
					refused = append(refused, refusal{held: h, status: status, at: time.Now()})
				}
				mu.Unlock()
			}
		}
	}()

	// Some traffic on the first key, then the rotation.
	g.Eventually(func() int { mu.Lock(); defer mu.Unlock(); return len(tokens) }).
		WithTimeout(time.Minute).WithPolling(200 * time.Millisecond).Should(BeNumerically(">=", 3))
	g.Expect(cp.Client.Patch(ctx, &tokensv1.ClusterTokenIssuer{ObjectMeta: metav1.ObjectMeta{Name: name}},
		client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"`+tokensv1.RotateKeyAnnotation+`":"e2e"}}}`)))).To(Succeed())
	requested := time.Now()
	var next string
	g.Eventually(func(g Gomega) {
		g.Expect(cp.Client.Get(ctx, client.ObjectKey{Name: name}, iss)).To(Succeed())
		next = iss.Status.NextKeyID
		g.Expect(next).NotTo(BeEmpty())
	}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	published := time.Now()
	g.Expect(iss.Status.CurrentKeyID).To(Equal(first), "published, not signing yet")
	g.Eventually(func(g Gomega) {
		g.Expect(cp.Client.Get(ctx, client.ObjectKey{Name: name}, iss)).To(Succeed())
		g.Expect(iss.Status.CurrentKeyID).To(Equal(next))
	}).WithTimeout(keyRollLead + time.Minute).WithPolling(100 * time.Millisecond).Should(Succeed())
	rotated := time.Now()
	// By the operator's record (whole seconds, its clock): published publishBefore
	// before it signed.
	g.Expect(iss.Status.Keys[0].KeyID).To(Equal(next))
	g.Expect(iss.Status.Keys[0].ActivatedAt.Sub(iss.Status.Keys[0].CreatedAt.Time)).To(BeNumerically(">=", keyRollLead))

	// Traffic on the new key until the verifier fetched the JWKS again (the floor had
	// passed: whatever it would refuse for want of a fetch, it has refused by then)
	// and at least 10 tokens of the new key were checked; then the verdict.
	fetched := o.Fetches()
	g.Eventually(func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, h := range tokens {
			if h.kid == next {
				n++
			}
		}
		return n >= 10 && o.Fetches() > fetched
	}).WithTimeout(2 * time.Minute).WithPolling(500 * time.Millisecond).Should(BeTrue())
	stopTraffic()
	<-trafficC

	mu.Lock()
	defer mu.Unlock()
	newTokens := 0
	for _, h := range tokens {
		if h.kid == next {
			newTokens++
		}
	}
	for _, r := range refused {
		t.Errorf("token of APIToken %s (key %s, read %s) refused with %d at %s", r.apiToken, r.kid, stamp(r.readAt), r.status, stamp(r.at))
	}
	errsMu.Lock()
	for _, e := range errs {
		t.Errorf("the offline verifier could not decide: %s", e)
	}
	errsMu.Unlock()
	g.Expect(noiseOK).To(BeZero(), "a token of an unknown key was accepted")
	g.Expect(newTokens).To(BeNumerically(">=", 10), "tokens minted after the rotation")
	g.Expect(checks[first]).To(BeNumerically(">", 0))
	g.Expect(o.Fetches()).To(BeNumerically(">=", 3), "the verifier refreshed its keys on its schedule")
	report(t, map[string]any{
		"publishBefore": keyRollLead.String(), "publishedAfter": published.Sub(requested).Round(100 * time.Millisecond).String(),
		"signedAfter": rotated.Sub(requested).Round(100 * time.Millisecond).String(), "apiTokens": created,
		"tokensOldKey": len(tokens) - newTokens, "tokensNewKey": newTokens, "checksOldKey": checks[first], "checksNewKey": checks[next],
		"refusals": len(refused), "jwksFetches": o.Fetches(),
	})
}
