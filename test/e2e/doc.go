// Package e2e holds the end-to-end tests of the operator: the manager and the
// validator run as real processes against a local kube-apiserver and etcd, and the
// tests kill, freeze and restart them, restart the API server under them, and feed
// the validator garbage, while a client keeps reading token Secrets and validating
// what it read. docs/reliability.md says what each test proves and what the last
// runs measured; the test sizes are set by E2E_* environment variables (see
// params_test.go), with defaults that fit a CI run.
package e2e
