// Package install tests the ways the operator is installed and operated: the Helm
// chart in charts/apitoken-operator and the kustomize overlays in config/, rendered
// with the pinned helm and kustomize binaries that `make test` builds and applied to a
// real API server; and the alerts of config/prometheus and the dashboard of
// config/grafana, checked with promtool.
package install
