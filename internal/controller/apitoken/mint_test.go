package apitoken

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/controller"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

func TestMintJWT(t *testing.T) {
	for _, alg := range []tokensv1.SigningAlgorithm{tokensv1.AlgorithmES256, tokensv1.AlgorithmEdDSA, tokensv1.AlgorithmRS256} {
		t.Run(string(alg), func(t *testing.T) {
			g := NewWithT(t)
			f := newIssuer(t, func(i *tokensv1.ClusterTokenIssuer) { i.Spec.Signing.Algorithm = alg })
			ns := newNamespace(t)
			h := newHarness(t)
			tok := newToken(t, ns, f.name, func(a *tokensv1.APIToken) {
				a.Spec.SubTenant = "payments"
				a.Spec.Scopes = []string{"reports:read", "billing:write"}
				a.Spec.Secret = &tokensv1.SecretSpec{
					Name:     "ci-token",
					Template: &tokensv1.SecretTemplate{Labels: map[string]string{"team": "ci"}, Annotations: map[string]string{"note": "hi"}},
				}
			})

			res := h.mustReconcile(tok)
			got := getToken(t, tok)
			jitter := renewalJitter(got.Status.Current.TokenID, time.Hour)
			g.Expect(res.RequeueAfter).To(Equal(2*time.Hour-jitter), "renewal at 2/3 of a 3h lifetime, less the token's jitter")

			g.Expect(got.Finalizers).To(BeEmpty(), "deletionPolicy Delete needs no finalizer")
			st := got.Status
			g.Expect(st.Current).NotTo(BeNil())
			g.Expect(st.Current.Format).To(Equal(tokensv1.FormatJWT))
			g.Expect(st.Current.SigningKeyID).To(Equal(f.current().ID))
			g.Expect(st.Current.TokenHash).To(BeEmpty())
			g.Expect(st.Current.Digest).To(HavePrefix("sha256:"))
			g.Expect(st.Current.Claims).To(Equal(tokensv1.TokenClaims{Tenant: ns, SubTenant: "payments", Role: "editor", Scopes: []string{"billing:write", "reports:read"}, Audiences: []string{"test-api"}}))
			g.Expect(st.Current.IssuedAt.Time).To(BeTemporally("==", h.clock.Now()))
			g.Expect(st.Current.ExpiresAt.Time).To(BeTemporally("==", h.clock.Now().Add(3*time.Hour)))
			g.Expect(st.RenewalTime.Time).To(BeTemporally("==", h.clock.Now().Add(2*time.Hour-jitter)))
			g.Expect(st.Rotations).To(BeZero())
			g.Expect(st.SecretName).To(Equal("ci-token"))
			g.Expect(st.ObservedGeneration).To(Equal(got.Generation))
			g.Expect(st.PreviousTokens).To(BeEmpty())
			ready := condition(got, tokensv1.ConditionReady)
			g.Expect(ready.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(ready.Reason).To(Equal(tokensv1.ReasonMinted))
			g.Expect(condition(got, tokensv1.ConditionStalled)).To(BeNil())
			g.Expect(got.Status.Conditions).To(HaveLen(1), "a healthy APIToken carries Ready alone")

			sec := getSecret(t, ns, "ci-token")
			g.Expect(sec).NotTo(BeNil())
			g.Expect(string(sec.Type)).To(Equal(tokensv1.TokenSecretType))
			g.Expect(sec.Labels).To(Equal(map[string]string{"team": "ci", tokensv1.ManagedByLabel: tokensv1.ManagedByValue}))
			g.Expect(sec.Annotations).To(HaveKeyWithValue("note", "hi"))
			owner := metav1.GetControllerOf(sec)
			g.Expect(owner).NotTo(BeNil())
			g.Expect(owner.UID).To(Equal(got.UID))
			g.Expect(owner.Kind).To(Equal("APIToken"))
			g.Expect(string(sec.Data[tokensv1.SecretKeyTokenID])).To(Equal(st.Current.TokenID))
			g.Expect(st.Current.Digest).To(Equal(token.Digest(string(sec.Data[tokensv1.SecretKeyToken]))), "the record binds the exact token")
			g.Expect(string(sec.Data[tokensv1.SecretKeyExpiresAt])).To(Equal(st.Current.ExpiresAt.UTC().Format(time.RFC3339)))
			g.Expect(string(sec.Data[tokensv1.SecretKeyTenant])).To(Equal(ns))
			g.Expect(string(sec.Data[tokensv1.SecretKeyRole])).To(Equal("editor"))
			g.Expect(sec.ManagedFields).To(ContainElement(HaveField("Manager", controller.FieldManager)))

			claims, err := f.verifier(t, h.clock.Now).Verify(string(sec.Data[tokensv1.SecretKeyToken]))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(claims.ID).To(Equal(st.Current.TokenID))
			g.Expect(claims.KeyID).To(Equal(f.current().ID))
			g.Expect(claims.Issuer).To(Equal(f.get(t).Spec.Issuer))
			g.Expect(claims.Subject).To(Equal("apitoken:" + ns + ":" + tok.Name))
			g.Expect(claims.Audience).To(Equal([]string{"test-api"}))
			g.Expect(claims.Tenant).To(Equal(ns))
			g.Expect(claims.SubTenant).To(Equal("payments"))
			g.Expect(claims.Role).To(Equal("editor"))
			g.Expect(claims.Scopes).To(Equal([]string{"billing:write", "reports:read"}))
			g.Expect(accepted(t, f, got, string(sec.Data[tokensv1.SecretKeyToken]), h.clock.Now())).To(BeTrue())

			g.Eventually(func() []string { return eventReasons(t, ns, tok.Name) }).Should(ContainElement(tokensv1.ReasonMinted))
		})
	}
}

func TestMintOpaque(t *testing.T) {
	tests := []struct {
		name   string
		issuer func(*tokensv1.ClusterTokenIssuer)
		token  func(*tokensv1.APIToken)
		prefix string
	}{
		{"spec.format", func(i *tokensv1.ClusterTokenIssuer) { i.Spec.OpaquePrefix = "acme" }, func(a *tokensv1.APIToken) { a.Spec.Format = tokensv1.FormatOpaque }, "acme_"},
		{"issuer defaultFormat", func(i *tokensv1.ClusterTokenIssuer) { i.Spec.DefaultFormat = tokensv1.FormatOpaque }, nil, "apt_"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			f := newIssuer(t, tt.issuer)
			ns := newNamespace(t)
			h := newHarness(t)
			tok := newToken(t, ns, f.name, tt.token)
			h.mustReconcile(tok)

			got := getToken(t, tok)
			cur := got.Status.Current
			g.Expect(cur.Format).To(Equal(tokensv1.FormatOpaque))
			g.Expect(cur.SigningKeyID).To(BeEmpty())
			g.Expect(cur.TokenHash).To(HavePrefix("sha256:"))
			g.Expect(cur.Digest).To(BeEmpty(), "the hash binds an opaque token")
			sec := getSecret(t, ns, tok.Name)
			value := string(sec.Data[tokensv1.SecretKeyToken])
			g.Expect(value).To(HavePrefix(tt.prefix + cur.TokenID + "_"))
			id, err := token.VerifyOpaque(value, cur.TokenHash)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(id).To(Equal(cur.TokenID))
			g.Expect(got.Status.SecretName).To(Equal(tok.Name))
		})
	}
}

