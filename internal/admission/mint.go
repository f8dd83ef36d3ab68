package admission

import (
	"context"
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/policy"
)

// The webhook asks the API server whether the requester may mint, for issuers that
// require it.
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// workloadResources are the resources of the kinds rolloutRestartTargets may name.
var workloadResources = map[string]string{"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}

// checkMintPermission asks, for an issuer with requireMintPermission, whether user may
// mint each role tok holds and patch each workload it restarts, the way RBAC asks
// whether whoever writes a RoleBinding may "bind" its role: otherwise an APIToken would
// let its author hand out a role, or restart a workload, that RBAC does not give them.
// A refusal names the field, the user, what was asked and the RBAC rule that would
// allow it.
func (v *APITokenValidator) checkMintPermission(ctx context.Context, tok *tokensv1.APIToken, iss *tokensv1.ClusterTokenIssuer, user authenticationv1.UserInfo) error {
	ms := policy.Memberships(tok.Spec.Memberships)
	for _, role := range policy.HeldRoles(tok.Spec.Role, ms) {
		attrs := authorizationv1.ResourceAttributes{
			Namespace: tok.Namespace, Verb: tokensv1.MintVerb, Group: tokensv1.GroupVersion.Group, Resource: tokensv1.MintResource, Name: role,
		}
		if err := v.require(ctx, user, attrs, func() error {
			return fmt.Errorf("%s: user %q may not mint role %q in namespace %q: ClusterTokenIssuer %q requires mint permission, "+
				"%s, granted for example by binding the ClusterRole %s%s in the namespace",
				roleField(tok, role), user.Username, role, tok.Namespace, iss.Name, rule(attrs), tokensv1.MinterClusterRolePrefix, role)
		}); err != nil {
			return err
		}
	}
	for i, t := range tok.Spec.RolloutRestartTargets {
		attrs := authorizationv1.ResourceAttributes{
			Namespace: tok.Namespace, Verb: "patch", Group: "apps", Resource: workloadResources[t.Kind], Name: t.Name,
		}
		if err := v.require(ctx, user, attrs, func() error {
			return fmt.Errorf("spec.rolloutRestartTargets[%d]: user %q may not patch %s %q in namespace %q: ClusterTokenIssuer %q requires that "+
				"whoever names a workload to restart may restart it, %s", i, user.Username, t.Kind, t.Name, tok.Namespace, iss.Name, rule(attrs))
		}); err != nil {
			return err
		}
	}
	return nil
}

// require returns nil when user may do what attrs describe, refused() when not.
func (v *APITokenValidator) require(ctx context.Context, user authenticationv1.UserInfo, attrs authorizationv1.ResourceAttributes, refused func() error) error {
	ok, err := v.allowed(ctx, user, attrs)
	switch {
	case err != nil:
		return err
	case !ok:
		return refused()
	}
	return nil
}

// rule says, in a refusal, what RBAC rule would allow attrs.
func rule(attrs authorizationv1.ResourceAttributes) string {
	return fmt.Sprintf("RBAC verb %q on resource %q of API group %q with resourceName %q", attrs.Verb, attrs.Resource, attrs.Group, attrs.Name)
}

// allowed asks the API server's authorizer, by a SubjectAccessReview, whether user may
// do what attrs describe.
func (v *APITokenValidator) allowed(ctx context.Context, user authenticationv1.UserInfo, attrs authorizationv1.ResourceAttributes) (bool, error) {
	if v.Client == nil {
		return false, fmt.Errorf("the webhook cannot check mint permission: it has no client for SubjectAccessReviews")
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		ResourceAttributes: &attrs,
		User:               user.Username,
		UID:                user.UID,
		Groups:             user.Groups,
		Extra:              make(map[string]authorizationv1.ExtraValue, len(user.Extra)),
	}}
	for k, val := range user.Extra {
		sar.Spec.Extra[k] = authorizationv1.ExtraValue(val)
	}
	if err := v.Client.Create(ctx, sar); err != nil {
		return false, fmt.Errorf("asking whether user %q may %s %s %q: %w", user.Username, attrs.Verb, attrs.Resource, attrs.Name, err)
	}
	return sar.Status.Allowed, nil
}

// roleField is the field of tok that holds role: spec.role, or the first membership
// holding it.
func roleField(tok *tokensv1.APIToken, role string) string {
	for i, m := range tok.Spec.Memberships {
		if m.Role == role {
			return fmt.Sprintf("spec.memberships[%d].role", i)
		}
	}
	return "spec.role"
}
