package install

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/exchange"
	"github.com/apitoken-operator/apitoken-operator/internal/keystore"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/internal/validator"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
)

// TestExchangeRBAC installs the shipped RBAC (kustomize, and the chart with a second
// issuer) and runs the exchange's own code as its ServiceAccount, impersonated against
// the API server: its informers sync on APITokens and issuers, and it reads the
// current signing key of each issuer it is granted. Then, with the same identity, every
// other way to reach a Secret or to write is refused.
func TestExchangeRBAC(t *testing.T) {
	ctx := context.Background()
	installThirdPartyCRDs(ctx, t)
	for _, tt := range []struct {
		name      string
		namespace string
		render    func(t *testing.T) manifest
		// issuers are the issuers whose key Secrets the install grants.
		issuers []string
	}{
		{
			name: "kustomize", namespace: "apitoken-system", issuers: []string{"default"},
			render: func(t *testing.T) manifest { return kustomizeBuild(t, "default") },
		},
		{
			name: "chart with two issuers", namespace: "apitoken-exchange-rbac", issuers: []string{"default", "rbac-second"},
			render: func(t *testing.T) manifest {
				restrictedNamespace(ctx, t, "apitoken-exchange-rbac")
				return helmTemplate(t, "apitoken-exchange-rbac", "exchange.issuers={default,rbac-second}")
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			ns := tt.namespace
			install(ctx, t, tt.render(t))
			tenant := "exchange-rbac-tenant-" + tt.issuers[len(tt.issuers)-1]
			g.Expect(k8s.Create(ctx, testenv.Namespace(tenant))).To(Succeed())

			// What the manager would have made: a key per issuer, in its key Secret, and
			// the issuer's status publishing it.
			keys := map[string]*token.SigningKey{}
			for _, name := range tt.issuers {
				keys[name] = publishKey(ctx, t, g, ns, name)
			}
			// Secrets the exchange must not read: another of the operator's namespace, and
			// one named like a key Secret in a tenant's namespace.
			for _, s := range []*corev1.Secret{
				{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "not-a-key-secret"}, StringData: map[string]string{"k": "v"}},
				{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: keystore.SecretName("default")}, StringData: map[string]string{"k": "v"}},
			} {
				g.Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, s))).To(Succeed())
			}

			cfg := rest.CopyConfig(env.Config)
			cfg.Impersonate = rest.ImpersonationConfig{UserName: serviceAccount(ns, "apitoken-exchange")}

			// The exchange's informers, as cmd/exchange builds them.
			runCtx, stop := context.WithCancel(ctx)
			defer stop()
			fr, err := validator.NewFront(runCtx, cfg, &validator.FrontFlags{KubeAPIQPS: 20, KubeAPIBurst: 40}, nil, clock.RealClock{}, logr.Discard())
			g.Expect(err).NotTo(HaveOccurred())
			cacheDone := make(chan error, 1)
			go func() { cacheDone <- fr.Cache.Start(runCtx) }()
			defer func() {
				stop()
				g.Expect(<-cacheDone).To(Succeed())
			}()
			g.Eventually(fr.Synced).WithTimeout(30*time.Second).WithPolling(50*time.Millisecond).Should(BeTrue(),
				"the exchange lists and watches APITokens and issuers")

			// Its key reads, by name, in the operator's namespace, with a client that
			// knows Secrets, as cmd/exchange reads them.
			keyReader, err := client.New(cfg, client.Options{Scheme: clientgoscheme.Scheme})
			g.Expect(err).NotTo(HaveOccurred())
			ks := exchange.NewKeys(keyReader, ns)
			for name, want := range keys {
				var iss *index.Issuer
				g.Eventually(func() string {
					if iss = fr.Index.Issuer(name); iss == nil {
						return ""
					}
					return iss.CurrentKeyID
				}).WithTimeout(30*time.Second).WithPolling(50*time.Millisecond).Should(Equal(want.ID), "issuer %s", name)
				got, err := ks.Current(ctx, iss)
				g.Expect(err).NotTo(HaveOccurred(), "issuer %s", name)
				g.Expect(got.ID).To(Equal(want.ID))
			}
			// An issuer the install does not grant: its key Secret is refused.
			ungranted := publishKey(ctx, t, g, ns, "rbac-ungranted")
			g.Eventually(func() string {
				if iss := fr.Index.Issuer("rbac-ungranted"); iss != nil {
					return iss.CurrentKeyID
				}
				return ""
			}).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Equal(ungranted.ID))
			_, err = ks.Current(ctx, fr.Index.Issuer("rbac-ungranted"))
			g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)

			as, err := client.NewWithWatch(cfg, client.Options{Scheme: testenv.Scheme})
			g.Expect(err).NotTo(HaveOccurred())
			forbidden := func(err error, what string) {
				t.Helper()
				g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%s: %v", what, err)
			}
			var sec corev1.Secret
			g.Expect(as.Get(ctx, client.ObjectKey{Namespace: ns, Name: keystore.SecretName("default")}, &sec)).To(Succeed())
			forbidden(as.Get(ctx, client.ObjectKey{Namespace: ns, Name: "not-a-key-secret"}, &sec), "another Secret of the operator's namespace")
			forbidden(as.Get(ctx, client.ObjectKey{Namespace: tenant, Name: keystore.SecretName("default")}, &sec), "a Secret of a tenant's namespace")
			forbidden(as.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)), "listing the operator's Secrets")
			forbidden(as.List(ctx, &corev1.SecretList{}), "listing every Secret")
			_, err = as.Watch(ctx, &corev1.SecretList{}, client.InNamespace(ns))
			forbidden(err, "watching the operator's Secrets")
			// Not even its own key Secret may be watched: it is read by name only.
			_, err = as.Watch(ctx, &corev1.SecretList{}, client.InNamespace(ns), client.MatchingFields{"metadata.name": keystore.SecretName("default")})
			forbidden(err, "watching a key Secret")
			keySecret := &corev1.Secret{}
			g.Expect(as.Get(ctx, client.ObjectKey{Namespace: ns, Name: keystore.SecretName("default")}, keySecret)).To(Succeed())
			keySecret.StringData = map[string]string{"forged.pem": "x"}
			forbidden(as.Update(ctx, keySecret), "updating a key Secret")

			// It reads tokens and issuers, and writes none of them, status included.
			var tokens tokensv1.APITokenList
			g.Expect(as.List(ctx, &tokens)).To(Succeed())
			g.Expect(as.List(ctx, &tokens, client.InNamespace(tenant))).To(Succeed())
			var issuers tokensv1.ClusterTokenIssuerList
			g.Expect(as.List(ctx, &issuers)).To(Succeed())
			g.Expect(issuers.Items).NotTo(BeEmpty())
			tok := &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "any"}}
			forbidden(as.Status().Update(ctx, tok), "updating APIToken status")
			forbidden(as.Status().Patch(ctx, tok, client.RawPatch("application/merge-patch+json", []byte(`{"status":{"rotations":1}}`))), "patching APIToken status")
			forbidden(as.Create(ctx, &tokensv1.APIToken{
				ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "minted"},
				Spec:       tokensv1.APITokenSpec{Tenant: tenant, Role: "viewer"},
			}), "creating an APIToken")
			iss := &tokensv1.ClusterTokenIssuer{}
			g.Expect(as.Get(ctx, client.ObjectKey{Name: "default"}, iss)).To(Succeed())
			iss.Status.CurrentKeyID = "forged"
			forbidden(as.Status().Update(ctx, iss), "updating issuer status")
		})
	}
}

