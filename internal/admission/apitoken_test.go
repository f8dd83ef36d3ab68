package admission_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/admission"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	ctrl.SetLogger(logr.Discard())
	testenv.Main(m, &env, func(e *testenv.Env) error {
		ctx, cancel := context.WithCancel(context.Background())
		e.Cleanup(cancel)
		return startWebhookServer(ctx)
	}, testenv.WithWebhooks())
}

func startWebhookServer(ctx context.Context) error {
	wh := env.Webhook()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:  testenv.Scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: wh.LocalServingHost, Port: wh.LocalServingPort, CertDir: wh.LocalServingCertDir,
		}),
	})
	if err != nil {
		return err
	}
	if err := (&admission.APITokenValidator{Reader: mgr.GetAPIReader(), Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&admission.CreatorRecorder{}).SetupWithManager(mgr); err != nil {
		return err
	}
	go func() { _ = mgr.Start(ctx) }()
	// The webhook is ready once the API server can reach it: probe with a dry run.
	var last error
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		last = env.Client.Create(ctx, &tokensv1.APIToken{
			ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "default"},
			Spec:       tokensv1.APITokenSpec{Tenant: "default", Role: "viewer", IssuerRef: tokensv1.IssuerReference{Name: "probe-issuer-that-does-not-exist"}},
		}, client.DryRunAll)
		return last != nil && strings.Contains(last.Error(), "does not exist"), nil
	}); err != nil {
		return fmt.Errorf("the webhook server never answered: %w", errors.Join(err, last))
	}
	return nil
}

type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

