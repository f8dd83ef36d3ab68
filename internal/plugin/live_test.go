package plugin

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/controller"
	"github.com/apitoken-operator/apitoken-operator/internal/controller/apitoken"
	"github.com/apitoken-operator/apitoken-operator/internal/controller/issuer"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

// operatorNS holds the signing keys of the live test.
const operatorNS = "apitoken-system"

// startControllers runs the issuer and APIToken controllers in a manager, as
// cmd/manager does, watching namespaces and the operator's.
func startControllers(t *testing.T, namespaces ...string) {
	t.Helper()
	g := NewWithT(t)
	cacheOpts := controller.CacheOptions()
	cacheOpts.DefaultNamespaces = map[string]cache.Config{operatorNS: {}}
	for _, ns := range namespaces {
		cacheOpts.DefaultNamespaces[ns] = cache.Config{}
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 testenv.Scheme,
		Cache:                  cacheOpts,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Logger:                 log.Log.WithName("manager"),
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect((&issuer.Reconciler{
		Client: mgr.GetClient(), Namespace: operatorNS, Clock: clock.RealClock{}, Recorder: mgr.GetEventRecorder("apitoken-issuer"),
	}).SetupWithManager(mgr)).To(Succeed())
	g.Expect((&apitoken.Reconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Namespace: operatorNS, Clock: clock.RealClock{},
		Recorder: mgr.GetEventRecorder("apitoken-controller"), MaxConcurrentReconciles: 2,
	}).SetupWithManager(mgr)).To(Succeed())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
}

// TestWithControllers drives the real controllers with the plugin alone: create
// --apply, inspect, rotate --wait, inspect the old token, revoke, list and describe.
// Times are real, so outputs are checked line by line rather than against golden
// files.
func TestWithControllers(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(60 * time.Second)
	ctx := context.Background()
	for _, ns := range []string{operatorNS, "live"} {
		g.Expect(env.Client.Create(ctx, testenv.Namespace(ns))).To(Succeed())
	}
	startControllers(t, "live")
	g.Expect(env.Client.Create(ctx, &tokensv1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "live"},
		Spec:       tokensv1.ClusterTokenIssuerSpec{Issuer: "https://tokens.live.test", Audiences: []string{"live-api"}},
	})).To(Succeed())

	live := func(stdin string, args ...string) string {
		t.Helper()
		r := runAt(clock.RealClock{}, stdin, append(args, "-n", "live")...)
		g.Expect(r.err).NotTo(HaveOccurred(), "kubectl apitoken %s: %s", strings.Join(args, " "), r.errOut)
		return r.out
	}
	line := func(out, label string) string {
		for _, l := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(l, label+":"); ok {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}

	live("", "create", "ci", "--tenant", "live", "--role", "editor", "--issuer", "live", "--lifetime", "1h", "--grace-period", "10m", "--apply")
	current := func() *tokensv1.IssuedToken { return getAPIToken(t, "live", "ci").Status.Current }
	g.Eventually(func(g Gomega) {
		tok := getAPIToken(t, "live", "ci")
		g.Expect(meta.IsStatusConditionTrue(tok.Status.Conditions, tokensv1.ConditionReady)).To(BeTrue())
		g.Expect(tok.Status.Current).NotTo(BeNil())
	}).Should(Succeed())
	first := current().TokenID

	// The token the controller wrote verifies against the key the issuer controller
	// published, and is the current one.
	out := live("", "inspect", "--secret", "ci")
	g.Expect(line(out, "Validity")).To(Equal("valid"), out)
	g.Expect(line(out, "Token ID")).To(Equal(first))
	g.Expect(line(out, "Listed")).To(Equal("yes, as the current token"))
	g.Expect(line(out, "Issuer")).To(Equal("live"))
	g.Expect(live("", "inspect", "--secret", "ci", "--show-token", "-o", "yaml")).To(ContainSubstring("token: eyJ"))
	sec := &corev1.Secret{}
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: "live", Name: "ci"}, sec)).To(Succeed())
	oldToken := string(sec.Data[tokensv1.SecretKeyToken])

	out = live("", "list")
	g.Expect(out).To(MatchRegexp(`(?m)^ci\s+live\s+editor\s+JWT\s+(59m|60m)\s+<never>\s+True$`))

	// rotate --wait returns once the controller served the request.
	out = live("", "rotate", "ci", "--wait")
	second := current().TokenID
	g.Expect(second).NotTo(Equal(first))
	g.Expect(out).To(HaveSuffix("apitoken/ci rotated: current token " + second + "\n"))
	out = live(oldToken, "inspect")
	g.Expect(line(out, "Validity")).To(Equal("valid"))
	g.Expect(line(out, "Listed")).To(MatchRegexp(`^yes, as a previous token, retires in (9m[0-9]+s|10m)$`))
	g.Expect(line(live("", "inspect", "--secret", "ci"), "Token ID")).To(Equal(second))

	// --retire-previous: the old tokens leave the status at once.
	live("", "rotate", "ci", "--retire-previous", "--wait")
	g.Expect(getAPIToken(t, "live", "ci").Status.PreviousTokens).To(BeEmpty())
	g.Expect(line(live(oldToken, "inspect"), "Listed")).To(Equal("no: replaced and retired, or revoked"))

	// describe shows what the controller did.
	g.Eventually(func() string { return live("", "describe", "ci") }).Should(And(
		MatchRegexp(`Rotations:\s+2`),
		ContainSubstring("Token ID:            "+current().TokenID),
		MatchRegexp(`(?m)^  Ready\s+True\s+Rotated`),
	))

	// revoke: the controller revokes and removes the Secret.
	out = live("yes\n", "revoke", "ci")
	g.Expect(out).To(HaveSuffix("apitoken/ci revoked\n"))
	g.Eventually(func(g Gomega) {
		tok := getAPIToken(t, "live", "ci")
		g.Expect(meta.IsStatusConditionTrue(tok.Status.Conditions, tokensv1.ConditionRevoked)).To(BeTrue())
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: "live", Name: "ci"}, &corev1.Secret{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
	}).Should(Succeed())
	g.Expect(live("", "list")).To(MatchRegexp(`(?m)^ci\s+live\s+editor\s+\S+\s+<revoked>\s+<never>\s+False$`))
	r := runAt(clock.RealClock{}, "", "inspect", "--secret", "ci", "-n", "live")
	g.Expect(r.err).To(MatchError(`secret "ci" not found in namespace "live"`))
}

