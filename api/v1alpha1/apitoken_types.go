package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TokenFormat is the wire format of a minted token.
// +kubebuilder:validation:Enum=JWT;Opaque
type TokenFormat string

const (
	// FormatJWT is a JWT signed with the issuer's current key; it can be verified
	// offline against the issuer's JWKS.
	FormatJWT TokenFormat = "JWT"
	// FormatOpaque is "<prefix>_<tokenID>_<secret><checksum>"; only a hash of the
	// secret is stored, and only the validator can check it.
	FormatOpaque TokenFormat = "Opaque"
)

// RotationPolicy says whether the operator replaces a token before it expires.
// +kubebuilder:validation:Enum=Auto;Disabled
type RotationPolicy string

const (
	// RotationAuto mints a new token at renewalTime.
	RotationAuto RotationPolicy = "Auto"
	// RotationDisabled lets the token expire; the APIToken then reports Expired.
	RotationDisabled RotationPolicy = "Disabled"
)

// DeletionPolicy says what happens to the token Secret when its APIToken goes.
// +kubebuilder:validation:Enum=Delete;Retain
type DeletionPolicy string

const (
	// DeletionDelete deletes the Secret.
	DeletionDelete DeletionPolicy = "Delete"
	// DeletionRetain keeps the Secret but removes the token from it.
	DeletionRetain DeletionPolicy = "Retain"
)

// IssuerReference names a ClusterTokenIssuer.
type IssuerReference struct {
	// name of the ClusterTokenIssuer.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Name string `json:"name"`
}

// RotationSpec says when a token is replaced and how long the replaced one lives on.
type RotationSpec struct {
	// policy is Auto (rotate at renewalTime) or Disabled (let the token expire).
	// +optional
	// +kubebuilder:default=Auto
	Policy RotationPolicy `json:"policy,omitempty"`

	// renewBefore is how long before expiry a new token is minted. It must be shorter
	// than lifetime. Default: a third of lifetime, so tokens rotate at 2/3 of their
	// life. Values under 2m leave pods too little time to pick up the new token and
	// are reported with a warning.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`

	// gracePeriod is how long the previous token stays valid after a rotation. It may
	// not exceed lifetime. Default: until the previous token's own expiry. Values under
	// 2m are shorter than the kubelet takes to refresh a mounted Secret and are
	// reported with a warning.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	GracePeriod *metav1.Duration `json:"gracePeriod,omitempty"`
}

// SecretTemplate holds metadata added to the token Secret.
type SecretTemplate struct {
	// labels added to the Secret. Keys with the apitoken.dev/ prefix are reserved.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('apitoken.dev/'))",message="labels with the apitoken.dev/ prefix are reserved for the operator"
	Labels map[string]string `json:"labels,omitempty"`

	// annotations added to the Secret.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	Annotations map[string]string `json:"annotations,omitempty"`
}

