// Package install tests the ways the operator is installed: the Helm chart in
// charts/apitoken-operator and the kustomize overlays in config/. Its tests render them
// with the pinned helm and kustomize binaries that `make test` builds, and apply every
// object to a real API server.
package install
