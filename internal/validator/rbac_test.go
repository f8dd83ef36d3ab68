package validator

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// TestRBAC runs the validator as a user bound to nothing but the generated
// config/rbac/validator ClusterRole, under the admission policy of
// config/rbac/validator_status_policy.yaml: it watches, answers and reports usage,
// and it can neither read Secrets, nor change an APIToken's spec, nor change any of
// its status but lastUsedTime.
func TestRBAC(t *testing.T) {
	g := NewWithT(t)
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "validator", "role.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	obj, _, err := testenv.Codecs.UniversalDeserializer().Decode(raw, nil, nil)
	g.Expect(err).NotTo(HaveOccurred())
	role := obj.(*rbacv1.ClusterRole)
	for _, rule := range role.Rules {
		g.Expect(rule.Resources).NotTo(ContainElement("secrets"))
		g.Expect(rule.Verbs).NotTo(ContainElement("*"))
	}
	ctx := t.Context()
	g.Expect(env.Client.Create(ctx, role)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), role) })
	const user = "system:serviceaccount:apitoken-system:apitoken-validator"
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "apitoken-validator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	g.Expect(env.Client.Create(ctx, binding)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), binding) })
	raw, err = os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "validator_status_policy.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	for doc := range strings.SplitSeq(string(raw), "\n---\n") {
		obj, _, err := testenv.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		g.Expect(err).NotTo(HaveOccurred())
		policy := obj.(client.Object)
		g.Expect(env.Client.Create(ctx, policy)).To(Succeed())
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), policy) })
	}

	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	h := startWith(t, cfg, Options{})
	iss := h.issuer(token.ES256, true)
	m := h.apiToken(iss, tokenSpec{format: tokensv1.FormatOpaque})
	h.g.Eventually(h.authorizeStatus(m.token, "")).WithTimeout(informerEvent).Should(Equal(200))
	h.usage.Flush(ctx)
	g.Expect(h.read(m).Status.LastUsedTime).NotTo(BeNil(), "the validator may write lastUsedTime")

	as, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	g.Expect(err).NotTo(HaveOccurred())
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "token"}, StringData: map[string]string{"token": m.token}}
	g.Expect(env.Client.Create(ctx, secret)).To(Succeed())
	g.Expect(apierrors.IsForbidden(as.Get(ctx, client.ObjectKeyFromObject(secret), &corev1.Secret{}))).To(BeTrue())
	g.Expect(apierrors.IsForbidden(as.List(ctx, &corev1.SecretList{}))).To(BeTrue())
	tok := h.read(m)
	tok.Spec.Role = "admin"
	g.Expect(apierrors.IsForbidden(as.Update(ctx, tok))).To(BeTrue(), "minting-level writes are the manager's")
	g.Expect(apierrors.IsForbidden(as.Delete(ctx, tok))).To(BeTrue())

	// The status beyond lastUsedTime: RBAC allows the patch, the policy refuses it.
	forged := func(change func(*tokensv1.APITokenStatus), opts ...client.SubResourcePatchOption) func() error {
		return func() error {
			tok := h.read(m)
			before := tok.DeepCopy()
			change(&tok.Status)
			return as.Status().Patch(ctx, tok, client.MergeFrom(before), opts...)
		}
	}
	forgeHash := func(s *tokensv1.APITokenStatus) { s.Current.TokenHash = "sha256:" + strings.Repeat("0", 64) }
	// The API server loads a new policy a moment after it is created: probe with
	// dry runs, which go through admission but change nothing, until it refuses.
	g.Eventually(forged(forgeHash, client.DryRunAll)).WithTimeout(30 * time.Second).WithPolling(200 * time.Millisecond).
		Should(MatchError(ContainSubstring("may change only status.lastUsedTime of an APIToken, not status.current")))
	g.Expect(apierrors.IsForbidden(forged(forgeHash)())).To(BeTrue(), "status.current")
	for name, change := range map[string]func(*tokensv1.APITokenStatus){
		"previousTokens": func(s *tokensv1.APITokenStatus) { s.PreviousTokens = append(s.PreviousTokens, *s.Current) },
		"conditions": func(s *tokensv1.APITokenStatus) {
			s.Conditions = append(s.Conditions, metav1.Condition{Type: tokensv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Forged", LastTransitionTime: metav1.Now()})
		},
		"rotations":  func(s *tokensv1.APITokenStatus) { s.Rotations = 42 },
		"secretName": func(s *tokensv1.APITokenStatus) { s.SecretName = "elsewhere" },
	} {
		err := forged(change)()
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "status.%s: %v", name, err)
	}
	// The validator's own write still passes: its next usage report.
	reported := h.read(m).Status.LastUsedTime
	h.clk.Step(2 * time.Minute)
	g.Expect(h.authorize(m.token, "").StatusCode).To(Equal(200))
	h.usage.Flush(ctx)
	g.Expect(h.read(m).Status.LastUsedTime.Time).To(BeTemporally(">", reported.Time), "lastUsedTime is still the validator's to write")
}