// TestRotateKeyWithControllers drives a key rotation and a compromised-key rotation
// of the real controllers with rotate-key --wait alone.
func TestRotateKeyWithControllers(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(60 * time.Second)
	ctx := context.Background()
	for _, ns := range []string{operatorNS, "keys"} {
		if err := env.Client.Create(ctx, testenv.Namespace(ns)); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	startControllers(t, "keys")
	g.Expect(env.Client.Create(ctx, &tokensv1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "keys"},
		Spec:       tokensv1.ClusterTokenIssuerSpec{Issuer: "https://tokens.keys.test"},
	})).To(Succeed())
	live := func(args ...string) string {
		t.Helper()
		r := runAt(clock.RealClock{}, "", append(args, "-n", "keys")...)
		g.Expect(r.err).NotTo(HaveOccurred(), "kubectl apitoken %s: %s", strings.Join(args, " "), r.errOut)
		return r.out
	}
	issuer := func() *tokensv1.ClusterTokenIssuer {
		iss := &tokensv1.ClusterTokenIssuer{}
		g.Expect(env.Client.Get(ctx, client.ObjectKey{Name: "keys"}, iss)).To(Succeed())
		return iss
	}

	live("create", "ci", "--tenant", "keys", "--role", "editor", "--issuer", "keys", "--lifetime", "1h", "--apply")
	g.Eventually(func(g Gomega) {
		tok := getAPIToken(t, "keys", "ci")
		g.Expect(meta.IsStatusConditionTrue(tok.Status.Conditions, tokensv1.ConditionReady)).To(BeTrue())
	}).Should(Succeed())
	k1 := issuer().Status.CurrentKeyID
	g.Expect(getAPIToken(t, "keys", "ci").Status.Current.SigningKeyID).To(Equal(k1))

	// A plain rotation publishes the next key; the current one keeps signing for
	// publishBefore (the default, 5m).
	out := live("rotate-key", "keys", "--wait")
	iss := issuer()
	k2 := iss.Status.NextKeyID
	g.Expect(k2).NotTo(BeEmpty())
	g.Expect(iss.Status.CurrentKeyID).To(Equal(k1))
	g.Expect(out).To(HaveSuffix("clustertokenissuer/keys published key " + k2 + "; it signs new tokens from " +
		iss.Status.NextRotationTime.UTC().Format(time.RFC3339) + "\n"))

	// Compromised: both keys go, and the token is re-minted with the new one.
	out = live("rotate-key", "keys", "--compromised", "--yes", "--wait")
	iss = issuer()
	k3 := iss.Status.CurrentKeyID
	g.Expect(k3).NotTo(BeElementOf(k1, k2))
	g.Expect(out).To(HaveSuffix("clustertokenissuer/keys withdrew keys " + k1 + ", " + k2 + "; 1 APITokens re-minted; key " + k3 + " signs new tokens\n"))
	g.Expect(iss.Status.JWKS.Keys).To(HaveLen(1))
	g.Expect(getAPIToken(t, "keys", "ci").Status.Current.SigningKeyID).To(Equal(k3))
}
