package install

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestChartCRDsAreTheGeneratedOnes: `make manifests` copies config/crd/bases into the
// chart; a CRD edited in one place only would install a different API with each method.
func TestChartCRDsAreTheGeneratedOnes(t *testing.T) {
	g := NewWithT(t)
	generated, err := filepath.Glob(filepath.Join(configDir, "crd", "bases", "*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	inChart, err := filepath.Glob(filepath.Join(chartDir, "crds", "*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(generated).NotTo(BeEmpty())

	names := func(paths []string) []string {
		var out []string
		for _, p := range paths {
			out = append(out, filepath.Base(p))
		}
		return out
	}
	g.Expect(names(inChart)).To(Equal(names(generated)), "run make manifests")
	for _, p := range generated {
		want, err := os.ReadFile(p)
		g.Expect(err).NotTo(HaveOccurred())
		got, err := os.ReadFile(filepath.Join(chartDir, "crds", filepath.Base(p)))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(got)).To(Equal(string(want)), "%s differs from config/crd/bases: run make manifests", filepath.Base(p))
	}
}

// TestChartRBACIsTheGenerated: the chart grants exactly the rules of config/rbac, which
// controller-gen generates from the code's markers.
func TestChartRBACIsTheGenerated(t *testing.T) {
	m := helmTemplate(t, "apitoken-system")
	for _, tt := range []struct{ kind, name, file string }{
		{"ClusterRole", "apitoken-manager", "role.yaml"},
		{"ClusterRole", "apitoken-validator", "validator/role.yaml"},
		{"ClusterRole", "apitoken-webhook-cert", "webhook-cert/role.yaml"},
		{"Role", "apitoken-leader-election", "leader_election_role.yaml"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(m.get(t, tt.kind, tt.name).Object["rules"]).To(Equal(configRules(t, tt.file)))
		})
	}
}

