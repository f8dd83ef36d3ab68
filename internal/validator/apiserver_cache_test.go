package validator

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// cachingAPIServerAudience is what the caching kube-apiserver of this test asks tokens
// to carry (the suite's own API server asks for apiServerAudience).
const cachingAPIServerAudience = "https://kube-apiserver.test"

// kubeAPIServerSuccessCache is how long kube-apiserver caches a successful token
// authentication in front of all its token authenticators, webhook included
// (TokenSuccessCacheTTL in k8s.io/kubernetes/pkg/kubeapiserver/options). No flag
// changes it.
const kubeAPIServerSuccessCache = 10 * time.Second

// startAuthenticatingAPIServer starts a kube-apiserver of its own (and its etcd) that
// uses the validator at tokenReviewURL as its webhook token authenticator, configured
// as docs/kube-apiserver-webhook.md says, with the given webhook cache TTL. It returns
// the server's address and CA, with no credentials.
func startAuthenticatingAPIServer(t *testing.T, tokenReviewURL string, ttl time.Duration) *rest.Config {
	t.Helper()
	g := NewWithT(t)
	webhook := filepath.Join(t.TempDir(), "webhook.kubeconfig")
	g.Expect(writeWebhookKubeconfig(webhook, tokenReviewURL, nil)).To(Succeed())
	e := &envtest.Environment{}
	withTokenWebhook(webhook, ttl, cachingAPIServerAudience)(e)
	admin, err := e.Start()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = e.Stop() })
	return &rest.Config{Host: admin.Host, TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData}}
}

// whoami asks kube-apiserver who the bearer of tok is: its user name, or an error
// (Unauthorized once it refuses the token).
func whoami(ctx context.Context, server *rest.Config, tok string) (string, error) {
	cfg := rest.CopyConfig(server)
	cfg.BearerToken = tok
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return r.Status.UserInfo.Username, nil
}

// TestKubeAPIServerCachesAcceptedTokens measures how long kube-apiserver, with the
// validator as its webhook token authenticator, keeps accepting a token after it was
// revoked. The validator refuses it within an informer event; kube-apiserver serves
// the success it cached, for 10 s in front of the webhook whatever
// --authentication-token-webhook-cache-ttl says, and for that TTL behind it: at least
// max(10 s, TTL) with steady use, at most TTL + 10 s. docs/kube-apiserver-webhook.md
// and docs/security.md say so.
func TestKubeAPIServerCachesAcceptedTokens(t *testing.T) {
	for _, ttl := range []time.Duration{100 * time.Millisecond, 15 * time.Second} {
		t.Run("webhook cache TTL "+ttl.String(), func(t *testing.T) {
			h := start(t, Options{})
			g := NewWithT(t)
			api := startAuthenticatingAPIServer(t, h.url+validatorapi.PathTokenReview, ttl)
			iss := h.issuer(token.ES256, true)
			m := h.apiToken(iss, tokenSpec{audiences: []string{cachingAPIServerAudience}})
			h.waitIndexed(m)
			user := "apitoken:" + h.ns + ":" + m.obj.Name

			// The first request fills both caches.
			g.Expect(whoami(h.ctx, api, m.token)).To(Equal(user))
			cached := time.Now()

			h.updateSpec(m, func(s *tokensv1.APITokenSpec) { s.Revoked = true })
			g.Eventually(func() bool {
				_, _, out := h.review(m.token, cachingAPIServerAudience)
				return out.Status.Authenticated
			}).WithTimeout(informerEvent).Should(BeFalse(), "the validator itself refuses the revoked token")
			atValidator := time.Since(cached)

			g.Expect(whoami(h.ctx, api, m.token)).To(Equal(user), "kube-apiserver still accepts the revoked token from its cache")

			// Ask steadily, as a client using the token would, until kube-apiserver refuses.
			upper := ttl + kubeAPIServerSuccessCache + 10*time.Second
			g.Eventually(func() bool {
				_, err := whoami(h.ctx, api, m.token)
				return apierrors.IsUnauthorized(err)
			}).WithTimeout(upper).WithPolling(100*time.Millisecond).Should(BeTrue(), "kube-apiserver never refused the revoked token")
			atAPIServer := time.Since(cached)
			t.Logf("webhook cache TTL %s: the validator refused the revoked token %s after kube-apiserver cached it, kube-apiserver %s after",
				ttl, atValidator.Round(time.Millisecond), atAPIServer.Round(time.Millisecond))

			g.Expect(atAPIServer).To(BeNumerically(">=", max(kubeAPIServerSuccessCache, ttl)-500*time.Millisecond),
				"kube-apiserver refused sooner than its caches allow: the documented delay is wrong")
			g.Expect(atAPIServer).To(BeNumerically("<=", upper))
		})
	}
}
