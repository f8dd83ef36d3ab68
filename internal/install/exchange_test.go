package install

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/apitoken-operator/apitoken-operator/internal/keystore"
)

// expectExchangeInstalled checks the token exchange of an install, chart or kustomize:
// its Deployment, Service and PodDisruptionBudget, and what its ServiceAccount may do.
func expectExchangeInstalled(ctx context.Context, t *testing.T, g *WithT, m manifest, ns string) {
	t.Helper()
	var d appsv1.Deployment
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "apitoken-exchange"}, &d)).To(Succeed())
	g.Expect(d.Spec.Template.Spec.ServiceAccountName).To(Equal("apitoken-exchange"))
	c := d.Spec.Template.Spec.Containers[0]
	g.Expect(c.Command).To(Equal([]string{"/usr/local/bin/exchange"}))
	// The key Secrets are read from the pod's own namespace, the operator's.
	g.Expect(c.Args).To(ContainElements("--listen-address=:8443", "--metrics-bind-address=:8081", "--namespace=$(POD_NAMESPACE)"))
	g.Expect(c.Env).To(ContainElement(And(HaveField("Name", "POD_NAMESPACE"), HaveField("ValueFrom.FieldRef.FieldPath", "metadata.namespace"))))
	// Probed on the plain-HTTP metrics port, which serves /healthz and /readyz.
	g.Expect(c.Ports).To(ContainElement(And(HaveField("Name", "metrics"), HaveField("ContainerPort", BeEquivalentTo(8081)))))
	g.Expect(c.LivenessProbe).To(HaveValue(HaveField("HTTPGet", HaveValue(And(HaveField("Path", "/healthz"), HaveField("Port", intstr.FromString("metrics")))))))
	g.Expect(c.ReadinessProbe).To(HaveValue(HaveField("HTTPGet", HaveValue(And(HaveField("Path", "/readyz"), HaveField("Port", intstr.FromString("metrics")))))))
	g.Expect(c.Resources.Requests).NotTo(BeEmpty())
	g.Expect(c.SecurityContext).To(HaveValue(HaveField("ReadOnlyRootFilesystem", HaveValue(BeTrue()))))

	var svc corev1.Service
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "apitoken-exchange"}, &svc)).To(Succeed())
	g.Expect(svc.Spec.Selector).To(Equal(d.Spec.Selector.MatchLabels))
	g.Expect(svc.Spec.Ports).To(ContainElement(And(HaveField("Port", BeEquivalentTo(443)), HaveField("TargetPort", intstr.FromInt32(8443)))))
	g.Expect(svc.Labels).To(HaveKeyWithValue("apitoken.dev/metrics", "true"), "scraped by the ServiceMonitor")
	var pdb policyv1.PodDisruptionBudget
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "apitoken-exchange"}, &pdb)).To(Succeed())
	g.Expect(pdb.Spec.MinAvailable.IntValue()).To(Equal(1))
	g.Expect(pdb.Spec.Selector.MatchLabels).To(Equal(d.Spec.Selector.MatchLabels))

	exchange := serviceAccount(ns, "apitoken-exchange")
	for _, verb := range []string{"get", "list", "watch"} {
		g.Expect(can(ctx, g, exchange, authorizationv1.ResourceAttributes{Verb: verb, Group: "tokens.apitoken.dev", Resource: "apitokens"})).To(BeTrue())
		g.Expect(can(ctx, g, exchange, authorizationv1.ResourceAttributes{Verb: verb, Group: "tokens.apitoken.dev", Resource: "clustertokenissuers"})).To(BeTrue())
	}
	for _, name := range exchangeKeySecrets(t, m) {
		g.Expect(can(ctx, g, exchange, authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: ns, Name: name})).To(BeTrue(), name)
		g.Expect(can(ctx, g, exchange, authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: "some-tenant", Name: name})).To(BeFalse(), name)
	}
	g.Expect(can(ctx, g, exchange, authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: ns, Name: "apitoken-webhook-cert"})).To(BeFalse())
	g.Expect(can(ctx, g, exchange, authorizationv1.ResourceAttributes{Verb: "list", Resource: "secrets", Namespace: ns})).To(BeFalse())
	g.Expect(can(ctx, g, exchange, authorizationv1.ResourceAttributes{Verb: "patch", Group: "tokens.apitoken.dev", Resource: "apitokens", Subresource: "status", Namespace: "some-tenant"})).To(BeFalse())
	expectExchangeRolesReadOnly(t, g, m)
}

