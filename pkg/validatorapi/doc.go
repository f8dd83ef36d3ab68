// Package validatorapi is the wire contract of the apitoken validator: the paths it
// serves, the headers of forward auth, the JSON of /v1/validate, the reasons of its
// decisions and the sentences it may send about them, and the rule that turns a
// requirement and an authenticated token into a decision. The validator serves this
// contract and pkg/middleware speaks it, so the two cannot drift apart.
//
// It imports no Kubernetes package: a workload that only checks tokens should not
// compile apimachinery.
package validatorapi
