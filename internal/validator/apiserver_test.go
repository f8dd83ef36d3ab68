package validator

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// TestKubeAPIServerRBAC runs kube-apiserver with the validator as its webhook token
// authenticator (see TestMain) and binds RBAC by the groups the validator answers: a
// single-tenant token by today's role group, a two-tenant token by the groups that
// name tenant and role together. Each token may do what its groups allow, in each
// tenant's namespace, and nothing else.
func TestKubeAPIServerRBAC(t *testing.T) {
	h := start(t, Options{})
	h.serveAPIServerWebhook()
	ctx := t.Context()
	iss := h.issuer(token.ES256, true)
	multi := h.apiToken(iss, tokenSpec{memberships: twoTenants, audiences: []string{apiServerAudience}})
	single := h.apiToken(iss, tokenSpec{role: "editor", audiences: []string{apiServerAudience}})
	h.waitIndexed(multi)
	h.waitIndexed(single)

	// Namespaces of each tenant and of the single-tenant token; ClusterRoles that read
	// and write ConfigMaps, bound there by the validator's groups.
	suffix := rand.String(6)
	acme, globex, legacy := "acme-"+suffix, "globex-"+suffix, "legacy-"+suffix
	for _, ns := range []string{acme, globex, legacy} {
		h.g.Expect(env.Client.Create(ctx, testenv.Namespace(ns))).To(Succeed())
	}
	writer := clusterRole(t, "configmap-writer-"+suffix, "get", "list", "create")
	reader := clusterRole(t, "configmap-reader-"+suffix, "get", "list")
	bind(t, acme, writer, "apitoken:tenant:acme:role:editor")
	bind(t, globex, writer, "apitoken:tenant:globex:role:editor")
	bind(t, globex, reader, "apitoken:tenant:globex:role:viewer")
	bind(t, legacy, writer, validatorapi.GroupRolePrefix+"editor")

	as := func(tok string) client.Client {
		cfg := rest.AnonymousClientConfig(env.Config)
		cfg.BearerToken = tok
		c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
		h.g.Expect(err).NotTo(HaveOccurred())
		return c
	}
	create := func(c client.Client, ns string) func() error {
		return func() error {
			return c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "cm-"}}, client.DryRunAll)
		}
	}
	list := func(c client.Client, ns string) func() error {
		return func() error { return c.List(ctx, &corev1.ConfigMapList{}, client.InNamespace(ns)) }
	}
	forbidden := func(f func() error) {
		t.Helper()
		err := f()
		h.g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
	}

	t.Run("who the API server says the tokens are", func(t *testing.T) {
		g := NewWithT(t)
		review := &authnv1.SelfSubjectReview{}
		g.Expect(as(multi.token).Create(ctx, review)).To(Succeed())
		g.Expect(review.Status.UserInfo.Username).To(Equal("apitoken:" + h.ns + ":" + multi.obj.Name))
		g.Expect(review.Status.UserInfo.Groups).To(ConsistOf(
			"apitoken:tenant:acme", "apitoken:tenant:acme:role:editor", "apitoken:tenant:acme:role:viewer",
			"apitoken:tenant:globex", "apitoken:tenant:globex:role:viewer", "system:authenticated"))
		review = &authnv1.SelfSubjectReview{}
		g.Expect(as(single.token).Create(ctx, review)).To(Succeed())
		g.Expect(review.Status.UserInfo.Groups).To(ConsistOf("apitoken:tenant:acme", "apitoken:role:editor", "apitoken:role:viewer", "system:authenticated"))
	})

	t.Run("the two-tenant token, each tenant with its role", func(t *testing.T) {
		c := as(multi.token)
		h.g.Eventually(create(c, acme)).Should(Succeed(), "editor in acme")
		h.g.Eventually(list(c, globex)).Should(Succeed(), "viewer in globex")
		forbidden(create(c, globex)) // only viewer there
		forbidden(list(c, legacy))   // no role group without its tenant
	})

	t.Run("the single-tenant token, by today's groups", func(t *testing.T) {
		c := as(single.token)
		h.g.Eventually(create(c, legacy)).Should(Succeed())
		forbidden(create(c, acme))
		forbidden(list(c, globex))
	})

	t.Run("a refused token is not authenticated", func(t *testing.T) {
		g := NewWithT(t)
		h.updateSpec(multi, func(s *tokensv1.APITokenSpec) { s.Revoked = true })
		g.Eventually(h.reason(multi.token)).WithTimeout(informerEvent).Should(Equal(validatorapi.ReasonRevoked))
		// kube-apiserver remembers a successful authentication for 10 seconds of its
		// own, whatever --authentication-token-webhook-cache-ttl says.
		g.Eventually(list(as(multi.token), globex)).WithTimeout(10*time.Second + informerEvent).WithPolling(500 * time.Millisecond).
			Should(Satisfy(apierrors.IsUnauthorized))
	})
}

func clusterRole(t *testing.T, name string, verbs ...string) *rbacv1.ClusterRole {
	t.Helper()
	r := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: verbs}},
	}
	NewWithT(t).Expect(env.Client.Create(t.Context(), r)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), r) })
	return r
}

// bind grants role in namespace to group.
func bind(t *testing.T, namespace string, role *rbacv1.ClusterRole, group string) {
	t.Helper()
	b := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, GenerateName: "apitoken-"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: group}},
	}
	NewWithT(t).Expect(env.Client.Create(t.Context(), b)).To(Succeed())
}