// publishKey does what the issuer controller does for a new key: it stores the private
// key in the issuer's key Secret in ns and publishes it as the current key of the
// issuer, which it creates when missing, with exchange enabled.
func publishKey(ctx context.Context, t *testing.T, g *WithT, ns, issuer string) *token.SigningKey {
	t.Helper()
	key, err := token.GenerateKey(token.ES256)
	g.Expect(err).NotTo(HaveOccurred())
	pemBytes, err := key.MarshalPrivateKey()
	g.Expect(err).NotTo(HaveOccurred())
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: keystore.SecretName(issuer)},
		Data:       map[string][]byte{keystore.DataKey(key.ID): pemBytes},
	}
	if err := env.Client.Create(ctx, secret); apierrors.IsAlreadyExists(err) {
		g.Expect(env.Client.Update(ctx, secret)).To(Succeed())
	} else {
		g.Expect(err).NotTo(HaveOccurred())
	}

	iss := &tokensv1.ClusterTokenIssuer{}
	err = env.Client.Get(ctx, client.ObjectKey{Name: issuer}, iss)
	if apierrors.IsNotFound(err) {
		iss = &tokensv1.ClusterTokenIssuer{
			ObjectMeta: metav1.ObjectMeta{Name: issuer},
			Spec: tokensv1.ClusterTokenIssuerSpec{
				Issuer:   "https://" + issuer + ".example",
				Exchange: &tokensv1.ExchangeSpec{Enabled: true},
			},
		}
		g.Expect(env.Client.Create(ctx, iss)).To(Succeed())
	} else {
		g.Expect(err).NotTo(HaveOccurred())
	}
	j := key.PublicJWK()
	iss.Status.CurrentKeyID = key.ID
	iss.Status.Keys = []tokensv1.SigningKeyStatus{{KeyID: key.ID, Algorithm: tokensv1.AlgorithmES256, CreatedAt: metav1.Now()}}
	iss.Status.JWKS = &tokensv1.JSONWebKeySet{Keys: []tokensv1.JSONWebKey{{Kty: j.Kty, Kid: j.Kid, Alg: j.Alg, Use: j.Use, Crv: j.Crv, X: j.X, Y: j.Y}}}
	g.Expect(env.Client.Status().Update(ctx, iss)).To(Succeed())
	t.Cleanup(func() {
		if issuer != "default" {
			_ = env.Client.Delete(context.Background(), iss)
		}
	})
	return key
}
