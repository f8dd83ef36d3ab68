package admission_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

// gitops is the ServiceAccount of a GitOps controller (Argo CD's), which applies the
// APITokens of every namespace from Git.
const gitops = "system:serviceaccount:argocd:argocd-application-controller"

// impersonate returns a client acting as user, the way `kubectl --as` does.
func impersonate(t *testing.T, user string) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	return c
}

// installMinterRoles creates the ClusterRoles the install ships, from config/rbac.
func installMinterRoles(t *testing.T) {
	t.Helper()
	g := NewWithT(t)
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "minter_roles.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	for doc := range strings.SplitSeq(string(raw), "\n---\n") {
		obj, _, err := testenv.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		g.Expect(err).NotTo(HaveOccurred())
		role := obj.(*rbacv1.ClusterRole)
		g.Expect(env.Client.Create(t.Context(), role)).To(Succeed())
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), role) })
	}
}

// grant binds ClusterRole role to user, in namespace or, when it is "", everywhere.
func grant(t *testing.T, namespace, role, user string) {
	t.Helper()
	subject := rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}
	if sa, ok := strings.CutPrefix(user, "system:serviceaccount:"); ok {
		ns, name, _ := strings.Cut(sa, ":")
		subject = rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}
	}
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role}
	var b client.Object = &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, GenerateName: "grant-"}, RoleRef: ref, Subjects: []rbacv1.Subject{subject}}
	if namespace == "" {
		b = &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{GenerateName: "grant-"}, RoleRef: ref, Subjects: []rbacv1.Subject{subject}}
	}
	NewWithT(t).Expect(env.Client.Create(t.Context(), b)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), b) })
}

// clusterRole creates a ClusterRole of rules for the test.
func clusterRole(t *testing.T, name string, rules ...rbacv1.PolicyRule) string {
	t.Helper()
	r := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name + "-" + rand.String(6)}, Rules: rules}
	NewWithT(t).Expect(env.Client.Create(t.Context(), r)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), r) })
	return r.Name
}

