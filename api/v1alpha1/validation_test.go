package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env, nil) }

func decode(t *testing.T, manifest string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(manifest), &u.Object); err != nil {
		t.Fatalf("bad test manifest: %v", err)
	}
	return u
}

func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	err := env.Client.Create(context.Background(), testenv.Namespace(name))
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// Every sample in config/samples is accepted by the API server as written.
func TestSamplesAreAccepted(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "samples", "tokens_*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			u := decode(t, string(raw))
			if ns := u.GetNamespace(); ns != "" {
				ensureNamespace(t, ns)
			}
			if err := env.Client.Create(context.Background(), u, client.DryRunAll, client.FieldValidation("Strict")); err != nil {
				t.Fatalf("sample refused: %v", err)
			}
		})
	}
}

// Defaults are applied by the API server, so a minimal manifest reads back complete.
func TestDefaults(t *testing.T) {
	ensureNamespace(t, "defaults")
	tok := decode(t, `
apiVersion: tokens.apitoken.dev/v1alpha1
kind: APIToken
metadata: {name: minimal, namespace: defaults}
spec: {tenant: defaults, role: viewer}`)
	if err := env.Client.Create(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"spec.issuerRef.name": "default",
		"spec.lifetime":       "720h",
	} {
		got, _, _ := unstructured.NestedString(tok.Object, strings.Split(path, ".")...)
		if got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}

	iss := decode(t, `
apiVersion: tokens.apitoken.dev/v1alpha1
kind: ClusterTokenIssuer
metadata: {name: minimal}
spec: {issuer: "https://issuer.example"}`)
	if err := env.Client.Create(context.Background(), iss); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"spec.signing.algorithm":           "ES256",
		"spec.signing.keyRotationInterval": "2160h",
		"spec.signing.publishBefore":       "5m",
		"spec.defaultFormat":               "JWT",
		"spec.opaquePrefix":                "apt",
		"spec.maxLifetime":                 "8760h",
	} {
		got, _, _ := unstructured.NestedString(iss.Object, strings.Split(path, ".")...)
		if got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	withExchange := decode(t, `
apiVersion: tokens.apitoken.dev/v1alpha1
kind: ClusterTokenIssuer
metadata: {name: minimal-exchange}
spec: {issuer: "https://issuer.example", exchange: {enabled: true}}`)
	if err := env.Client.Create(context.Background(), withExchange, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]any{
		"spec.exchange.defaultLifetime": "600s",
		"spec.exchange.maxLifetime":     "24h",
		"spec.exchange.ratePerMinute":   int64(60),
		"spec.exchange.maxDepth":        int64(4),
	} {
		got, _, _ := unstructured.NestedFieldNoCopy(withExchange.Object, strings.Split(path, ".")...)
		if got != want {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
	roles, _, _ := unstructured.NestedSlice(iss.Object, "spec", "roles")
	if len(roles) != 3 {
		t.Errorf("default roles = %v, want viewer, editor, admin", roles)
	}

	// An exchange policy that only enables exchange: every other field is defaulted
	// or absent, and the CEL rules must not stumble on the absent ones.
	exch := decode(t, `
apiVersion: tokens.apitoken.dev/v1alpha1
kind: ClusterTokenIssuer
metadata: {name: minimal-exchange}
spec: {issuer: "https://issuer.example", exchange: {enabled: true}}`)
	if err := env.Client.Create(context.Background(), exch); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]any{
		"spec.exchange.defaultLifetime": "600s",
		"spec.exchange.maxLifetime":     "24h",
		"spec.exchange.ratePerMinute":   int64(60),
		"spec.exchange.maxDepth":        int64(4),
	} {
		got, _, _ := unstructured.NestedFieldNoCopy(exch.Object, strings.Split(path, ".")...)
		if got != want {
			t.Errorf("%s = %v (%T), want %v", path, got, got, want)
		}
	}
}

// Each bad manifest is refused at apply time with a message that names the offending field.
func TestBadManifestsAreRefused(t *testing.T) {
	ensureNamespace(t, "acme")
	const token = `
apiVersion: tokens.apitoken.dev/v1alpha1
kind: APIToken
metadata: {name: bad, namespace: acme}
spec:
`
	const issuer = `
apiVersion: tokens.apitoken.dev/v1alpha1
kind: ClusterTokenIssuer
metadata: {name: bad}
spec:
`
	tooManyScopes := "  tenant: acme\n  role: viewer\n  scopes: ["
	for i := range 33 {
		if i > 0 {
			tooManyScopes += ", "
		}
		tooManyScopes += fmt.Sprintf("s%d", i)
	}
	tooManyScopes += "]\n"
	tooManyMemberships := "  memberships:\n"
	for i := range 33 {
		tooManyMemberships += fmt.Sprintf("  - {tenant: t%d, role: viewer}\n", i)
	}

	for _, tc := range []struct {
		name     string
		manifest string
		// every string must appear in the API server's message
		want []string
	}{
		{"missing tenant", token + "  role: viewer\n", []string{"spec.tenant", "Required value"}},
		{"missing role", token + "  tenant: acme\n", []string{"spec.role", "Required value"}},
		{"tenant not a DNS label", token + "  tenant: Acme_Corp\n  role: viewer\n", []string{"spec.tenant"}},
		{"role not a DNS label", token + "  tenant: acme\n  role: 'admin!'\n", []string{"spec.role"}},
		{"lifetime 30s", token + "  tenant: acme\n  role: viewer\n  lifetime: 30s\n", []string{"spec.lifetime", "lifetime must be at least 1m"}},
		{"lifetime not a duration", token + "  tenant: acme\n  role: viewer\n  lifetime: a month\n", []string{"spec.lifetime"}},
		{"renewBefore longer than lifetime", token + "  tenant: acme\n  role: viewer\n  lifetime: 1h\n  rotation: {renewBefore: 2h}\n", []string{"spec.rotation.renewBefore", "renewBefore must be shorter than lifetime"}},
		{"renewBefore equal to lifetime", token + "  tenant: acme\n  role: viewer\n  lifetime: 1h\n  rotation: {renewBefore: 60m}\n", []string{"spec.rotation.renewBefore"}},
		{"gracePeriod longer than lifetime", token + "  tenant: acme\n  role: viewer\n  lifetime: 1h\n  rotation: {gracePeriod: 2h}\n", []string{"spec.rotation.gracePeriod", "gracePeriod may not be longer than lifetime"}},
		{"unknown rotation policy", token + "  tenant: acme\n  role: viewer\n  rotation: {policy: Sometimes}\n", []string{"spec.rotation.policy", "Unsupported value"}},
		{"unknown format", token + "  tenant: acme\n  role: viewer\n  format: PASETO\n", []string{"spec.format", "Unsupported value"}},
		{"too many scopes", token + tooManyScopes, []string{"spec.scopes", "must have at most 32 items"}},
		{"scope with a space", token + "  tenant: acme\n  role: viewer\n  scopes: ['read all']\n", []string{"spec.scopes[0]"}},
		{"unknown deletion policy", token + "  tenant: acme\n  role: viewer\n  secret: {deletionPolicy: Shred}\n", []string{"spec.secret.deletionPolicy"}},
		{"reserved secret label", token + "  tenant: acme\n  role: viewer\n  secret: {template: {labels: {apitoken.dev/managed-by: me}}}\n", []string{"spec.secret.template.labels", "reserved"}},
		{"unknown restart kind", token + "  tenant: acme\n  role: viewer\n  rolloutRestartTargets: [{kind: Pod, name: x}]\n", []string{"spec.rolloutRestartTargets[0].kind"}},
		{"unknown field", token + "  tenant: acme\n  role: viewer\n  lifetim: 1h\n", []string{"spec.lifetim", "unknown field"}},
		{"memberships and tenant", token + "  tenant: acme\n  memberships: [{tenant: acme, role: viewer}]\n", []string{"spec.memberships", "memberships replaces tenant, subTenant and role"}},
		{"memberships and role", token + "  role: viewer\n  memberships: [{tenant: acme, role: viewer}]\n", []string{"spec.memberships", "set either memberships, or tenant and role"}},
		{"memberships and subTenant", token + "  subTenant: eu\n  memberships: [{tenant: acme, role: viewer}]\n", []string{"spec.memberships", "memberships replaces tenant, subTenant and role"}},
		{"neither tenant nor memberships", token + "  scopes: [a]\n", []string{"spec.tenant", "Required value", "tenant is required, unless memberships is set", "spec.role", "role is required, unless memberships is set"}},
		{"empty memberships", token + "  memberships: []\n", []string{"spec.memberships", "at least 1 item"}},
		{"tenant twice", token + "  memberships: [{tenant: acme, role: viewer}, {tenant: globex, role: viewer}, {tenant: acme, subTenant: eu, role: admin}]\n", []string{"spec.memberships", "memberships may name each tenant only once"}},
		{"membership without role", token + "  memberships: [{tenant: acme}]\n", []string{"spec.memberships[0].role", "Required value"}},
		{"membership tenant not a DNS label", token + "  memberships: [{tenant: Acme, role: viewer}]\n", []string{"spec.memberships[0].tenant"}},
		{"too many memberships", token + tooManyMemberships, []string{"spec.memberships", "must have at most 32 items"}},

		{"issuer missing", issuer + "  audiences: [a]\n", []string{"spec.issuer", "Required value"}},
		{"issuer not a URL", issuer + "  issuer: not a url\n", []string{"spec.issuer", "issuer must be an http or https URL"}},
		{"unknown algorithm", issuer + "  issuer: https://i.example\n  signing: {algorithm: HS256}\n", []string{"spec.signing.algorithm", "Unsupported value"}},
		{"key rotation too often", issuer + "  issuer: https://i.example\n  signing: {keyRotationInterval: 5m}\n", []string{"spec.signing.keyRotationInterval", "at least 1h"}},
		{"publishBefore not shorter than the rotation", issuer + "  issuer: https://i.example\n  signing: {keyRotationInterval: 1h, publishBefore: 60m}\n", []string{"spec.signing.publishBefore", "publishBefore must be shorter than keyRotationInterval"}},
		{"publishBefore not a duration", issuer + "  issuer: https://i.example\n  signing: {publishBefore: soon}\n", []string{"spec.signing.publishBefore"}},
		{"bad opaque prefix", issuer + "  issuer: https://i.example\n  opaquePrefix: Api_Token\n", []string{"spec.opaquePrefix"}},
		{"include of an unknown role", issuer + "  issuer: https://i.example\n  roles: [{name: a, includes: [b]}]\n", []string{"spec.roles", "may only name roles of this issuer"}},
		{"role including itself", issuer + "  issuer: https://i.example\n  roles: [{name: a, includes: [a]}]\n", []string{"spec.roles", "may not include itself"}},
		{"maxRole not a role", issuer + "  issuer: https://i.example\n  roles: [{name: a}]\n  tenants: [{name: t, namespaces: [t], maxRole: root}]\n", []string{"spec.tenants", "maxRole must name one of the issuer's roles"}},
		{"tenant without namespaces", issuer + "  issuer: https://i.example\n  tenants: [{name: t, namespaces: []}]\n", []string{"spec.tenants[0].namespaces"}},
		{"duplicate roles", issuer + "  issuer: https://i.example\n  roles: [{name: a}, {name: a}]\n", []string{"spec.roles[1]", "Duplicate value"}},
		{"exchange default above its maximum", issuer + "  issuer: https://i.example\n  exchange: {enabled: true, defaultLifetime: 2h, maxLifetime: 1h}\n", []string{"spec.exchange", "exchange.defaultLifetime may not exceed exchange.maxLifetime"}},
		{"exchange maximum above the issuer's", issuer + "  issuer: https://i.example\n  maxLifetime: 1h\n  exchange: {enabled: true, defaultLifetime: 10m, maxLifetime: 2h}\n", []string{"spec.exchange.maxLifetime", "exchange.maxLifetime may not exceed maxLifetime"}},
		{"exchange lifetime too short", issuer + "  issuer: https://i.example\n  exchange: {enabled: true, defaultLifetime: 1s}\n", []string{"spec.exchange.defaultLifetime", "at least 10s"}},
		{"sub-tenant required without tenant", issuer + "  issuer: https://i.example\n  exchange: {enabled: true, requireSubTenant: true}\n", []string{"spec.exchange", "requireSubTenant needs exchange.requireTenant"}},
		{"exchange depth above 8", issuer + "  issuer: https://i.example\n  exchange: {enabled: true, maxDepth: 9}\n", []string{"spec.exchange.maxDepth"}},
		{"sub-tenant required, tenant explicitly not", issuer + "  issuer: https://i.example\n  exchange: {requireTenant: false, requireSubTenant: true}\n", []string{"spec.exchange", "requireSubTenant needs exchange.requireTenant"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// kubectl apply validates fields strictly; so do we.
			err := env.Client.Create(context.Background(), decode(t, tc.manifest), client.DryRunAll, client.FieldValidation("Strict"))
			if err == nil {
				t.Fatal("accepted, want refused")
			}
			if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
				t.Fatalf("refused for the wrong reason: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message does not name %q:\n%v", w, err)
				}
			}
		})
	}
}