// SecretSpec says where the token is written.
type SecretSpec struct {
	// name of the Secret, in the APIToken's namespace. Default: the APIToken's name.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Name string `json:"name,omitempty"`

	// template holds labels and annotations for the Secret.
	// +optional
	Template *SecretTemplate `json:"template,omitempty"`

	// deletionPolicy is Delete (delete the Secret when the APIToken is deleted or
	// revoked) or Retain (keep the Secret, emptied of its token).
	// +optional
	// +kubebuilder:default=Delete
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// RolloutRestartTarget names a workload in the APIToken's namespace whose pods are
// restarted (by a pod-template annotation bump) after the token Secret changed.
type RolloutRestartTarget struct {
	// kind of the workload.
	// +required
	// +kubebuilder:validation:Enum=Deployment;StatefulSet;DaemonSet
	Kind string `json:"kind"`

	// name of the workload.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// Membership is one tenant a multi-tenant token is a member of, and what it may do
// there.
type Membership struct {
	// tenant of the membership, a DNS label. The issuer's policy must allow the
	// APIToken's namespace to mint for it, as for spec.tenant.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Tenant string `json:"tenant"`

	// subTenant narrows the membership to a sub-tenant, a DNS label.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	SubTenant string `json:"subTenant,omitempty"`

	// role the token holds in this tenant, a DNS label; one of the issuer's roles,
	// within the tenant's maxRole.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Role string `json:"role"`
}

// APITokenSpec declares a token: who it is for, what it may do, and how long it lives.
// +kubebuilder:validation:XValidation:rule="has(self.memberships) || has(self.tenant)",message="tenant is required, unless memberships is set",fieldPath=".tenant",reason=FieldValueRequired
// +kubebuilder:validation:XValidation:rule="has(self.memberships) || has(self.role)",message="role is required, unless memberships is set",fieldPath=".role",reason=FieldValueRequired
// +kubebuilder:validation:XValidation:rule="!has(self.memberships) || (!has(self.tenant) && !has(self.subTenant) && !has(self.role))",message="memberships replaces tenant, subTenant and role: set either memberships, or tenant and role",fieldPath=".memberships"
// +kubebuilder:validation:XValidation:rule="!has(self.rotation) || !has(self.rotation.renewBefore) || duration(self.rotation.renewBefore) < duration(self.lifetime)",message="rotation.renewBefore must be shorter than lifetime",fieldPath=".rotation.renewBefore"
// +kubebuilder:validation:XValidation:rule="!has(self.rotation) || !has(self.rotation.gracePeriod) || duration(self.rotation.gracePeriod) <= duration(self.lifetime)",message="rotation.gracePeriod may not be longer than lifetime",fieldPath=".rotation.gracePeriod"
type APITokenSpec struct {
	// issuerRef names the ClusterTokenIssuer that signs the token and whose policy
	// decides whether it may be minted.
	// +optional
	// +kubebuilder:default={name: default}
	IssuerRef IssuerReference `json:"issuerRef,omitzero"`

	// tenant the token belongs to, a DNS label. Without a tenants list in the issuer,
	// it must equal the namespace's name. Required unless memberships is set.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Tenant string `json:"tenant,omitempty"`

	// subTenant narrows the tenant (a team, an environment), a DNS label. It is bound
	// into the token like the tenant.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	SubTenant string `json:"subTenant,omitempty"`

	// role granted to the token, a DNS label; one of the issuer's roles. Required
	// unless memberships is set.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Role string `json:"role,omitempty"`

	// memberships make the token a member of several tenants, each with its own
	// sub-tenant and role: the multi-tenant form of tenant, subTenant and role, which
	// must then be unset. A request names the tenant it acts for, and that tenant's
	// membership decides. At most 32, each tenant at most once.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:XValidation:rule="self.all(m, self.exists_one(n, n.tenant == m.tenant))",message="memberships may name each tenant only once"
	Memberships []Membership `json:"memberships,omitempty"`

	// scopes are free-form strings carried in the token (the space-separated "scope"
	// claim), at most 32 of at most 128 printable characters without spaces.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^[!-~]+$`
	Scopes []string `json:"scopes,omitempty"`

	// audiences of the token (the "aud" claim). Default: the issuer's audiences.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	Audiences []string `json:"audiences,omitempty"`

	// format of the token: JWT or Opaque. Default: the issuer's defaultFormat.
	// +optional
	Format TokenFormat `json:"format,omitempty"`

	// lifetime of each minted token, at least 1m and at most the issuer's
	// maxLifetime. Default 720h.
	// +optional
	// +kubebuilder:default="720h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="lifetime must be at least 1m"
	Lifetime metav1.Duration `json:"lifetime,omitzero"`

	// rotation says when the token is replaced and how long the previous one lives on.
	// +optional
	Rotation *RotationSpec `json:"rotation,omitempty"`

	// revoked, when true, revokes every token of this APIToken at once and deletes
	// (or, with deletionPolicy Retain, empties) its Secret. The object stays as an
	// audit trail. Setting it back to false mints a new token.
	// +optional
	Revoked bool `json:"revoked,omitempty"`

	// secret says where the token is written.
	// +optional
	Secret *SecretSpec `json:"secret,omitempty"`

	// rolloutRestartTargets are workloads restarted after the token Secret changed,
	// for applications that read the token only at start.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	RolloutRestartTargets []RolloutRestartTarget `json:"rolloutRestartTargets,omitempty"`

	// description says what the token is for, for humans.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Description string `json:"description,omitempty"`
}

// TokenClaims is what a minted token grants, as it was minted.
type TokenClaims struct {
	// tenant bound into the token; empty for a multi-tenant token.
	// +optional
	Tenant string `json:"tenant,omitempty"`
	// subTenant bound into the token.
	// +optional
	SubTenant string `json:"subTenant,omitempty"`
	// role granted by the token; empty for a multi-tenant token.
	// +optional
	Role string `json:"role,omitempty"`
	// memberships of a multi-tenant token, in the order of their tenants' names.
	// +optional
	// +listType=atomic
	Memberships []Membership `json:"memberships,omitempty"`
	// scopes carried by the token.
	// +optional
	// +listType=atomic
	Scopes []string `json:"scopes,omitempty"`
	// audiences of the token.
	// +optional
	// +listType=atomic
	Audiences []string `json:"audiences,omitempty"`
}

// IssuedToken records one minted token without its secret: enough for the validator
// to recognise it and for humans to audit it.
type IssuedToken struct {
	// tokenID is the token's public ID (the JWT jti). Safe to log.
	TokenID string `json:"tokenID"`
	// format of the token.
	Format TokenFormat `json:"format"`
	// tokenHash is, for Opaque tokens, "sha256:<hex>" of the secret part: what the
	// validator checks opaque tokens against. Never the secret itself.
	// +optional
	TokenHash string `json:"tokenHash,omitempty"`
	// signingKeyID is, for JWTs, the kid of the issuer key that signed it.
	// +optional
	SigningKeyID string `json:"signingKeyID,omitempty"`
	// digest is, for JWTs, "sha256:<hex>" of the whole token as minted: the
	// validator accepts this exact token for the record and nothing re-signed
	// from it, whatever claim it changes. Not secret: the token cannot be
	// recovered from it.
	// +optional
	Digest string `json:"digest,omitempty"`
	// claims the token carries.
	Claims TokenClaims `json:"claims"`
	// issuedAt is when the token was minted.
	IssuedAt metav1.Time `json:"issuedAt"`
	// expiresAt is when the token expires.
	ExpiresAt metav1.Time `json:"expiresAt"`
	// retireAt is, for a previous token, when it stops being accepted: the end of its
	// grace period, never later than expiresAt.
	// +optional
	RetireAt *metav1.Time `json:"retireAt,omitempty"`
}

// APITokenStatus is what the operator observed and did.
type APITokenStatus struct {
	// conditions: Ready (a valid token is in the Secret), Revoked, Expired, Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec the last successful pass served.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// current is the token the Secret holds, in the same shape as previousTokens.
	// +optional
	Current *IssuedToken `json:"current,omitempty"`

	// renewalTime is when the current token will be rotated.
	// +optional
	RenewalTime *metav1.Time `json:"renewalTime,omitempty"`

	// previousTokens are rotated-out tokens still accepted until their retireAt.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	PreviousTokens []IssuedToken `json:"previousTokens,omitempty"`

	// rotations counts the tokens minted after the first one.
	// +optional
	Rotations int64 `json:"rotations,omitempty"`

	// secretName is the Secret the token is written to.
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// lastRotateRequest is the last value of the apitoken.dev/rotate annotation that
	// was served.
	// +optional
	LastRotateRequest string `json:"lastRotateRequest,omitempty"`

	// lastUsedTime is when the validator last accepted one of this APIToken's tokens,
	// reported at most once a minute.
	// +optional
	LastUsedTime *metav1.Time `json:"lastUsedTime,omitempty"`
}

// APIToken is a declarative API token: the operator mints it into a Secret, rotates it
// before it expires, and revokes it when the object is revoked or deleted.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=apitok;apitoks,categories=apitoken-operator
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Tenant",type=string,JSONPath=`.spec.tenant`
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.spec.role`
// +kubebuilder:printcolumn:name="Format",type=string,JSONPath=`.status.current.format`
// +kubebuilder:printcolumn:name="Expires",type=string,format=date-time,JSONPath=`.status.current.expiresAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Memberships",type=string,JSONPath=`.spec.memberships[*].tenant`,priority=1
// +kubebuilder:printcolumn:name="Token ID",type=string,JSONPath=`.status.current.tokenID`,priority=1
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
type APIToken struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the token.
	// +required
	Spec APITokenSpec `json:"spec"`

	// status is what the operator observed and did.
	// +optional
	Status APITokenStatus `json:"status,omitempty"`
}

// APITokenList is a list of APITokens.
//
// +kubebuilder:object:root=true
type APITokenList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []APIToken `json:"items"`
}