// TestChartInstalls renders the chart with each kind of values and applies every object
// to the API server.
func TestChartInstalls(t *testing.T) {
	ctx := context.Background()
	installThirdPartyCRDs(ctx, t)

	tests := []struct {
		name      string
		namespace string
		set       []string
		check     func(t *testing.T, g *WithT, m manifest, ns string)
	}{{
		name:      "default values: the operator manages its certificates",
		namespace: "apitoken-chart",
		check: func(t *testing.T, g *WithT, m manifest, ns string) {
			expectSelfManagedCerts(ctx, t, g, m, ns)
			g.Expect(m.find("ServiceMonitor", "apitoken-operator")).To(BeNil())
			g.Expect(m.find("HorizontalPodAutoscaler", "apitoken-validator")).To(BeNil())
			g.Expect(m.get(t, "ClusterTokenIssuer", "default").Object["spec"]).To(HaveKeyWithValue("issuer", "https://apitoken-validator."+ns+".svc"))
			g.Expect(m.get(t, "ClusterTokenIssuer", "default").Object["spec"]).NotTo(HaveKey("requireMintPermission"), "opt-in: an upgrade changes nothing")
		},
	}, {
		name:      "the default issuer requires mint permission",
		namespace: "apitoken-chart-mint",
		set:       []string{"defaultIssuer.requireMintPermission=true"},
		check: func(t *testing.T, g *WithT, m manifest, ns string) {
			g.Expect(m.get(t, "ClusterTokenIssuer", "default").Object["spec"]).To(HaveKeyWithValue("requireMintPermission", true))
		},
	}, {
		name:      "cert-manager, ServiceMonitor, alerts, dashboard and autoscaling",
		namespace: "apitoken-chart-all",
		set: []string{"certManager.enabled=true", "metrics.serviceMonitor.enabled=true", "validator.autoscaling.enabled=true",
			"metrics.prometheusRule.enabled=true", "metrics.grafanaDashboard.enabled=true"},
		check: func(t *testing.T, g *WithT, m manifest, ns string) {
			expectCertManagerCerts(ctx, t, g, m, ns)
			g.Expect(m.get(t, "ServiceMonitor", "apitoken-operator").Object["spec"]).To(HaveKey("endpoints"))
			g.Expect(m.get(t, "PrometheusRule", "apitoken-operator").Object["spec"]).To(HaveKey("groups"))
			g.Expect(m.get(t, "ConfigMap", "apitoken-operator-dashboard").GetNamespace()).To(Equal(ns))
			m.get(t, "HorizontalPodAutoscaler", "apitoken-validator")
			// The autoscaler owns the replica count.
			g.Expect(as[appsv1.Deployment](t, m.get(t, "Deployment", "apitoken-validator")).Spec.Replicas).To(BeNil())
		},
	}, {
		name:      "validator with its own TLS Secret",
		namespace: "apitoken-chart-secret",
		set:       []string{"validator.tls.secretName=my-validator-tls"},
		check: func(t *testing.T, g *WithT, m manifest, ns string) {
			g.Expect(validatorTLSSecret(t, m)).To(Equal("my-validator-tls"))
			g.Expect(m.find("Secret", "apitoken-validator-cert")).To(BeNil())
			g.Expect(managerArgs(t, m)).NotTo(ContainElement(HavePrefix("--validator-cert-secret")))
		},
	}, {
		name:      "validator over plain HTTP, asked for explicitly",
		namespace: "apitoken-chart-insecure",
		set:       []string{"validator.tls.insecureHTTP=true"},
		check: func(t *testing.T, g *WithT, m manifest, ns string) {
			v := as[appsv1.Deployment](t, m.get(t, "Deployment", "apitoken-validator"))
			g.Expect(v.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--insecure-http"))
			g.Expect(v.Spec.Template.Spec.Volumes).To(BeEmpty())
		},
	}, {
		name:      "without the exchange",
		namespace: "apitoken-chart-noexchange",
		set:       []string{"exchange.enabled=false"},
		check: func(t *testing.T, g *WithT, m manifest, ns string) {
			for _, o := range m {
				g.Expect(o.GetName()).NotTo(HavePrefix("apitoken-exchange"), key(o))
			}
			g.Expect(managerArgs(t, m)).NotTo(ContainElement(HavePrefix("--exchange-")))
			g.Expect(managerMountedSecrets(t, m)).To(ConsistOf("apitoken-webhook-cert", "apitoken-validator-cert"))
			// The validator does not depend on it.
			m.get(t, "Deployment", "apitoken-validator")
		},
	}, {
		name:      "exchange with its own TLS Secret, credential headers and two issuers",
		namespace: "apitoken-chart-exchange",
		set: []string{
			"exchange.tls.secretName=my-exchange-tls", "exchange.replicas=3", "exchange.issuers={default,acme}",
			"exchange.tokenHeaders={token,x-api-key}", "exchange.tokenIDHeader=x-api-key-id", "exchange.tokenSecretHeader=x-api-secret",
			"exchange.tenantHeader=x-tenant", "exchange.subTenantHeader=x-sub-tenant", "exchange.tenantMismatchStatus=403",
		},
		check: func(t *testing.T, g *WithT, m manifest, ns string) {
			g.Expect(exchangeTLSSecret(t, m)).To(Equal("my-exchange-tls"))
			g.Expect(m.find("Secret", "apitoken-exchange-cert")).To(BeNil())
			g.Expect(managerArgs(t, m)).NotTo(ContainElement(HavePrefix("--exchange-cert-secret")))
			d := as[appsv1.Deployment](t, m.get(t, "Deployment", "apitoken-exchange"))
			g.Expect(d.Spec.Replicas).To(HaveValue(BeEquivalentTo(3)))
			g.Expect(d.Spec.Template.Spec.Containers[0].Args).To(ContainElements(
				"--token-header=token", "--token-header=x-api-key",
				"--token-id-header=x-api-key-id", "--token-secret-header=x-api-secret",
				"--tenant-header=x-tenant", "--sub-tenant-header=x-sub-tenant", "--tenant-mismatch-status=403",
			))
			g.Expect(exchangeKeySecrets(t, m)).To(Equal([]string{"apitoken-issuer-default-keys", "apitoken-issuer-acme-keys"}))
		},
	}, {
		name:      "exchange over plain HTTP, asked for explicitly",
		namespace: "apitoken-chart-exchange-insecure",
		set:       []string{"exchange.tls.insecureHTTP=true"},
		check: func(t *testing.T, g *WithT, m manifest, ns string) {
			d := as[appsv1.Deployment](t, m.get(t, "Deployment", "apitoken-exchange"))
			g.Expect(d.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--insecure-http"))
			g.Expect(d.Spec.Template.Spec.Volumes).To(BeEmpty())
			g.Expect(m.find("Secret", "apitoken-exchange-cert")).To(BeNil())
		},
	}, {
		name:      "validator behind a NetworkPolicy",
		namespace: "apitoken-chart-netpol",
		set:       []string{"validator.networkPolicy.enabled=true", "validator.networkPolicy.apiServerCIDRs={10.0.0.10/32}"},
		check: func(t *testing.T, g *WithT, m manifest, ns string) {
			var np networkingv1.NetworkPolicy
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "apitoken-validator"}, &np)).To(Succeed())
			v := as[appsv1.Deployment](t, m.get(t, "Deployment", "apitoken-validator"))
			g.Expect(np.Spec.PodSelector.MatchLabels).To(Equal(v.Spec.Selector.MatchLabels))
			g.Expect(np.Spec.Ingress).To(HaveLen(2))
			api := np.Spec.Ingress[0]
			g.Expect(api.Ports).To(ConsistOf(HaveField("Port.IntVal", BeEquivalentTo(8443))))
			g.Expect(api.From).To(ConsistOf(
				HaveField("PodSelector.MatchLabels", HaveKeyWithValue("apitoken.dev/validator-client", "true")),
				HaveField("IPBlock.CIDR", "10.0.0.10/32")))
			g.Expect(np.Spec.Ingress[1].From).To(BeEmpty(), "the kubelet's probes reach the metrics port")
			// The defaults every install shares: a public URL, the audit stream on.
			g.Expect(v.Spec.Template.Spec.Containers[0].Args).To(ContainElements(
				"--public-url=https://apitoken-validator."+ns+".svc", "--audit-log=stdout"))
		},
	}, {
		name:      "without the validator and the default issuer",
		namespace: "apitoken-chart-minimal",
		set:       []string{"validator.enabled=false", "defaultIssuer.enabled=false"},
		check: func(t *testing.T, g *WithT, m manifest, ns string) {
			for _, o := range m {
				g.Expect(o.GetName()).NotTo(HavePrefix("apitoken-validator"), key(o))
			}
			g.Expect(m.find("ClusterTokenIssuer", "default")).To(BeNil())
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			m := helmTemplate(t, tt.namespace, tt.set...)
			restrictedNamespace(ctx, t, tt.namespace)
			install(ctx, t, m)
			expectOperatorInstalled(ctx, t, g, m, tt.namespace)
			tt.check(t, g, m, tt.namespace)
		})
	}
}

