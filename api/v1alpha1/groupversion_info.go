// Package v1alpha1 contains the API of apitoken-operator: APIToken, a declarative,
// rotated and revocable API token, and ClusterTokenIssuer, the signing keys and the
// policy of who may mint what.
//
// +kubebuilder:object:generate=true
// +groupName=tokens.apitoken.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of every type in this package.
	GroupVersion = schema.GroupVersion{Group: "tokens.apitoken.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&APIToken{}, &APITokenList{},
		&ClusterTokenIssuer{}, &ClusterTokenIssuerList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