// TestMintPermission: an issuer with requireMintPermission lets a user create or change
// an APIToken only with the roles RBAC lets them mint, and name only the workloads
// RBAC lets them restart; the refusal says who, what and which rule would allow it.
// Each user here may write APITokens in the namespace; only the minter roles differ.
func TestMintPermission(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	ns := "mint-" + rand.String(6)
	g.Expect(env.Client.Create(ctx, testenv.Namespace(ns))).To(Succeed())
	installMinterRoles(t)
	author := clusterRole(t, "apitoken-author", rbacv1.PolicyRule{
		APIGroups: []string{tokensv1.GroupVersion.Group}, Resources: []string{"apitokens"}, Verbs: []string{"get", "list", "create", "update", "patch"},
	})
	for _, user := range []string{"alice", "bob"} {
		grant(t, ns, author, user)
	}
	grant(t, ns, "apitoken-minter-viewer", "alice")
	// The GitOps controller applies tokens everywhere, of any default role.
	grant(t, "", author, gitops)
	grant(t, "", "apitoken-minter-admin", gitops)

	strict, lenient := "strict-"+rand.String(6), "lenient-"+rand.String(6)
	for name, require := range map[string]bool{strict: true, lenient: false} {
		iss := &tokensv1.ClusterTokenIssuer{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: tokensv1.ClusterTokenIssuerSpec{
				Issuer: "https://tokens.example", RequireMintPermission: require,
				Tenants: []tokensv1.Tenant{{Name: ns, Namespaces: []string{ns}}, {Name: "globex", Namespaces: []string{ns}}},
			},
		}
		g.Expect(env.Client.Create(ctx, iss)).To(Succeed())
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), iss) })
	}
	token := func(issuer, role string) *tokensv1.APIToken {
		return &tokensv1.APIToken{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "t-", Namespace: ns},
			Spec: tokensv1.APITokenSpec{IssuerRef: tokensv1.IssuerReference{Name: issuer}, Tenant: ns, Role: role,
				Lifetime: metav1.Duration{Duration: time.Hour}},
		}
	}
	alice, bob := impersonate(t, "alice"), impersonate(t, "bob")

	t.Run("a viewer minter creates a viewer token", func(t *testing.T) {
		g := NewWithT(t)
		tok := token(strict, "viewer")
		g.Expect(alice.Create(ctx, tok)).To(Succeed())
		g.Expect(tok.Annotations).To(HaveKeyWithValue(tokensv1.CreatedByAnnotation, "alice"))
	})

	t.Run("and is refused an admin one, with the rule that would allow it", func(t *testing.T) {
		err := alice.Create(ctx, token(strict, "admin"))
		NewWithT(t).Expect(err).To(MatchError(And(
			ContainSubstring(`vapitoken.apitoken.dev`),
			ContainSubstring(`spec.role: user "alice" may not mint role "admin" in namespace "`+ns+`"`),
			ContainSubstring(`ClusterTokenIssuer "`+strict+`" requires mint permission`),
			ContainSubstring(`RBAC verb "mint" on resource "roles" of API group "tokens.apitoken.dev" with resourceName "admin"`),
			ContainSubstring(`ClusterRole apitoken-minter-admin`),
		)))
	})

	t.Run("every membership's role is asked", func(t *testing.T) {
		tok := token(strict, "")
		tok.Spec.Tenant = ""
		tok.Spec.Memberships = []tokensv1.Membership{{Tenant: ns, Role: "viewer"}, {Tenant: "globex", Role: "editor"}}
		NewWithT(t).Expect(alice.Create(ctx, tok)).To(MatchError(ContainSubstring(`spec.memberships[1].role: user "alice" may not mint role "editor"`)))
		tok.Spec.Memberships[1].Role = "viewer"
		NewWithT(t).Expect(alice.Create(ctx, tok)).To(Succeed())
	})

	t.Run("changing the spec is minting", func(t *testing.T) {
		g := NewWithT(t)
		tok := token(strict, "viewer")
		g.Expect(alice.Create(ctx, tok)).To(Succeed())
		tok.Spec.Role = "editor"
		g.Expect(alice.Update(ctx, tok)).To(MatchError(ContainSubstring(`user "alice" may not mint role "editor"`)))

		g.Expect(alice.Get(ctx, client.ObjectKeyFromObject(tok), tok)).To(Succeed())
		tok.Spec.Description = "bob's now"
		g.Expect(bob.Update(ctx, tok)).To(MatchError(ContainSubstring(`user "bob" may not mint role "viewer"`)),
			"whoever changes a token must be allowed to mint it")

		// Metadata mints nothing new: a finalizer (the controller's) or a label.
		g.Expect(alice.Get(ctx, client.ObjectKeyFromObject(tok), tok)).To(Succeed())
		tok.Labels = map[string]string{"team": "ci"}
		tok.Finalizers = append(tok.Finalizers, "example.com/hold")
		g.Expect(bob.Update(ctx, tok)).To(Succeed())
		g.Expect(tok.Annotations).To(HaveKeyWithValue(tokensv1.CreatedByAnnotation, "alice"), "the creator stays who created it")

		// Revoking is always allowed.
		tok.Spec.Revoked, tok.Finalizers = true, nil
		g.Expect(bob.Update(ctx, tok)).To(Succeed())
	})

	t.Run("rolloutRestartTargets need permission to patch the workload", func(t *testing.T) {
		g := NewWithT(t)
		tok := token(strict, "viewer")
		tok.Spec.RolloutRestartTargets = []tokensv1.RolloutRestartTarget{{Kind: "Deployment", Name: "ci-runner"}}
		g.Expect(alice.Create(ctx, tok)).To(MatchError(And(
			ContainSubstring(`spec.rolloutRestartTargets[0]: user "alice" may not patch Deployment "ci-runner" in namespace "`+ns+`"`),
			ContainSubstring(`RBAC verb "patch" on resource "deployments" of API group "apps" with resourceName "ci-runner"`),
		)))
		grant(t, ns, clusterRole(t, "restart-ci-runner", rbacv1.PolicyRule{
			APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"patch"}, ResourceNames: []string{"ci-runner"},
		}), "alice")
		g.Eventually(func() error { return alice.Create(ctx, tok.DeepCopy()) }).Should(Succeed())
	})

	t.Run("a GitOps ServiceAccount granted the ClusterRole applies tokens", func(t *testing.T) {
		g := NewWithT(t)
		sa := impersonate(t, gitops)
		manifest := func(role string) *unstructured.Unstructured {
			return &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": tokensv1.GroupVersion.String(), "kind": "APIToken",
				"metadata": map[string]any{"name": "deploy-bot", "namespace": ns},
				"spec":     map[string]any{"issuerRef": map[string]any{"name": strict}, "tenant": ns, "role": role, "lifetime": "1h"},
			}}
		}
		// Server-side apply, as Argo CD and Flux do.
		apply := func(role string) error {
			return sa.Apply(ctx, client.ApplyConfigurationFromUnstructured(manifest(role)), client.FieldOwner("argocd-controller"), client.ForceOwnership)
		}
		g.Expect(apply("admin")).To(Succeed())
		got := &tokensv1.APIToken{}
		g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "deploy-bot"}, got)).To(Succeed())
		g.Expect(got.Annotations).To(HaveKeyWithValue(tokensv1.CreatedByAnnotation, gitops))
		g.Expect(apply("editor")).To(Succeed())
		g.Expect(impersonate(t, "bob").Create(ctx, token(strict, "viewer"))).To(MatchError(ContainSubstring(`user "bob" may not mint role "viewer"`)),
			"the grant is the ServiceAccount's alone")
	})

	t.Run("without the issuer's opt-in nothing changes", func(t *testing.T) {
		g := NewWithT(t)
		tok := token(lenient, "admin")
		tok.Spec.RolloutRestartTargets = []tokensv1.RolloutRestartTarget{{Kind: "StatefulSet", Name: "db"}}
		g.Expect(bob.Create(ctx, tok)).To(Succeed(), "bob may mint nothing, and needs nothing here")
		tok.Spec.Role = "editor"
		g.Expect(bob.Update(ctx, tok)).To(Succeed())
	})
}