func TestPolicyViolations(t *testing.T) {
	tenants := func(i *tokensv1.ClusterTokenIssuer) {
		i.Spec.MaxLifetime = metav1.Duration{Duration: 24 * time.Hour}
		i.Spec.Tenants = []tokensv1.Tenant{{Name: "acme", Namespaces: []string{"elsewhere"}, MaxRole: "viewer"}}
	}
	tests := []struct {
		name   string
		issuer func(*tokensv1.ClusterTokenIssuer)
		// ready false leaves the issuer not Ready; noIssuer names one that does not exist.
		notReady, noIssuer bool
		token              func(ns string, a *tokensv1.APIToken)
		reason, rule       string
	}{
		{name: "tenant not the namespace", token: func(_ string, a *tokensv1.APIToken) { a.Spec.Tenant = "someone-else" }, reason: tokensv1.ReasonPolicyViolation, rule: "TenantNamespace"},
		{name: "unknown role", token: func(_ string, a *tokensv1.APIToken) { a.Spec.Role = "owner" }, reason: tokensv1.ReasonPolicyViolation, rule: "UnknownRole"},
		{name: "namespace not in the tenant's list", issuer: func(i *tokensv1.ClusterTokenIssuer) {
			tenants(i)
		}, token: func(ns string, a *tokensv1.APIToken) {
			a.Spec.Tenant = "acme"
		}, reason: tokensv1.ReasonPolicyViolation, rule: "TenantNamespace"},
		{name: "lifetime above maxLifetime", issuer: func(i *tokensv1.ClusterTokenIssuer) {
			i.Spec.MaxLifetime = metav1.Duration{Duration: 2 * time.Hour}
		}, reason: tokensv1.ReasonPolicyViolation, rule: "MaxLifetime"},
		{name: "issuer missing", noIssuer: true, reason: tokensv1.ReasonIssuerNotFound, rule: "does not exist"},
		{name: "issuer not ready", notReady: true, reason: tokensv1.ReasonIssuerNotReady, rule: "is not Ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			f := newIssuer(t, tt.issuer)
			if tt.notReady {
				f.setReady(t, false)
			}
			issuer := f.name
			if tt.noIssuer {
				issuer = "no-such-issuer"
			}
			ns := newNamespace(t)
			h := newHarness(t)
			tok := newToken(t, ns, issuer, func(a *tokensv1.APIToken) {
				if tt.token != nil {
					tt.token(ns, a)
				}
			})
			_, err := h.reconcile(tok)
			g.Expect(err).To(HaveOccurred())
			g.Expect(errors.Is(err, reconcile.TerminalError(nil))).To(BeTrue(), "a user mistake is not retried: %v", err)

			got := getToken(t, tok)
			g.Expect(got.Status.Current).To(BeNil())
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation), "a stall is observed, so kstatus reports it as failed")
			ready := condition(got, tokensv1.ConditionReady)
			g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(ready.Reason).To(Equal(tt.reason))
			g.Expect(ready.Message).To(ContainSubstring(tt.rule))
			stalled := condition(got, tokensv1.ConditionStalled)
			g.Expect(stalled.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(stalled.Reason).To(Equal(tt.reason))
			g.Expect(getSecret(t, ns, tok.Name)).To(BeNil(), "nothing is minted")
			g.Eventually(func() []string { return eventReasons(t, ns, tok.Name) }).Should(ContainElement(tt.reason))

			// A second pass over the same spec changes nothing.
			rv := got.ResourceVersion
			_, err = h.reconcile(tok)
			g.Expect(errors.Is(err, reconcile.TerminalError(nil))).To(BeTrue())
			g.Expect(getToken(t, tok).ResourceVersion).To(Equal(rv))
		})
	}
}

