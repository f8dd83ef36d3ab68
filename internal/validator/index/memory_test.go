package index

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

	. "github.com/onsi/gomega"
	toolscache "k8s.io/client-go/tools/cache"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// apiTokenJSON is an APIToken as the API server sends it to a watch: managed fields of
// kubectl and the controller, the last-applied annotation, a full spec and status.
const apiTokenJSON = `{
 "apiVersion": "tokens.apitoken.dev/v1alpha1", "kind": "APIToken",
 "metadata": {
  "name": "ci-pipeline-%[1]d", "namespace": "tenant-%[2]d", "uid": "%[3]s",
  "resourceVersion": "%[1]d7", "generation": 3, "creationTimestamp": "2030-01-02T03:04:05Z",
  "finalizers": ["tokens.apitoken.dev/revoke"],
  "labels": {"app.kubernetes.io/part-of": "billing", "team": "payments"},
  "annotations": {"apitoken.dev/created-by": "system:serviceaccount:argocd:argocd-application-controller", "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"tokens.apitoken.dev/v1alpha1\",\"kind\":\"APIToken\",\"metadata\":{\"annotations\":{},\"name\":\"ci-pipeline\",\"namespace\":\"acme\"},\"spec\":{\"issuerRef\":{\"name\":\"default\"},\"lifetime\":\"720h\",\"role\":\"editor\",\"scopes\":[\"reports:read\"],\"tenant\":\"acme\"}}\n"},
  "managedFields": [
   {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "tokens.apitoken.dev/v1alpha1", "time": "2030-01-02T03:04:05Z", "fieldsType": "FieldsV1",
    "fieldsV1": {"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/last-applied-configuration":{}}},"f:spec":{".":{},"f:issuerRef":{".":{},"f:name":{}},"f:lifetime":{},"f:role":{},"f:scopes":{},"f:tenant":{}}}},
   {"manager": "apitoken-controller", "operation": "Update", "apiVersion": "tokens.apitoken.dev/v1alpha1", "time": "2030-01-02T03:04:05Z", "fieldsType": "FieldsV1", "subresource": "status",
    "fieldsV1": {"f:status":{".":{},"f:conditions":{},"f:current":{},"f:observedGeneration":{},"f:previousTokens":{},"f:renewalTime":{},"f:rotations":{},"f:secretName":{}}}}
  ]
 },
 "spec": {"issuerRef": {"name": "default"}, %[7]s,
  "scopes": ["reports:read", "invoices:write"], "audiences": ["billing-api"], "format": "%[4]s", "lifetime": "720h",
  "rotation": {"policy": "Auto", "renewBefore": "240h", "gracePeriod": "10m"},
  "secret": {"name": "ci-pipeline-token", "deletionPolicy": "Delete"},
  "description": "token for the CI pipeline of the billing team"},
 "status": {
  "conditions": [
   {"type": "Ready", "status": "True", "reason": "Rotated", "message": "token 01JD... is in Secret ci-pipeline-token", "lastTransitionTime": "2030-01-02T03:04:05Z", "observedGeneration": 3},
   {"type": "Revoked", "status": "False", "reason": "NotRevoked", "message": "", "lastTransitionTime": "2030-01-02T03:04:05Z", "observedGeneration": 3},
   {"type": "Expired", "status": "False", "reason": "NotExpired", "message": "", "lastTransitionTime": "2030-01-02T03:04:05Z", "observedGeneration": 3},
   {"type": "Stalled", "status": "False", "reason": "Rotated", "message": "", "lastTransitionTime": "2030-01-02T03:04:05Z", "observedGeneration": 3}
  ],
  "observedGeneration": 3,
  "current": %[5]s,
  "previousTokens": [%[6]s],
  "renewalTime": "2030-01-22T03:04:05Z", "rotations": 4, "secretName": "ci-pipeline-token",
  "lastUsedTime": "2030-01-02T03:05:05Z"
 }
}`

const issuedJSON = `{"tokenID": "%s", "format": "%s", %s
 "claims": {%s, "scopes": ["reports:read", "invoices:write"], "audiences": ["billing-api"]},
 "issuedAt": "2030-01-02T03:04:05Z", "expiresAt": "2030-02-01T03:04:05Z"%s}`

// grantJSON is what a token grants, as the spec and the claims write it: tenant, a
// sub-tenant and a role, or with memberships > 0 that many memberships, the first of
// tenant, the others of tenants of other names.
func grantJSON(tenant string, memberships int) string {
	if memberships == 0 {
		return fmt.Sprintf(`"tenant": %q, "subTenant": "payments", "role": "editor"`, tenant)
	}
	out := `"memberships": [`
	for i := range memberships {
		if i > 0 {
			out += ", "
		}
		if i == 0 {
			out += fmt.Sprintf(`{"tenant": %q, "subTenant": "payments", "role": "editor"}`, tenant)
			continue
		}
		out += fmt.Sprintf(`{"tenant": "tenant-%d", "role": "viewer"}`, i)
	}
	return out + "]"
}