// TestCreatorAnnotation: the creator is whoever created the APIToken, whatever the
// manifest says, and no update changes it.
func TestCreatorAnnotation(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	ns := "creator-" + rand.String(6)
	g.Expect(env.Client.Create(ctx, testenv.Namespace(ns))).To(Succeed())
	author := clusterRole(t, "apitoken-author", rbacv1.PolicyRule{
		APIGroups: []string{tokensv1.GroupVersion.Group}, Resources: []string{"apitokens"}, Verbs: []string{"get", "create", "update", "patch"},
	})
	grant(t, ns, author, "alice")
	grant(t, ns, author, "mallory")
	iss := &tokensv1.ClusterTokenIssuer{ObjectMeta: metav1.ObjectMeta{Name: "creator-" + rand.String(6)}, Spec: tokensv1.ClusterTokenIssuerSpec{Issuer: "https://tokens.example"}}
	g.Expect(env.Client.Create(ctx, iss)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), iss) })
	alice, mallory := impersonate(t, "alice"), impersonate(t, "mallory")

	tok := &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Name: "ci", Namespace: ns, Annotations: map[string]string{tokensv1.CreatedByAnnotation: "mallory", "note": "kept"}},
		Spec:       tokensv1.APITokenSpec{IssuerRef: tokensv1.IssuerReference{Name: iss.Name}, Tenant: ns, Role: "viewer"},
	}
	g.Expect(alice.Create(ctx, tok)).To(Succeed())
	g.Expect(tok.Annotations).To(Equal(map[string]string{tokensv1.CreatedByAnnotation: "alice", "note": "kept"}), "a forged creator is overwritten")

	tok.Annotations[tokensv1.CreatedByAnnotation] = "mallory"
	g.Expect(mallory.Update(ctx, tok)).To(Succeed())
	g.Expect(tok.Annotations).To(HaveKeyWithValue(tokensv1.CreatedByAnnotation, "alice"), "an update cannot change it")
	delete(tok.Annotations, tokensv1.CreatedByAnnotation)
	g.Expect(mallory.Update(ctx, tok)).To(Succeed())
	g.Expect(tok.Annotations).To(HaveKeyWithValue(tokensv1.CreatedByAnnotation, "alice"), "nor remove it")

	// Without annotations at all, the webhook adds the map.
	bare := &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Name: "bare", Namespace: ns},
		Spec:       tokensv1.APITokenSpec{IssuerRef: tokensv1.IssuerReference{Name: iss.Name}, Tenant: ns, Role: "viewer"},
	}
	g.Expect(mallory.Create(ctx, bare)).To(Succeed())
	g.Expect(bare.Annotations).To(Equal(map[string]string{tokensv1.CreatedByAnnotation: "mallory"}))
}

// TestWebhookChecksEachMembership: the issuer's policy is asked for each membership of
// a multi-tenant token, and a refusal names the membership's field.
func TestWebhookChecksEachMembership(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	ns := "members-" + rand.String(6)
	g.Expect(env.Client.Create(ctx, testenv.Namespace(ns))).To(Succeed())
	iss := &tokensv1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "members-" + rand.String(6)},
		Spec: tokensv1.ClusterTokenIssuerSpec{Issuer: "https://tokens.example",
			Tenants: []tokensv1.Tenant{{Name: "acme", Namespaces: []string{ns}, MaxRole: "editor"}, {Name: "globex", Namespaces: []string{ns}}}},
	}
	g.Expect(env.Client.Create(ctx, iss)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), iss) })
	token := func(ms ...tokensv1.Membership) *tokensv1.APIToken {
		return &tokensv1.APIToken{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "t-", Namespace: ns},
			Spec:       tokensv1.APITokenSpec{IssuerRef: tokensv1.IssuerReference{Name: iss.Name}, Memberships: ms, Lifetime: metav1.Duration{Duration: time.Hour}},
		}
	}
	for _, tc := range []struct {
		name string
		ms   []tokensv1.Membership
		want string // "" means accepted
	}{
		{"every membership allowed", []tokensv1.Membership{{Tenant: "acme", Role: "editor"}, {Tenant: "globex", Role: "admin"}}, ""},
		{"a role above its tenant's maxRole", []tokensv1.Membership{{Tenant: "acme", Role: "admin"}, {Tenant: "globex", Role: "admin"}},
			`spec.memberships[0].role: role "admin" is above tenant "acme"'s maxRole "editor"`},
		{"a tenant not listed", []tokensv1.Membership{{Tenant: "acme", Role: "viewer"}, {Tenant: "initech", Role: "viewer"}},
			`spec.memberships[1].tenant: tenant "initech" is not in the issuer's tenants list`},
		{"an unknown role", []tokensv1.Membership{{Tenant: "globex", Role: "root"}},
			`spec.memberships[0].role: role "root" is not one of the issuer's roles`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := env.Client.Create(ctx, token(tc.ms...))
			if tc.want == "" {
				NewWithT(t).Expect(err).NotTo(HaveOccurred())
				return
			}
			NewWithT(t).Expect(err).To(MatchError(And(ContainSubstring("vapitoken.apitoken.dev"), ContainSubstring(tc.want))))
		})
	}
}