func TestWebhookEnforcesIssuerPolicy(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	for _, ns := range []string{"acme", "ci", "globex"} {
		g.Expect(env.Client.Create(ctx, testenv.Namespace(ns))).To(Succeed())
	}
	g.Expect(env.Client.Create(ctx, &tokensv1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "policy"},
		Spec: tokensv1.ClusterTokenIssuerSpec{
			Issuer:      "https://tokens.acme.internal",
			MaxLifetime: metav1.Duration{Duration: 48 * time.Hour},
			Roles: []tokensv1.Role{
				{Name: "viewer"}, {Name: "editor", Includes: []string{"viewer"}}, {Name: "admin", Includes: []string{"editor"}},
			},
			Tenants: []tokensv1.Tenant{{Name: "acme", Namespaces: []string{"acme", "ci"}, MaxRole: "editor"}},
		},
	})).To(Succeed())

	token := func(ns, tenant, role string, lifetime time.Duration) *tokensv1.APIToken {
		return &tokensv1.APIToken{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "t-", Namespace: ns},
			Spec: tokensv1.APITokenSpec{
				IssuerRef: tokensv1.IssuerReference{Name: "policy"},
				Tenant:    tenant, Role: role,
				Lifetime: metav1.Duration{Duration: lifetime},
			},
		}
	}
	for _, tc := range []struct {
		name string
		tok  *tokensv1.APIToken
		want string // "" means accepted
	}{
		{"allowed", token("ci", "acme", "editor", time.Hour), ""},
		{"role included by maxRole", token("acme", "acme", "viewer", time.Hour), ""},
		{"namespace not allowed for tenant", token("globex", "acme", "viewer", time.Hour), `spec.tenant: namespace "globex" may not mint tokens for tenant "acme"`},
		{"tenant not listed", token("globex", "globex", "viewer", time.Hour), `spec.tenant: tenant "globex" is not in the issuer's tenants list`},
		{"role above maxRole", token("acme", "acme", "admin", time.Hour), `spec.role: role "admin" is above tenant "acme"'s maxRole "editor"`},
		{"unknown role", token("acme", "acme", "root", time.Hour), `spec.role: role "root" is not one of the issuer's roles`},
		{"lifetime over maximum", token("acme", "acme", "viewer", 72*time.Hour), "spec.lifetime: lifetime 72h0m0s exceeds the issuer's maxLifetime 48h0m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			err := env.Client.Create(ctx, tc.tok)
			if tc.want == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tc.want)))
			g.Expect(err.Error()).To(ContainSubstring("vapitoken.apitoken.dev"), "refused by the webhook")
		})
	}

	t.Run("missing issuer", func(t *testing.T) {
		tok := token("acme", "acme", "viewer", time.Hour)
		tok.Spec.IssuerRef.Name = "nope"
		NewWithT(t).Expect(env.Client.Create(ctx, tok)).To(MatchError(ContainSubstring(`spec.issuerRef.name: ClusterTokenIssuer "nope" does not exist`)))
	})

	// An object that did not pass through the API server's defaulting (a dry run
	// built in code, a test) is judged by the lifetime the controller would mint.
	t.Run("an unset lifetime is checked as the default one", func(t *testing.T) {
		v := &admission.APITokenValidator{Reader: env.Client}
		_, err := v.ValidateCreate(ctx, token("acme", "acme", "viewer", 0))
		NewWithT(t).Expect(err).To(MatchError(`spec.lifetime: lifetime 720h0m0s exceeds the issuer's maxLifetime 48h0m0s`))
	})

	t.Run("revoking is allowed whatever the policy says now", func(t *testing.T) {
		g := NewWithT(t)
		tok := token("ci", "acme", "editor", time.Hour)
		g.Expect(env.Client.Create(ctx, tok)).To(Succeed())
		// The policy tightens: ci may no longer mint for acme.
		var iss tokensv1.ClusterTokenIssuer
		g.Expect(env.Client.Get(ctx, client.ObjectKey{Name: "policy"}, &iss)).To(Succeed())
		iss.Spec.Tenants[0].Namespaces = []string{"acme"}
		g.Expect(env.Client.Update(ctx, &iss)).To(Succeed())

		tok.Spec.Description = "still allowed?"
		g.Expect(env.Client.Update(ctx, tok)).To(MatchError(ContainSubstring(`namespace "ci" may not mint`)))
		tok.Spec.Revoked = true
		g.Expect(env.Client.Update(ctx, tok)).To(Succeed())
		g.Expect(env.Client.Delete(ctx, tok)).To(Succeed())
	})

	t.Run("short rotation windows are accepted with a warning", func(t *testing.T) {
		g := NewWithT(t)
		w := &warnings{}
		cfg := rest.CopyConfig(env.Config)
		cfg.WarningHandler = w
		c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
		g.Expect(err).NotTo(HaveOccurred())
		tok := token("acme", "acme", "viewer", time.Hour)
		tok.Spec.Rotation = &tokensv1.RotationSpec{GracePeriod: &metav1.Duration{Duration: 30 * time.Second}}
		g.Expect(c.Create(ctx, tok)).To(Succeed())
		g.Expect(w.msgs).To(ContainElement(ContainSubstring("spec.rotation.gracePeriod 30s is shorter than 2m0s")))
	})

	// The manager's own metadata writes (a finalizer) and a person's rotate annotation
	// leave the spec alone: the API server does not ask the webhook (matchConditions),
	// which would refuse them once the policy no longer allows the spec.
	t.Run("updates that leave the spec alone do not reach the webhook", func(t *testing.T) {
		g := NewWithT(t)
		tok := token("acme", "acme", "editor", time.Hour)
		g.Expect(env.Client.Create(ctx, tok)).To(Succeed())
		var iss tokensv1.ClusterTokenIssuer
		g.Expect(env.Client.Get(ctx, client.ObjectKey{Name: "policy"}, &iss)).To(Succeed())
		iss.Spec.Tenants[0].MaxRole = "viewer"
		g.Expect(env.Client.Update(ctx, &iss)).To(Succeed())

		changed := tok.DeepCopy()
		changed.Spec.Description = "a spec change is judged"
		g.Expect(env.Client.Update(ctx, changed)).To(MatchError(ContainSubstring(`role "editor" is above tenant "acme"'s maxRole "viewer"`)))

		tok.Finalizers = []string{"apitoken.dev/finalizer"}
		tok.Annotations = map[string]string{tokensv1.RotateAnnotation: "now"}
		g.Expect(env.Client.Update(ctx, tok)).To(Succeed())
		tok.Finalizers = nil
		g.Expect(env.Client.Update(ctx, tok)).To(Succeed())
		g.Expect(env.Client.Delete(ctx, tok)).To(Succeed())
	})
}