// expectOperatorInstalled checks what every install must get right, chart or kustomize.
func expectOperatorInstalled(ctx context.Context, t *testing.T, g *WithT, m manifest, ns string) {
	t.Helper()

	// Pod Security admission runs, and admits every pod of the install.
	g.Expect(k8s.Create(ctx, privilegedPod(ns), client.DryRunAll)).To(MatchError(ContainSubstring("violates PodSecurity")))
	expectPodsAdmitted(ctx, t, m)

	// The manager: two replicas under leader election, in the operator's namespace.
	var d appsv1.Deployment
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "apitoken-manager"}, &d)).To(Succeed())
	g.Expect(d.Spec.Replicas).To(HaveValue(BeEquivalentTo(2)))
	c := d.Spec.Template.Spec.Containers[0]
	g.Expect(c.Args).To(ContainElement("--leader-elect"))
	g.Expect(c.Env).To(ContainElement(HaveField("ValueFrom.FieldRef.FieldPath", "metadata.namespace")))
	g.Expect(c.ReadinessProbe).NotTo(BeNil())
	g.Expect(c.LivenessProbe).NotTo(BeNil())
	g.Expect(c.Resources.Requests).NotTo(BeEmpty())
	var pdb policyv1.PodDisruptionBudget
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "apitoken-manager"}, &pdb)).To(Succeed())
	g.Expect(pdb.Spec.MinAvailable.IntValue()).To(Equal(1))

	// The webhook fails closed, within 5s, and calls the manager's Service.
	var vwc admissionv1.ValidatingWebhookConfiguration
	g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "apitoken-validating-webhook"}, &vwc)).To(Succeed())
	g.Expect(vwc.Webhooks).NotTo(BeEmpty())
	for _, wh := range vwc.Webhooks {
		g.Expect(wh.FailurePolicy).To(HaveValue(Equal(admissionv1.Fail)))
		g.Expect(wh.TimeoutSeconds).To(HaveValue(BeEquivalentTo(5)))
		g.Expect(wh.ClientConfig.Service).To(HaveValue(And(
			HaveField("Namespace", ns), HaveField("Name", "apitoken-webhook"), HaveField("Path", HaveValue(Equal("/validate-tokens-apitoken-dev-v1alpha1-apitoken"))))))
	}
	// So does the mutating webhook that records the creator of each APIToken.
	var mwc admissionv1.MutatingWebhookConfiguration
	g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "apitoken-mutating-webhook"}, &mwc)).To(Succeed())
	g.Expect(mwc.Webhooks).To(HaveLen(1))
	for _, wh := range mwc.Webhooks {
		g.Expect(wh.FailurePolicy).To(HaveValue(Equal(admissionv1.Fail)))
		g.Expect(wh.TimeoutSeconds).To(HaveValue(BeEquivalentTo(5)))
		g.Expect(wh.ClientConfig.Service).To(HaveValue(And(
			HaveField("Namespace", ns), HaveField("Name", "apitoken-webhook"), HaveField("Path", HaveValue(Equal("/mutate-tokens-apitoken-dev-v1alpha1-apitoken"))))))
	}
	var svc corev1.Service
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "apitoken-webhook"}, &svc)).To(Succeed())
	g.Expect(svc.Spec.Selector).To(Equal(d.Spec.Selector.MatchLabels))

	// What each ServiceAccount may do, as the API server's authorizer says.
	manager, validator := serviceAccount(ns, "apitoken-manager"), serviceAccount(ns, "apitoken-validator")
	g.Expect(can(ctx, g, manager, authorizationv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: ns})).To(BeTrue())
	g.Expect(can(ctx, g, manager, authorizationv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system"})).To(BeFalse(),
		"the leader-election lease is in the operator's namespace only")
	g.Expect(can(ctx, g, manager, authorizationv1.ResourceAttributes{Verb: "create", Resource: "secrets", Namespace: "some-tenant"})).To(BeTrue())
	g.Expect(can(ctx, g, manager, authorizationv1.ResourceAttributes{Verb: "create", Group: "authorization.k8s.io", Resource: "subjectaccessreviews"})).To(BeTrue(),
		"the webhook asks RBAC who may mint")
	// The minter ClusterRoles grant each role and the roles it includes, once bound.
	for role, grants := range map[string][]string{"viewer": {"viewer"}, "editor": {"editor", "viewer"}, "admin": {"admin", "editor", "viewer"}} {
		cr := as[rbacv1.ClusterRole](t, m.get(t, "ClusterRole", "apitoken-minter-"+role))
		g.Expect(cr.Rules).To(Equal([]rbacv1.PolicyRule{{APIGroups: []string{"tokens.apitoken.dev"}, Resources: []string{"roles"}, Verbs: []string{"mint"}, ResourceNames: grants}}))
		var live rbacv1.ClusterRole
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: cr.Name}, &live)).To(Succeed())
	}
	if m.find("Deployment", "apitoken-exchange") != nil {
		expectExchangeInstalled(ctx, t, g, m, ns)
	}
	if m.find("Deployment", "apitoken-validator") == nil {
		return
	}
	g.Expect(can(ctx, g, validator, authorizationv1.ResourceAttributes{Verb: "watch", Group: "tokens.apitoken.dev", Resource: "apitokens"})).To(BeTrue())
	g.Expect(can(ctx, g, validator, authorizationv1.ResourceAttributes{Verb: "patch", Group: "tokens.apitoken.dev", Resource: "apitokens", Subresource: "status", Namespace: "some-tenant"})).To(BeTrue())
	for _, verb := range []string{"get", "list", "watch"} {
		for _, where := range []string{"", ns} {
			g.Expect(can(ctx, g, validator, authorizationv1.ResourceAttributes{Verb: verb, Resource: "secrets", Namespace: where})).To(BeFalse(),
				"the validator must not %s Secrets (namespace %q)", verb, where)
		}
	}
	g.Expect(validatorRoleGrantsNoSecrets(t, m)).To(Succeed())
}