func issuedText(format tokensv1.TokenFormat, previous bool, tenant string, memberships int) string {
	id := token.NewTokenID()
	var secretOrKey string
	if format == tokensv1.FormatOpaque {
		op, _ := token.MintOpaque("apt", id)
		secretOrKey = fmt.Sprintf(`"tokenHash": %q,`, op.Hash)
	} else {
		// A JWT's record binds the token by its digest, as the controller writes it.
		secretOrKey = fmt.Sprintf(`"signingKeyID": "oQ3vV1Hq0wWm5m6uC5dRQbq5dQm0yHh7c9uVt2cYp2c", "digest": %q,`, token.Digest("jwt-"+id))
	}
	retire := ""
	if previous {
		retire = `, "retireAt": "2030-01-22T03:14:05Z"`
	}
	return fmt.Sprintf(issuedJSON, id, format, secretOrKey, grantJSON(tenant, memberships), retire)
}

// heapPerAPIToken decodes n APITokens from JSON as a watch would, runs them through
// the transform into an informer store like controller-runtime's (key and namespace
// index) and the index, and returns the heap they keep, per APIToken. The tokens are
// of tenant acme, or with ownTenant each APIToken's of a tenant of its own, so that
// no two grant the same.
func heapPerAPIToken(t testing.TB, n int, format tokensv1.TokenFormat, previous, memberships int, ownTenant, transform bool) float64 {
	store := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc})
	x := New(Config{})
	doc := func(i int) []byte {
		tenant := "acme"
		if ownTenant {
			tenant = fmt.Sprintf("acme-%d", i)
		}
		prev := ""
		for p := range previous {
			if p > 0 {
				prev += ","
			}
			prev += issuedText(format, true, tenant, memberships)
		}
		return fmt.Appendf(nil, apiTokenJSON, i, i%100, fmt.Sprintf("6f1c2d1e-0000-4000-8000-%012d", i), format,
			issuedText(format, false, tenant, memberships), prev, grantJSON(tenant, memberships))
	}
	// The decoder keeps what it learns of each type for the life of the process:
	// decode once before measuring, or the first case pays for all the others.
	var warm tokensv1.APIToken
	if err := json.Unmarshal(doc(-1), &warm); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		var obj tokensv1.APIToken
		if err := json.Unmarshal(doc(i), &obj); err != nil {
			t.Fatal(err)
		}
		if !transform {
			// What the informer would keep without the transform, for comparison.
			if err := store.Add(&obj); err != nil {
				t.Fatal(err)
			}
			x.PutTokenSet(NewTokenSet(&obj))
			continue
		}
		out, err := Transform(&obj)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Add(out); err != nil {
			t.Fatal(err)
		}
		x.PutTokenSet(out.(*TokenSet))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if x.Len() != n*(1+previous) {
		t.Fatalf("indexed %d tokens, want %d", x.Len(), n*(1+previous))
	}
	runtime.KeepAlive(store)
	runtime.KeepAlive(x)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// TestMemoryPerToken holds the validator to what a token costs it, counting
// everything: the transformed object in the informer's store, the store's key and
// namespace index, the record, what it shares with other tokens, and the index's
// maps. The limits are the figures measured (docs/performance.md) plus about 10%; a
// single-tenant APIToken of one token must stay within 520 bytes. Tokens that grant
// what other tokens grant share it, so memberships cost nothing more when thousands
// of tokens hold the same; the ownTenant cases, where no two tokens grant the same,
// are what sharing cannot save.
func TestMemoryPerToken(t *testing.T) {
	const n = 3000
	for _, tc := range []struct {
		format      tokensv1.TokenFormat
		previous    int
		memberships int
		ownTenant   bool
		limit       float64
	}{
		{tokensv1.FormatJWT, 0, 0, false, 520},
		{tokensv1.FormatOpaque, 0, 0, false, 520},
		{tokensv1.FormatJWT, 1, 0, false, 335},
		{tokensv1.FormatOpaque, 1, 0, false, 360},
		{tokensv1.FormatJWT, 0, 1, false, 520},
		{tokensv1.FormatOpaque, 0, 1, false, 540},
		{tokensv1.FormatJWT, 0, 4, false, 520},
		{tokensv1.FormatOpaque, 0, 4, false, 540},
		{tokensv1.FormatJWT, 1, 4, false, 335},
		{tokensv1.FormatJWT, 0, 0, true, 910},
		{tokensv1.FormatOpaque, 0, 0, true, 860},
		{tokensv1.FormatJWT, 0, 4, true, 1100},
	} {
		t.Run(fmt.Sprintf("%s/previous=%d/memberships=%d/ownTenant=%t", tc.format, tc.previous, tc.memberships, tc.ownTenant), func(t *testing.T) {
			g := NewWithT(t)
			perObject := heapPerAPIToken(t, n, tc.format, tc.previous, tc.memberships, tc.ownTenant, true)
			perToken := perObject / float64(1+tc.previous)
			t.Logf("%.0f bytes per APIToken, %.0f bytes per token", perObject, perToken)
			g.Expect(perToken).To(BeNumerically("<=", tc.limit))
		})
	}
}

// BenchmarkMemoryPerAPIToken reports the heap one APIToken costs the validator with
// the transform and, for comparison, without it (the decoded APIToken in the store).
func BenchmarkMemoryPerAPIToken(b *testing.B) {
	for _, transform := range []bool{true, false} {
		for _, format := range []tokensv1.TokenFormat{tokensv1.FormatJWT, tokensv1.FormatOpaque} {
			b.Run(fmt.Sprintf("%s/transform=%t", format, transform), func(b *testing.B) {
				var per float64
				for b.Loop() {
					per = heapPerAPIToken(b, 5000, format, 0, 0, false, transform)
				}
				b.ReportMetric(per, "bytes/APIToken")
			})
		}
	}
}