// TestRoleAboveMaxRole needs a namespace the issuer's tenants list allows, so it
// builds the issuer after the namespace.
func TestRoleAboveMaxRole(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	f := newIssuer(t, func(i *tokensv1.ClusterTokenIssuer) {
		i.Spec.Tenants = []tokensv1.Tenant{{Name: "acme", Namespaces: []string{ns}, MaxRole: "viewer"}}
	})
	h := newHarness(t)
	tok := newToken(t, ns, f.name, func(a *tokensv1.APIToken) { a.Spec.Tenant = "acme" })
	_, err := h.reconcile(tok)
	g.Expect(errors.Is(err, reconcile.TerminalError(nil))).To(BeTrue())
	ready := condition(getToken(t, tok), tokensv1.ConditionReady)
	g.Expect(ready.Reason).To(Equal(tokensv1.ReasonPolicyViolation))
	g.Expect(ready.Message).To(ContainSubstring("MaxRole"))

	// Fixing the spec serves it.
	update(t, tok, func(a *tokensv1.APIToken) { a.Spec.Role = "viewer" })
	h.mustReconcile(tok)
	got := getToken(t, tok)
	g.Expect(condition(got, tokensv1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(condition(got, tokensv1.ConditionStalled)).To(BeNil())
	g.Expect(got.Status.Current.Claims.Tenant).To(Equal("acme"))
}

// TestQuietPassWritesNothing: a pass with nothing to do writes neither the APIToken
// nor the Secret, and never clobbers the validator's lastUsedTime.
func TestQuietPassWritesNothing(t *testing.T) {
	g := NewWithT(t)
	f := newIssuer(t, nil)
	ns := newNamespace(t)
	h := newHarness(t)
	tok := newToken(t, ns, f.name, nil)
	h.mustReconcile(tok)

	// The validator reports a use.
	used := getToken(t, tok)
	used.Status.LastUsedTime = &metav1.Time{Time: h.clock.Now()}
	g.Expect(k8s.Status().Update(context.Background(), used)).To(Succeed())

	before := getToken(t, tok)
	secBefore := getSecret(t, ns, tok.Name)
	h.clock.Step(time.Hour)
	res := h.mustReconcile(tok)
	g.Expect(res.RequeueAfter).To(Equal(time.Hour - renewalJitter(before.Status.Current.TokenID, time.Hour)))
	g.Expect(getToken(t, tok).ResourceVersion).To(Equal(before.ResourceVersion))
	g.Expect(getSecret(t, ns, tok.Name).ResourceVersion).To(Equal(secBefore.ResourceVersion))

	// A rotation keeps lastUsedTime.
	h.clock.Step(time.Hour)
	h.mustReconcile(tok)
	after := getToken(t, tok)
	g.Expect(after.Status.Rotations).To(Equal(int64(1)))
	g.Expect(after.Status.LastUsedTime).NotTo(BeNil())
	g.Expect(after.Status.LastUsedTime.Time).To(BeTemporally("==", used.Status.LastUsedTime.Time))
}

// TestLegacyJWTBound: a current JWT listed without a digest (minted before digests
// were recorded) gets the digest of the JWT its Secret holds, once, and keeps its
// token; the next pass writes nothing.
func TestLegacyJWTBound(t *testing.T) {
	g := NewWithT(t)
	f := newIssuer(t, nil)
	ns := newNamespace(t)
	h := newHarness(t)
	tok := newToken(t, ns, f.name, nil)
	h.mustReconcile(tok)

	legacy := getToken(t, tok)
	id := legacy.Status.Current.TokenID
	legacy.Status.Current.Digest = ""
	g.Expect(k8s.Status().Update(context.Background(), legacy)).To(Succeed())
	secBefore := getSecret(t, ns, tok.Name)

	h.mustReconcile(tok)
	bound := getToken(t, tok)
	g.Expect(bound.Status.Current.TokenID).To(Equal(id), "the token stays")
	g.Expect(bound.Status.Current.Digest).To(Equal(token.Digest(string(secBefore.Data[tokensv1.SecretKeyToken]))))
	g.Expect(getSecret(t, ns, tok.Name).ResourceVersion).To(Equal(secBefore.ResourceVersion), "the Secret is not written")

	h.mustReconcile(tok)
	g.Expect(getToken(t, tok).ResourceVersion).To(Equal(bound.ResourceVersion), "bound once")
}

// TestMetrics: the gauges follow the status and go with the APIToken.
func TestMetrics(t *testing.T) {
	g := NewWithT(t)
	f := newIssuer(t, nil)
	ns := newNamespace(t)
	h := newHarness(t)
	tok := newToken(t, ns, f.name, nil)
	h.mustReconcile(tok)
	cur := getToken(t, tok).Status
	g.Expect(metricValue(t, "apitoken_ready_status", ns, tok.Name)).To(Equal(1.0))
	g.Expect(metricValue(t, "apitoken_expiration_timestamp_seconds", ns, tok.Name)).To(Equal(float64(cur.Current.ExpiresAt.Unix())))
	g.Expect(metricValue(t, "apitoken_renewal_timestamp_seconds", ns, tok.Name)).To(Equal(float64(cur.RenewalTime.Unix())))

	h.clock.Step(2 * time.Hour)
	h.mustReconcile(tok)
	g.Expect(metricValue(t, "apitoken_rotations_total", ns, tok.Name)).To(Equal(1.0))

	g.Expect(k8s.Delete(context.Background(), tok)).To(Succeed())
	h.mustReconcile(tok)
	for _, name := range []string{"apitoken_ready_status", "apitoken_expiration_timestamp_seconds", "apitoken_renewal_timestamp_seconds", "apitoken_rotations_total"} {
		g.Expect(metricValue(t, name, ns, tok.Name)).To(Equal(-1.0), name)
	}
}

// metricValue returns the value of the series of the APIToken, or -1 when there is
// none.
func metricValue(t testing.TB, name, ns, tok string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] != ns || labels["name"] != tok {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// containsAny reports whether s holds one of needles.
func containsAny(s string, needles []string) bool {
	for _, n := range needles {
		if n != "" && strings.Contains(s, n) {
			return true
		}
	}
	return false
}

// staleClient serves an old copy of one APIToken, as a cache that has not yet seen
// the latest write would.
type staleClient struct {
	client.Client
	stale *tokensv1.APIToken
}

func (c staleClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if t, ok := obj.(*tokensv1.APIToken); ok && key == client.ObjectKeyFromObject(c.stale) {
		c.stale.DeepCopyInto(t)
		return nil
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

// TestStaleCache: a pass that reads an APIToken older than its Secret (the cache
// has not yet seen the last status write) writes nothing and comes back soon.
func TestStaleCache(t *testing.T) {
	g := NewWithT(t)
	f := newIssuer(t, nil)
	ns := newNamespace(t)
	h := newHarness(t)
	tok := newToken(t, ns, f.name, nil)
	h.mustReconcile(tok)
	stale := getToken(t, tok)
	h.clock.Step(2 * time.Hour)
	h.mustReconcile(tok) // rotates
	fresh := getToken(t, tok)
	sec := getSecret(t, ns, tok.Name)
	g.Expect(fresh.Status.Current.TokenID).NotTo(Equal(stale.Status.Current.TokenID))

	r := newReconciler(h.clock)
	r.Client = staleClient{Client: k8s, stale: stale}
	res, err := r.Reconcile(context.Background(), requestFor(tok))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.RequeueAfter).To(Equal(staleViewRetry))
	g.Expect(getToken(t, tok).ResourceVersion).To(Equal(fresh.ResourceVersion))
	g.Expect(getSecret(t, ns, tok.Name).ResourceVersion).To(Equal(sec.ResourceVersion))
}

// TestLegacyFalseConditions: the Revoked=False and Expired=False conditions earlier
// versions wrote on every APIToken cost no write of their own after an upgrade (a
// quiet pass leaves them); they go with the next status write the pass makes anyway.
func TestLegacyFalseConditions(t *testing.T) {
	g := NewWithT(t)
	f := newIssuer(t, nil)
	ns := newNamespace(t)
	h := newHarness(t)
	tok := newToken(t, ns, f.name, nil)
	h.mustReconcile(tok)

	got := getToken(t, tok)
	at := metav1.NewTime(h.clock.Now().Add(-time.Hour).Truncate(time.Second))
	got.Status.Conditions = append([]metav1.Condition{
		{Type: tokensv1.ConditionRevoked, Status: metav1.ConditionFalse, Reason: tokensv1.ReasonNotRevoked, Message: "The tokens of this APIToken are not revoked", LastTransitionTime: at, ObservedGeneration: got.Generation},
		{Type: tokensv1.ConditionExpired, Status: metav1.ConditionFalse, Reason: tokensv1.ReasonNotExpired, Message: "The current token has not expired", LastTransitionTime: at, ObservedGeneration: got.Generation},
	}, got.Status.Conditions...)
	g.Expect(k8s.Status().Update(context.Background(), got)).To(Succeed())
	legacy := getToken(t, tok)

	h.mustReconcile(tok)
	quiet := getToken(t, tok)
	g.Expect(quiet.ResourceVersion).To(Equal(legacy.ResourceVersion), "a quiet pass writes nothing")
	g.Expect(quiet.Status.Conditions).To(Equal(legacy.Status.Conditions))

	update(t, tok, func(a *tokensv1.APIToken) { a.Annotations = map[string]string{tokensv1.RotateAnnotation: "now"} })
	h.mustReconcile(tok)
	rotated := getToken(t, tok)
	g.Expect(rotated.Status.Current.TokenID).NotTo(Equal(legacy.Status.Current.TokenID))
	g.Expect(rotated.Status.Conditions).To(HaveLen(1), "the rotation's write drops them")
	g.Expect(condition(rotated, tokensv1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
}
