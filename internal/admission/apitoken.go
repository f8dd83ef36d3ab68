// Package admission holds the admission webhooks for APITokens. The validating one
// runs the policy checks that need the issuer (issuer exists, tenant allowed in this
// namespace, role allowed, lifetime within the maximum) at apply time, so that
// `kubectl apply` of a token the namespace may not mint is refused with a message
// naming the rule; the rules themselves live in internal/policy, and the APIToken
// controller asks the same ones. For an issuer that requires it, it also asks RBAC
// whether the requester may mint the token's roles. The mutating one records who
// created each APIToken.
package admission

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/policy"
)

// The API server calls the webhook for creates and for updates that change the spec
// (matchConditions): the policy judges the spec, and most updates are the manager's
// own (a finalizer) or a person's that leave the spec alone (the rotate annotation,
// labels). Status writes go to the status subresource, which the rules do not name.
// +kubebuilder:webhook:path=/validate-tokens-apitoken-dev-v1alpha1-apitoken,mutating=false,failurePolicy=fail,sideEffects=None,groups=tokens.apitoken.dev,resources=apitokens,verbs=create;update,versions=v1alpha1,name=vapitoken.apitoken.dev,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"matchConditions":[{"name":"create-or-spec-change","expression":"request.operation != 'UPDATE' || object.spec != oldObject.spec"}]}`

// APITokenValidator refuses APITokens that the issuer's policy forbids.
type APITokenValidator struct {
	// Reader reads ClusterTokenIssuers, through the manager's cache: a GitOps sync of
	// thousands of APITokens would otherwise cost the API server one read of the
	// issuer per APIToken, on top of the create.
	Reader client.Reader
	// APIReader reads an issuer past the cache when the cache does not have it or its
	// policy refuses: a GitOps tool applies an issuer and its first tokens together,
	// or loosens a policy and applies the tokens it now allows, and a cache that has
	// not yet seen the change must not refuse them. Nil: Reader only.
	APIReader client.Reader
	// Client creates the SubjectAccessReviews of issuers that require mint
	// permission. Without one, their APITokens are refused: the check fails closed.
	Client client.Client
}

// SetupWithManager registers the webhook with the manager's webhook server.
func (v *APITokenValidator) SetupWithManager(mgr manager.Manager) error {
	return builder.WebhookManagedBy(mgr, &tokensv1.APIToken{}).WithValidator(v).Complete()
}

// ValidateCreate checks a new APIToken against its issuer's policy.
func (v *APITokenValidator) ValidateCreate(ctx context.Context, tok *tokensv1.APIToken) (admission.Warnings, error) {
	return v.validate(ctx, nil, tok)
}

// ValidateUpdate checks a changed APIToken; the API server asks only when the spec
// changed (see the matchConditions above). Revoking is always allowed, whatever the
// policy says now: a token minted under an older policy must still be revocable.
func (v *APITokenValidator) ValidateUpdate(ctx context.Context, old, tok *tokensv1.APIToken) (admission.Warnings, error) {
	if tok.Spec.Revoked || !tok.DeletionTimestamp.IsZero() {
		return nil, nil
	}
	return v.validate(ctx, old, tok)
}

// ValidateDelete allows every deletion.
func (v *APITokenValidator) ValidateDelete(context.Context, *tokensv1.APIToken) (admission.Warnings, error) {
	return nil, nil
}

// validate checks tok, which replaces old (nil on create).
func (v *APITokenValidator) validate(ctx context.Context, old, tok *tokensv1.APIToken) (admission.Warnings, error) {
	var renewBefore, gracePeriod time.Duration
	if r := tok.Spec.Rotation; r != nil && r.RenewBefore != nil {
		renewBefore = r.RenewBefore.Duration
	}
	if r := tok.Spec.Rotation; r != nil && r.GracePeriod != nil {
		gracePeriod = r.GracePeriod.Duration
	}
	warnings := admission.Warnings(policy.RotationWarnings(field.NewPath("spec", "rotation"), renewBefore, gracePeriod))
	if tok.Spec.Revoked {
		return warnings, nil
	}
	iss, err := v.check(ctx, v.Reader, tok)
	if err != nil && v.APIReader != nil {
		// Only the API server's answer may refuse.
		iss, err = v.check(ctx, v.APIReader, tok)
	}
	if err != nil {
		return warnings, err
	}
	// Who may mint: asked when the token is made or its spec changes, not for the
	// controller's finalizer or a rotate annotation, which mint nothing new.
	if iss.Spec.RequireMintPermission && (old == nil || !equality.Semantic.DeepEqual(old.Spec, tok.Spec)) {
		req, err := admission.RequestFromContext(ctx)
		if err != nil {
			return warnings, fmt.Errorf("checking mint permission: %w", err)
		}
		if err := v.checkMintPermission(ctx, tok, iss, req.UserInfo); err != nil {
			return warnings, err
		}
	}
	return warnings, nil
}

// check asks the policy of tok's issuer, as r has it, whether tok may be minted, and
// returns the issuer it judged by.
func (v *APITokenValidator) check(ctx context.Context, r client.Reader, tok *tokensv1.APIToken) (*tokensv1.ClusterTokenIssuer, error) {
	name := tok.Spec.IssuerName()
	var iss tokensv1.ClusterTokenIssuer
	if err := r.Get(ctx, types.NamespacedName{Name: name}, &iss); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("spec.issuerRef.name: ClusterTokenIssuer %q does not exist", name)
		}
		return nil, fmt.Errorf("reading ClusterTokenIssuer %q: %w", name, err)
	}
	p, err := policy.ForIssuer(&iss.Spec)
	if err != nil {
		return nil, fmt.Errorf("spec.issuerRef.name: ClusterTokenIssuer %q has an invalid policy: %w", name, err)
	}
	if err := p.CheckMintOf(policy.Request{
		Namespace: tok.Namespace,
		Tenant:    tok.Spec.Tenant,
		Role:      tok.Spec.Role,
		Lifetime:  tok.Spec.LifetimeOrDefault(),
	}, policy.Memberships(tok.Spec.Memberships)); err != nil {
		return nil, violationError(err)
	}
	return &iss, nil
}

// violationError prefixes a policy refusal with the spec field it is about; a refused
// membership is named by its index.
func violationError(err error) error {
	var mv *policy.MembershipViolation
	if errors.As(err, &mv) {
		return fmt.Errorf("spec.memberships[%d].%s: %w", mv.Index, strings.TrimPrefix(fieldOf(mv.Violation), "spec."), mv.Violation)
	}
	return fmt.Errorf("%s: %w", fieldOf(err), err)
}

// fieldOf names the spec field a policy violation is about, so the message points at it.
func fieldOf(err error) string {
	var v *policy.Violation
	if !errors.As(err, &v) {
		return "spec"
	}
	switch v.Rule {
	case policy.RuleTenantNamespace:
		return "spec.tenant"
	case policy.RuleUnknownRole, policy.RuleMaxRole:
		return "spec.role"
	case policy.RuleMaxLifetime:
		return "spec.lifetime"
	default:
		return "spec.issuerRef.name"
	}
}