// validatorRoleGrantsNoSecrets checks the rules themselves too: no rule of the
// validator's ClusterRole names Secrets or a wildcard resource.
func validatorRoleGrantsNoSecrets(t *testing.T, m manifest) error {
	t.Helper()
	role := as[rbacv1.ClusterRole](t, m.get(t, "ClusterRole", "apitoken-validator"))
	for _, rule := range role.Rules {
		if slices.Contains(rule.Resources, "secrets") || slices.Contains(rule.Resources, "*") {
			return fmt.Errorf("the validator's ClusterRole grants %v on %v", rule.Verbs, rule.Resources)
		}
	}
	return nil
}

// expectSelfManagedCerts: the manager issues the certificates and may update only its
// own webhook configuration.
func expectSelfManagedCerts(ctx context.Context, t *testing.T, g *WithT, m manifest, ns string) {
	t.Helper()
	g.Expect(managerArgs(t, m)).To(ContainElements(
		"--webhook-cert-management=self",
		"--webhook-cert-secret=apitoken-webhook-cert",
		"--webhook-configuration=apitoken-validating-webhook",
		"--validator-cert-secret=apitoken-validator-cert",
	))
	m.get(t, "Secret", "apitoken-webhook-cert")
	m.get(t, "Secret", "apitoken-validator-cert")
	g.Expect(validatorTLSSecret(t, m)).To(Equal("apitoken-validator-cert"))
	g.Expect(m.get(t, "ValidatingWebhookConfiguration", "apitoken-validating-webhook").GetAnnotations()).NotTo(HaveKey("cert-manager.io/inject-ca-from"))
	g.Expect(managerArgs(t, m)).To(ContainElements(
		"--exchange-cert-secret=apitoken-exchange-cert",
		"--exchange-service=apitoken-exchange",
		"--exchange-cert-dir=/etc/apitoken/exchange-cert",
	))
	m.get(t, "Secret", "apitoken-exchange-cert")
	g.Expect(exchangeTLSSecret(t, m)).To(Equal("apitoken-exchange-cert"))
	g.Expect(managerMountedSecrets(t, m)).To(ConsistOf("apitoken-webhook-cert", "apitoken-validator-cert", "apitoken-exchange-cert"))

	manager := serviceAccount(ns, "apitoken-manager")
	vwc := authorizationv1.ResourceAttributes{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations"}
	ours, other := vwc, vwc
	ours.Name, other.Name = "apitoken-validating-webhook", "someone-elses-webhook"
	g.Expect(can(ctx, g, manager, ours)).To(BeTrue())
	g.Expect(can(ctx, g, manager, other)).To(BeFalse())
	mwc := authorizationv1.ResourceAttributes{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations"}
	ours, other = mwc, mwc
	ours.Name, other.Name = "apitoken-mutating-webhook", "someone-elses-webhook"
	g.Expect(can(ctx, g, manager, ours)).To(BeTrue())
	g.Expect(can(ctx, g, manager, other)).To(BeFalse())
	g.Expect(managerArgs(t, m)).To(ContainElement("--mutating-webhook-configuration=apitoken-mutating-webhook"))
}

// expectCertManagerCerts: cert-manager issues the certificates and injects the CA; the
// manager may not touch webhook configurations.
func expectCertManagerCerts(ctx context.Context, t *testing.T, g *WithT, m manifest, ns string) {
	t.Helper()
	g.Expect(managerArgs(t, m)).To(ContainElement("--webhook-cert-management=external"))
	g.Expect(managerArgs(t, m)).NotTo(ContainElement(HavePrefix("--validator-cert-secret")))
	g.Expect(m.get(t, "ValidatingWebhookConfiguration", "apitoken-validating-webhook").GetAnnotations()).To(
		HaveKeyWithValue("cert-manager.io/inject-ca-from", ns+"/apitoken-webhook-cert"))
	g.Expect(m.get(t, "MutatingWebhookConfiguration", "apitoken-mutating-webhook").GetAnnotations()).To(
		HaveKeyWithValue("cert-manager.io/inject-ca-from", ns+"/apitoken-webhook-cert"))
	g.Expect(m.get(t, "Certificate", "apitoken-webhook-cert").Object["spec"]).To(HaveKeyWithValue("secretName", "apitoken-webhook-cert"))
	g.Expect(m.get(t, "Certificate", "apitoken-validator-tls").Object["spec"]).To(HaveKeyWithValue("secretName", "apitoken-validator-tls"))
	g.Expect(validatorTLSSecret(t, m)).To(Equal("apitoken-validator-tls"))
	g.Expect(managerArgs(t, m)).NotTo(ContainElement(HavePrefix("--exchange-cert-secret")))
	g.Expect(m.get(t, "Certificate", "apitoken-exchange-tls").Object["spec"]).To(And(
		HaveKeyWithValue("secretName", "apitoken-exchange-tls"),
		HaveKeyWithValue("dnsNames", ContainElement("apitoken-exchange."+ns+".svc"))))
	g.Expect(exchangeTLSSecret(t, m)).To(Equal("apitoken-exchange-tls"))
	g.Expect(m.find("Secret", "apitoken-exchange-cert")).To(BeNil())
	g.Expect(managerMountedSecrets(t, m)).To(ConsistOf("apitoken-webhook-cert"), "cert-manager's Secrets are not the manager's to read")
	g.Expect(m.find("ClusterRoleBinding", "apitoken-webhook-cert")).To(BeNil())
	g.Expect(m.find("Secret", "apitoken-webhook-cert")).To(BeNil())
}

func managerArgs(t *testing.T, m manifest) []string {
	t.Helper()
	return as[appsv1.Deployment](t, m.get(t, "Deployment", "apitoken-manager")).Spec.Template.Spec.Containers[0].Args
}

// validatorTLSSecret is the Secret the validator's certificate is mounted from.
func validatorTLSSecret(t *testing.T, m manifest) string {
	t.Helper()
	return mountedTLSSecret(t, m, "apitoken-validator")
}

// mountedTLSSecret is the Secret a Deployment's "tls" volume mounts.
func mountedTLSSecret(t *testing.T, m manifest, deployment string) string {
	t.Helper()
	d := as[appsv1.Deployment](t, m.get(t, "Deployment", deployment))
	i := slices.IndexFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "tls" })
	if i < 0 || d.Spec.Template.Spec.Volumes[i].Secret == nil {
		t.Fatalf("%s mounts no TLS Secret", deployment)
	}
	return d.Spec.Template.Spec.Volumes[i].Secret.SecretName
}