// staleCache serves ClusterTokenIssuers as a cache that lags the API server does: the
// issuers of stale as they were, the others not at all.
type staleCache struct {
	client.Reader
	stale map[string]*tokensv1.ClusterTokenIssuer
}

func (c staleCache) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	iss, ok := c.stale[key.Name]
	if !ok {
		return apierrors.NewNotFound(tokensv1.GroupVersion.WithResource("clustertokenissuers").GroupResource(), key.Name)
	}
	iss.DeepCopyInto(obj.(*tokensv1.ClusterTokenIssuer))
	return nil
}

// TestWebhookReadsThroughTheCache: the webhook judges by the cached issuer, and asks
// the API server only when the cache does not have it or refuses, so that a cache
// behind an issuer just created or loosened refuses nothing the policy allows.
func TestWebhookReadsThroughTheCache(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	g.Expect(env.Client.Create(ctx, testenv.Namespace("cached"))).To(Succeed())
	iss := &tokensv1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "cached"},
		Spec: tokensv1.ClusterTokenIssuerSpec{
			Issuer:  "https://tokens.cached.internal",
			Roles:   []tokensv1.Role{{Name: "viewer"}, {Name: "editor", Includes: []string{"viewer"}}},
			Tenants: []tokensv1.Tenant{{Name: "cached", Namespaces: []string{"cached"}, MaxRole: "editor"}},
		},
	}
	g.Expect(env.Client.Create(ctx, iss)).To(Succeed())
	stricter := iss.DeepCopy()
	stricter.Spec.Tenants[0].MaxRole = "viewer"
	editor := &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "cached"},
		Spec:       tokensv1.APITokenSpec{IssuerRef: tokensv1.IssuerReference{Name: "cached"}, Tenant: "cached", Role: "editor", Lifetime: metav1.Duration{Duration: time.Hour}},
	}

	for _, tc := range []struct {
		name  string
		cache map[string]*tokensv1.ClusterTokenIssuer
		want  string // "" means admitted
	}{
		{"the cache has not seen the issuer yet", nil, ""},
		{"the cache has an older, stricter policy", map[string]*tokensv1.ClusterTokenIssuer{"cached": stricter}, ""},
		{"the cache agrees with the API server", map[string]*tokensv1.ClusterTokenIssuer{"cached": iss}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &admission.APITokenValidator{Reader: staleCache{stale: tc.cache}, APIReader: env.Client}
			_, err := v.ValidateCreate(ctx, editor)
			NewWithT(t).Expect(err).NotTo(HaveOccurred())
		})
	}

	t.Run("a refusal is the API server's", func(t *testing.T) {
		g := NewWithT(t)
		admin := editor.DeepCopy()
		admin.Spec.Role = "admin"
		v := &admission.APITokenValidator{Reader: staleCache{stale: map[string]*tokensv1.ClusterTokenIssuer{"cached": iss}}, APIReader: env.Client}
		_, err := v.ValidateCreate(ctx, admin)
		g.Expect(err).To(MatchError(ContainSubstring(`spec.role: role "admin" is not one of the issuer's roles`)))
		_, err = (&admission.APITokenValidator{Reader: staleCache{}, APIReader: env.Client}).ValidateCreate(ctx, &tokensv1.APIToken{
			ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "cached"},
			Spec:       tokensv1.APITokenSpec{IssuerRef: tokensv1.IssuerReference{Name: "nope"}, Tenant: "cached", Role: "viewer"},
		})
		g.Expect(err).To(MatchError(ContainSubstring(`ClusterTokenIssuer "nope" does not exist`)))
	})

	// A policy tightened a moment ago may still admit, from the cache, a token it no
	// longer allows: admission is the early answer, not the gate. The controller mints
	// and the validator accepts only what the issuer's policy allows as they see it
	// (internal/validator's TestPolicyTightening).
	t.Run("a cache behind a tightening admits what it still allows", func(t *testing.T) {
		v := &admission.APITokenValidator{Reader: staleCache{stale: map[string]*tokensv1.ClusterTokenIssuer{"cached": iss}}, APIReader: staleCache{stale: map[string]*tokensv1.ClusterTokenIssuer{"cached": stricter}}}
		_, err := v.ValidateCreate(ctx, editor)
		NewWithT(t).Expect(err).NotTo(HaveOccurred())
	})
}