// A multi-tenant APIToken and an issuer that requires mint permission are accepted,
// and the memberships read back in their order.
func TestMembershipsAreAccepted(t *testing.T) {
	ensureNamespace(t, "acme")
	tok := decode(t, `
apiVersion: tokens.apitoken.dev/v1alpha1
kind: APIToken
metadata: {name: multi, namespace: acme}
spec:
  memberships:
    - {tenant: acme, role: editor}
    - {tenant: globex, subTenant: eu, role: viewer}`)
	if err := env.Client.Create(context.Background(), tok, client.DryRunAll, client.FieldValidation("Strict")); err != nil {
		t.Fatal(err)
	}
	ms, _, _ := unstructured.NestedSlice(tok.Object, "spec", "memberships")
	if len(ms) != 2 || ms[1].(map[string]any)["subTenant"] != "eu" {
		t.Errorf("memberships read back as %v", ms)
	}
	iss := decode(t, `
apiVersion: tokens.apitoken.dev/v1alpha1
kind: ClusterTokenIssuer
metadata: {name: minters}
spec: {issuer: "https://issuer.example", requireMintPermission: true}`)
	if err := env.Client.Create(context.Background(), iss, client.DryRunAll, client.FieldValidation("Strict")); err != nil {
		t.Fatal(err)
	}
}
