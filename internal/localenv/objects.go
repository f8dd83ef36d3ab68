package localenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// ApplyFile creates the objects of a multi-document YAML file; objects that exist
// already are left as they are.
func ApplyFile(ctx context.Context, c client.Client, path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for _, doc := range bytes.Split(raw, []byte("\n---")) {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := c.Create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

// WaitReady polls obj, an APIToken or a ClusterTokenIssuer, until its Ready condition
// is True, for at most timeout. obj holds the last version read.
func WaitReady(ctx context.Context, c client.Client, obj client.Object, timeout time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return false, nil
		}
		return IsReady(obj), nil
	})
}

// IsReady reports whether obj, an APIToken or a ClusterTokenIssuer, has Ready=True.
func IsReady(obj client.Object) bool {
	var conds []metav1.Condition
	switch o := obj.(type) {
	case *tokensv1.APIToken:
		conds = o.Status.Conditions
	case *tokensv1.ClusterTokenIssuer:
		conds = o.Status.Conditions
	}
	return meta.IsStatusConditionTrue(conds, tokensv1.ConditionReady)
}
