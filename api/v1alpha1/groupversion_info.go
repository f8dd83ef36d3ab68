// Package v1alpha1 contains the API of apitoken-operator: APIToken, a declarative,
// rotated and revocable API token, and ClusterTokenIssuer, the signing keys and the
// policy of who may mint what.
//
// +kubebuilder:object:generate=true
// +groupName=tokens.apitoken.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every type in this package.
	GroupVersion = schema.GroupVersion{Group: "tokens.apitoken.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
