package install

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The kustomize installs of config/ and the chart values each is equivalent to.
var kustomizeInstalls = []struct {
	dir       string
	chartSets []string
}{
	{dir: "default"},
	{dir: "with-certmanager", chartSets: []string{"certManager.enabled=true"}},
}

// TestKustomizeInstalls builds each kustomize install and applies every object to the
// API server, into apitoken-system, the namespace config/ installs to.
func TestKustomizeInstalls(t *testing.T) {
	ctx := context.Background()
	installThirdPartyCRDs(ctx, t)
	for _, tt := range kustomizeInstalls {
		t.Run(tt.dir, func(t *testing.T) {
			g := NewWithT(t)
			m := kustomizeBuild(t, tt.dir)
			ns := m.get(t, "Namespace", "apitoken-system")
			g.Expect(ns.GetLabels()).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"))
			install(ctx, t, m)
			expectOperatorInstalled(ctx, t, g, m, "apitoken-system")
			if tt.chartSets == nil {
				expectSelfManagedCerts(ctx, t, g, m, "apitoken-system")
			} else {
				expectCertManagerCerts(ctx, t, g, m, "apitoken-system")
			}
			g.Expect(m.get(t, "ClusterTokenIssuer", "default").GetNamespace()).To(BeEmpty())
		})
	}
}

// TestKustomizeEquivalentToChart: each kustomize install holds the same objects as the
// chart rendered into apitoken-system with the matching values, field for field, but
// for the chart's labels and the image tag. The Namespace is kustomize's only:
// Helm leaves the release namespace to `helm install --create-namespace`.
func TestKustomizeEquivalentToChart(t *testing.T) {
	for _, tt := range kustomizeInstalls {
		t.Run(tt.dir, func(t *testing.T) {
			g := NewWithT(t)
			fromKustomize := normalized(kustomizeBuild(t, tt.dir))
			delete(fromKustomize, "Namespace /apitoken-system")
			fromChart := normalized(helmTemplate(t, "apitoken-system", tt.chartSets...))

			g.Expect(keys(fromKustomize)).To(ConsistOf(keys(fromChart)))
			for k, want := range fromChart {
				g.Expect(cmp.Diff(want, fromKustomize[k])).To(BeEmpty(), "%s differs between the chart (-) and config/%s (+)", k, tt.dir)
			}
		})
	}
}

// normalized strips from each object what legitimately differs between the chart and
// kustomize: labels, the Helm-only annotations, and the image reference.
func normalized(m manifest) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, o := range m {
		c := o.DeepCopy()
		c.SetLabels(nil)
		annotations := c.GetAnnotations()
		delete(annotations, "helm.sh/resource-policy")
		c.SetAnnotations(annotations)
		if len(annotations) == 0 {
			c.SetAnnotations(nil)
		}
		if c.GetKind() == "Deployment" {
			containers, _, _ := unstructured.NestedSlice(c.Object, "spec", "template", "spec", "containers")
			for _, ct := range containers {
				delete(ct.(map[string]any), "image")
				delete(ct.(map[string]any), "imagePullPolicy")
			}
			_ = unstructured.SetNestedSlice(c.Object, containers, "spec", "template", "spec", "containers")
		}
		out[key(o)] = c.Object
	}
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
