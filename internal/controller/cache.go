// Package controller holds what the manager's controllers share: the cache they read
// through, how they write (one field manager, owner references, status and metadata
// patches under an optimistic lock, conditions stamped with the pass's time) and the
// lease fence that keeps a deposed leader from writing. The controllers themselves
// live in its subpackages.
package controller

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// CacheOptions restrict the manager's Secret cache to the Secrets the operator writes
// (token Secrets and signing-key Secrets carry apitoken.dev/managed-by), so memory
// stays flat however many unrelated Secrets the cluster holds. A Secret without the
// label is invisible to the controllers' reads, which is what the conflict check of
// the APIToken controller relies on: it reads such Secrets with an uncached client.
//
// Managed fields are dropped from every cached object: no controller reads them
// (writes go by server-side apply, which the API server merges), and on objects
// applied by kubectl or a GitOps tool they are often larger than the spec.
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{tokensv1.ManagedByLabel: tokensv1.ManagedByValue})},
		},
	}
}