// expectExchangeRolesReadOnly checks the exchange's rules themselves: its ClusterRole
// only reads, and names no Secret, subresource or wildcard; its Role only gets Secrets
// it names.
func expectExchangeRolesReadOnly(t *testing.T, g *WithT, m manifest) {
	t.Helper()
	cr := as[rbacv1.ClusterRole](t, m.get(t, "ClusterRole", "apitoken-exchange"))
	g.Expect(cr.Rules).NotTo(BeEmpty())
	for _, rule := range cr.Rules {
		g.Expect(rule.Verbs).To(HaveEach(BeElementOf("get", "list", "watch")), "ClusterRole rule %v", rule)
		g.Expect(rule.Resources).To(HaveEach(BeElementOf("apitokens", "clustertokenissuers")), "ClusterRole rule %v", rule)
	}
	role := as[rbacv1.Role](t, m.get(t, "Role", "apitoken-exchange"))
	g.Expect(role.Rules).To(HaveLen(1))
	g.Expect(role.Rules[0].APIGroups).To(Equal([]string{""}))
	g.Expect(role.Rules[0].Resources).To(Equal([]string{"secrets"}))
	g.Expect(role.Rules[0].Verbs).To(Equal([]string{"get"}))
	g.Expect(role.Rules[0].ResourceNames).NotTo(BeEmpty(), "a rule without resourceNames grants every Secret")
}

// exchangeKeySecrets are the Secrets the exchange's Role lets it get.
func exchangeKeySecrets(t *testing.T, m manifest) []string {
	t.Helper()
	role := as[rbacv1.Role](t, m.get(t, "Role", "apitoken-exchange"))
	var out []string
	for _, r := range role.Rules {
		out = append(out, r.ResourceNames...)
	}
	return out
}

// exchangeTLSSecret is the Secret the exchange's certificate is mounted from.
func exchangeTLSSecret(t *testing.T, m manifest) string {
	t.Helper()
	return mountedTLSSecret(t, m, "apitoken-exchange")
}

// managerMountedSecrets are the Secrets the manager's pod mounts.
func managerMountedSecrets(t *testing.T, m manifest) []string {
	t.Helper()
	var out []string
	for _, v := range as[appsv1.Deployment](t, m.get(t, "Deployment", "apitoken-manager")).Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			out = append(out, v.Secret.SecretName)
		}
	}
	return out
}

// generatedRules reads the rules of the Role or ClusterRole of a file of config/rbac
// that holds several documents, as controller-gen writes for markers with a namespace.
func generatedRules(t *testing.T, file, kind string) any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(configDir, "rbac", file))
	if err != nil {
		t.Fatal(err)
	}
	for doc := range strings.SplitSeq(string(data), "\n---\n") {
		var role map[string]any
		if err := yaml.Unmarshal([]byte(doc), &role); err != nil {
			t.Fatal(err)
		}
		if role["kind"] == kind {
			return role["rules"]
		}
	}
	t.Fatalf("config/rbac/%s holds no %s", file, kind)
	return nil
}

// TestChartExchangeRBACIsTheGenerated: with its default values, the chart grants the
// exchange exactly the rules controller-gen generated from internal/exchange's markers,
// the Role included (its resourceNames come from exchange.issuers, [default]).
func TestChartExchangeRBACIsTheGenerated(t *testing.T) {
	g := NewWithT(t)
	m := helmTemplate(t, "apitoken-system")
	g.Expect(m.get(t, "ClusterRole", "apitoken-exchange").Object["rules"]).To(Equal(generatedRules(t, "exchange/role.yaml", "ClusterRole")))
	g.Expect(m.get(t, "Role", "apitoken-exchange").Object["rules"]).To(Equal(generatedRules(t, "exchange/role.yaml", "Role")))
	g.Expect(exchangeKeySecrets(t, m)).To(Equal([]string{keystore.SecretName("default")}))
}

// TestChartExchangeKeySecretNames: the chart names each issuer's key Secret as the
// keystore does, a name too long for the plain form included.
func TestChartExchangeKeySecretNames(t *testing.T) {
	g := NewWithT(t)
	long := strings.Repeat("a", 120) + "." + strings.Repeat("b", 120)
	issuers := []string{"default", "acme", strings.Repeat("x", 232), long}
	m := helmTemplate(t, "apitoken-system", "exchange.issuers={"+strings.Join(issuers, ",")+"}")
	var want []string
	for _, name := range issuers {
		want = append(want, keystore.SecretName(name))
	}
	g.Expect(exchangeKeySecrets(t, m)).To(Equal(want))
	g.Expect(want[3]).To(HaveLen(253), "the long name is hashed")
}

// TestChartExchangeRefusesUnsafeValues: values that would grant too much, or start an
// exchange that refuses its flags, fail at render time.
func TestChartExchangeRefusesUnsafeValues(t *testing.T) {
	for _, tt := range []struct {
		name, set, want string
	}{
		{"no issuers: a Role without resourceNames would grant every Secret", "exchange.issuers=null", "exchange.issuers is empty"},
		{"an ID header without its secret header", "exchange.tokenIDHeader=x-api-key", "go together"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			var stderr bytes.Buffer
			cmd := exec.Command(tool(t, "HELM"), "template", "apitoken", chartDir, "--namespace", "apitoken-system", "--set", tt.set)
			cmd.Stderr = &stderr
			g.Expect(cmd.Run()).To(HaveOccurred())
			g.Expect(stderr.String()).To(ContainSubstring(tt.want))
		})
	}
}
