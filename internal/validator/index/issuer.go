package index

import (
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/jwk"
	"github.com/apitoken-operator/apitoken-operator/internal/policy"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// Issuer is what the validator needs of a ClusterTokenIssuer: its published keys and
// its role graph. It is immutable; a change to the
// issuer replaces it.
type Issuer struct {
	// Name is the ClusterTokenIssuer's name.
	Name string
	// URL is spec.issuer, the iss claim.
	URL string
	// Ready is the Ready condition: only Ready issuers are published at the
	// well-known endpoints.
	Ready bool
	// JWKS is status.jwks as published.
	JWKS []tokensv1.JSONWebKey
	// Keys are the published keys, ready to verify with; nil when there are none or
	// the key set is invalid, in which case none of the issuer's JWTs verifies.
	Keys token.KeySet
	// KeyError says why the key set was refused, for the log; nil otherwise.
	KeyError error
	// Roles is the issuer's role graph; nil when it is invalid, in which case a role
	// grants only itself.
	Roles *policy.Roles
	// RolesError says why the role graph was refused; nil otherwise.
	RolesError error
	// Policy is who may hold which tokens of this issuer (tenants, namespaces,
	// maxRole), checked again on every validation so that tightening the policy
	// takes effect on tokens minted before. When the new spec's policy cannot be
	// resolved (a role cycle, which makes the issuer Stalled), the previous policy
	// stays in force; nil only when no valid policy was ever seen.
	Policy *policy.Issuer
	// PolicyError says why the spec's policy was refused; nil otherwise.
	PolicyError error
	// OpaquePrefix is the prefix of the issuer's opaque tokens, to reassemble opaque
	// tokens sent in parts.
	OpaquePrefix string
	// CurrentKeyID is status.currentKeyID, the key new tokens are signed with.
	CurrentKeyID string

	// spec and status are kept to tell a real change from a status write that
	// changes nothing the validator uses.
	spec   tokensv1.ClusterTokenIssuerSpec
	status tokensv1.ClusterTokenIssuerStatus
}

// Grants reports whether a token with role have passes a check that requires want,
// by the issuer's role graph.
func (i *Issuer) Grants(have, want string) bool { return i.Roles.Grants(have, want) }

// Expand returns the roles that role grants, itself included.
func (i *Issuer) Expand(role string) []string { return i.Roles.Expand(role) }

// Algorithms returns the distinct algorithms of the published keys, in order.
func (i *Issuer) Algorithms() []string {
	var algs []string
	for _, k := range i.JWKS {
		if k.Alg != "" && !slices.Contains(algs, k.Alg) {
			algs = append(algs, k.Alg)
		}
	}
	return algs
}

// Allows reports, by the issuer's policy as it is now, whether rec, a token of an
// APIToken in namespace, may still grant its tenant and role, or each of its
// memberships (policy.Issuer.CheckHeld); a *policy.Violation says which rule it
// breaks. An issuer with no valid policy allows what its controller minted.
func (i *Issuer) Allows(namespace string, rec *Record) error {
	if i.Policy == nil {
		return nil
	}
	return i.Policy.CheckHeld(namespace, rec.Tenant(), rec.Role(), rec.Memberships())
}

// newIssuer builds an Issuer; a key set or role graph that cannot be used is recorded,
// not returned, so that one bad field does not hide the rest of the issuer. prev is
// the Issuer it replaces, or nil: its policy stays in force when the new one is
// invalid.
func newIssuer(cti *tokensv1.ClusterTokenIssuer, prev *Issuer) *Issuer {
	iss := &Issuer{
		Name:         cti.Name,
		URL:          cti.Spec.Issuer,
		Ready:        meta.IsStatusConditionTrue(cti.Status.Conditions, tokensv1.ConditionReady),
		OpaquePrefix: cti.Spec.OpaquePrefixOrDefault(),
		CurrentKeyID: cti.Status.CurrentKeyID,
		spec:         cti.Spec,
		status:       cti.Status,
	}
	if cti.Status.JWKS != nil {
		iss.JWKS = cti.Status.JWKS.Keys
	}
	iss.Roles, iss.RolesError = policy.NewRoles(cti.Spec.Roles)
	if iss.RolesError != nil {
		iss.Roles = nil
	}
	iss.Policy, iss.PolicyError = policy.ForIssuer(&cti.Spec)
	if iss.PolicyError != nil {
		iss.Policy = nil
		if prev != nil {
			iss.Policy = prev.Policy
		}
	}
	if len(iss.JWKS) > 0 {
		iss.Keys, iss.KeyError = token.NewKeySet(jwk.ToToken(cti.Status.JWKS))
		if iss.KeyError != nil {
			iss.Keys = nil
		}
	}
	return iss
}

// stripIssuer keeps what the validator reads of a ClusterTokenIssuer: the issuer URL,
// roles, tenants, opaque prefix, keys and the Ready condition. Managed fields,
// annotations and the other conditions go.
func stripIssuer(cti *tokensv1.ClusterTokenIssuer) *tokensv1.ClusterTokenIssuer {
	out := &tokensv1.ClusterTokenIssuer{
		TypeMeta: cti.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name:              cti.Name,
			UID:               cti.UID,
			ResourceVersion:   cti.ResourceVersion,
			Generation:        cti.Generation,
			DeletionTimestamp: cti.DeletionTimestamp,
		},
		Spec: tokensv1.ClusterTokenIssuerSpec{
			Issuer:       cti.Spec.Issuer,
			Audiences:    cti.Spec.Audiences,
			OpaquePrefix: cti.Spec.OpaquePrefix,
			Roles:        cti.Spec.Roles,
			Tenants:      cti.Spec.Tenants,
			MaxLifetime:  cti.Spec.MaxLifetime,
			Exchange:     cti.Spec.Exchange,
		},
		Status: tokensv1.ClusterTokenIssuerStatus{
			JWKS:         cti.Status.JWKS,
			CurrentKeyID: cti.Status.CurrentKeyID,
		},
	}
	if c := meta.FindStatusCondition(cti.Status.Conditions, tokensv1.ConditionReady); c != nil {
		out.Status.Conditions = []metav1.Condition{{Type: c.Type, Status: c.Status, Reason: c.Reason}}
	}
	return out
}
