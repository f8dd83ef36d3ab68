package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SigningAlgorithm is the JWS algorithm of an issuer's signing keys.
// +kubebuilder:validation:Enum=ES256;EdDSA;RS256
type SigningAlgorithm string

const (
	// AlgorithmES256 is ECDSA on P-256 with SHA-256: small keys, fast, widely verified.
	AlgorithmES256 SigningAlgorithm = "ES256"
	// AlgorithmEdDSA is Ed25519.
	AlgorithmEdDSA SigningAlgorithm = "EdDSA"
	// AlgorithmRS256 is RSASSA-PKCS1-v1_5 with SHA-256 and 2048-bit keys, for
	// verifiers that know nothing else.
	AlgorithmRS256 SigningAlgorithm = "RS256"
)

// SigningSpec says how tokens are signed.
// +kubebuilder:validation:XValidation:rule="!has(self.publishBefore) || !has(self.keyRotationInterval) || duration(self.publishBefore) < duration(self.keyRotationInterval)",message="publishBefore must be shorter than keyRotationInterval",fieldPath=".publishBefore"
type SigningSpec struct {
	// algorithm of the signing keys: ES256, EdDSA or RS256. A change rotates to a key
	// of the new algorithm, published publishBefore ahead like any new key; tokens
	// signed with the old key stay valid until they expire.
	// +optional
	// +kubebuilder:default=ES256
	Algorithm SigningAlgorithm `json:"algorithm,omitempty"`

	// keyRotationInterval is how long each signing key signs before the next one
	// replaces it, at least 1h. Default 2160h (90 days).
	// +optional
	// +kubebuilder:default="2160h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="keyRotationInterval must be at least 1h"
	KeyRotationInterval metav1.Duration `json:"keyRotationInterval,omitzero"`

	// publishBefore is how long a new key is published in the JWKS before it signs,
	// so that verifiers holding a cached JWKS have fetched it by the time tokens
	// signed with it reach them: at least the validator's JWKS max-age (60s) plus
	// the workload middleware's refresh floor (30s) plus clock skew. Shorter than
	// keyRotationInterval. 0s signs with a new key the moment it is published. A
	// lost, missing or compromised key is replaced at once regardless. Default 5m.
	// +optional
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	PublishBefore *metav1.Duration `json:"publishBefore,omitempty"`
}

// Role is a named role and the roles it includes.
type Role struct {
	// name of the role, a DNS label.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// includes names the roles this role grants as well: a token with role "admin"
	// that includes "editor" passes a check that requires "editor". Inclusion is
	// transitive and may not form a cycle.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=63
	Includes []string `json:"includes,omitempty"`
}

// Tenant says which namespaces may mint tokens for a tenant, and up to which role.
type Tenant struct {
	// name of the tenant, a DNS label.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// namespaces that may mint tokens for this tenant.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	Namespaces []string `json:"namespaces"`

	// maxRole is the highest role these namespaces may mint for the tenant: that role
	// and the roles it includes. Default: any role.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	MaxRole string `json:"maxRole,omitempty"`
}

// ExchangeSpec is an issuer's policy for token exchange (RFC 8693): a token of this
// issuer, presented to the apitoken-exchange service, buys a shorter-lived JWT that
// may only narrow it and is accepted only while its parent is.
// +kubebuilder:validation:XValidation:rule="duration(self.defaultLifetime) <= duration(self.maxLifetime)",message="exchange.defaultLifetime may not exceed exchange.maxLifetime"
// Both flags are omitted when false, so the rule must not read one that is absent.
// +kubebuilder:validation:XValidation:rule="!has(self.requireSubTenant) || !self.requireSubTenant || (has(self.requireTenant) && self.requireTenant)",message="exchange.requireSubTenant needs exchange.requireTenant"
type ExchangeSpec struct {
	// enabled lets tokens of this issuer be exchanged. Default false: an issuer
	// issues on request only once its owner says so.
	// +optional
	Enabled bool `json:"enabled,omitempty"`

	// defaultLifetime of an exchanged token whose request names none, at least 10s.
	// Default 600s.
	// +optional
	// +kubebuilder:default="600s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s')",message="exchange.defaultLifetime must be at least 10s"
	DefaultLifetime metav1.Duration `json:"defaultLifetime,omitzero"`

	// maxLifetime is the longest lifetime an exchange may ask for, at least 10s and at
	// most the issuer's maxLifetime. An exchanged token never outlives its parent
	// either. Default 24h.
	// +optional
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s')",message="exchange.maxLifetime must be at least 10s"
	MaxLifetime metav1.Duration `json:"maxLifetime,omitzero"`

	// requireTenant makes every exchange name its tenant: a request without one is
	// refused with 400 "Tenant ID is required", so a client cannot forget which
	// tenant it acts for.
	// +optional
	RequireTenant bool `json:"requireTenant,omitempty"`

	// requireSubTenant makes every exchange name its sub-tenant as well.
	// +optional
	RequireSubTenant bool `json:"requireSubTenant,omitempty"`

	// allowSubTenantSelection lets a token bound to no sub-tenant exchange into one
	// bound to the sub-tenant the request names. A token bound to a sub-tenant can
	// only keep it.
	// +optional
	AllowSubTenantSelection bool `json:"allowSubTenantSelection,omitempty"`

	// audiences an exchanged token may carry besides its parent's.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	Audiences []string `json:"audiences,omitempty"`

	// ratePerMinute bounds the exchanges per parent token and minute, on each
	// replica of the exchange service; 0 means no limit. Default 60.
	// +optional
	// +kubebuilder:default=60
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	RatePerMinute int32 `json:"ratePerMinute"`

	// maxDepth is how long a chain of exchanges may grow: 1 lets only listed tokens
	// be exchanged, 2 lets their exchanged tokens be exchanged once more, and so on.
	// Default 4.
	// +optional
	// +kubebuilder:default=4
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=8
	MaxDepth int32 `json:"maxDepth,omitempty"`
}

// ClusterTokenIssuerSpec holds how tokens are signed and the policy of who may mint what.
// +kubebuilder:validation:XValidation:rule="!has(self.roles) || self.roles.all(r, !has(r.includes) || r.includes.all(i, self.roles.exists(x, x.name == i)))",message="roles[].includes may only name roles of this issuer",fieldPath=".roles"
// +kubebuilder:validation:XValidation:rule="!has(self.roles) || self.roles.all(r, !has(r.includes) || !(r.name in r.includes))",message="a role may not include itself",fieldPath=".roles"
// +kubebuilder:validation:XValidation:rule="!has(self.tenants) || self.tenants.all(t, !has(t.maxRole) || (has(self.roles) && self.roles.exists(x, x.name == t.maxRole)))",message="tenants[].maxRole must name one of the issuer's roles",fieldPath=".tenants"
// +kubebuilder:validation:XValidation:rule="!has(self.exchange) || !has(self.maxLifetime) || duration(self.exchange.maxLifetime) <= duration(self.maxLifetime)",message="exchange.maxLifetime may not exceed maxLifetime",fieldPath=".exchange.maxLifetime"
type ClusterTokenIssuerSpec struct {
	// issuer is the "iss" claim of the JWTs this issuer signs, a URL.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (url(self).getScheme() == 'https' || url(self).getScheme() == 'http')",message="issuer must be an http or https URL"
	Issuer string `json:"issuer"`

	// audiences are the default "aud" of the tokens, for APITokens that name none.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	Audiences []string `json:"audiences,omitempty"`

	// signing says how tokens are signed.
	// +optional
	// +kubebuilder:default={algorithm: ES256}
	Signing SigningSpec `json:"signing,omitzero"`

	// defaultFormat of the tokens of APITokens that name no format: JWT or Opaque.
	// +optional
	// +kubebuilder:default=JWT
	DefaultFormat TokenFormat `json:"defaultFormat,omitempty"`

	// opaquePrefix starts every Opaque token, so secret scanners can find leaked ones:
	// 1 to 16 lowercase letters and digits, starting with a letter.
	// +optional
	// +kubebuilder:default=apt
	// +kubebuilder:validation:Pattern=`^[a-z][a-z0-9]{0,15}$`
	OpaquePrefix string `json:"opaquePrefix,omitempty"`

	// maxLifetime is the longest lifetime an APIToken may ask for, at least 1m.
	// Default 8760h (a year). Public keys stay published this long after they stopped
	// signing.
	// +optional
	// +kubebuilder:default="8760h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="maxLifetime must be at least 1m"
	MaxLifetime metav1.Duration `json:"maxLifetime,omitzero"`

	// roles that tokens may carry, and the roles each includes.
	// Default: viewer; editor, which includes viewer; admin, which includes editor.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:default={{name: viewer}, {name: editor, includes: {viewer}}, {name: admin, includes: {editor}}}
	Roles []Role `json:"roles,omitempty"`

	// tenants says which namespaces may mint tokens for which tenant. Without a
	// tenants list, a namespace may mint only for the tenant named like itself.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=256
	Tenants []Tenant `json:"tenants,omitempty"`

	// requireMintPermission makes the admission webhook ask the API server, with a
	// SubjectAccessReview, whether whoever creates or changes an APIToken of this
	// issuer may mint each of its roles (verb "mint" on resource "roles" of group
	// tokens.apitoken.dev, the role as resourceName, in the APIToken's namespace) and
	// patch each of its rolloutRestartTargets, the way RBAC checks "bind" on
	// RoleBindings. Default false: whoever may create APITokens in a namespace may
	// mint every role the tenants policy allows there.
	// +optional
	RequireMintPermission bool `json:"requireMintPermission,omitempty"`

	// exchange is the policy of the token exchange service for this issuer's tokens:
	// whether they may be exchanged, for how long and how narrowly.
	// Default: exchange disabled.
	// +optional
	Exchange *ExchangeSpec `json:"exchange,omitempty"`
}

// JSONWebKey is a public key in JWK form (RFC 7517). It never holds private material.
type JSONWebKey struct {
	// kty is the key type: EC, OKP or RSA.
	Kty string `json:"kty"`
	// kid is the key ID, the RFC 7638 thumbprint of the key.
	Kid string `json:"kid"`
	// alg is the JWS algorithm the key is used with.
	Alg string `json:"alg"`
	// use is "sig".
	// +optional
	Use string `json:"use,omitempty"`
	// crv is the curve, for EC and OKP keys.
	// +optional
	Crv string `json:"crv,omitempty"`
	// x is the x coordinate (EC) or the public key (OKP), base64url.
	// +optional
	X string `json:"x,omitempty"`
	// y is the y coordinate, for EC keys, base64url.
	// +optional
	Y string `json:"y,omitempty"`
	// n is the RSA modulus, base64url.
	// +optional
	N string `json:"n,omitempty"`
	// e is the RSA public exponent, base64url.
	// +optional
	E string `json:"e,omitempty"`
}

// JSONWebKeySet is a set of public keys (RFC 7517).
type JSONWebKeySet struct {
	// keys of the set.
	// +listType=atomic
	Keys []JSONWebKey `json:"keys"`
}

// SigningKeyStatus records the life of one signing key.
type SigningKeyStatus struct {
	// keyID is the kid of the key.
	KeyID string `json:"keyID"`
	// algorithm of the key.
	Algorithm SigningAlgorithm `json:"algorithm"`
	// createdAt is when the key was generated and published in the JWKS.
	CreatedAt metav1.Time `json:"createdAt"`
	// activatedAt is when the key began to sign; unset for the next key, which is
	// published but does not sign yet. A key recorded without it began to sign when
	// it was created.
	// +optional
	ActivatedAt *metav1.Time `json:"activatedAt,omitempty"`
	// retiredAt is when the key stopped signing; unset for the current key.
	// +optional
	RetiredAt *metav1.Time `json:"retiredAt,omitempty"`
	// expiresAt is when the public key leaves the JWKS: retiredAt plus maxLifetime,
	// after which no token it signed can be valid.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
}

// ClusterTokenIssuerStatus is what the operator observed and did.
type ClusterTokenIssuerStatus struct {
	// conditions: Ready (a current signing key is published), Stalled, KeysLost,
	// KeysWithdrawn.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec the last successful pass served.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// jwks holds the public keys of the tokens that can still be valid: the current
	// key, the next one (published before it signs) and the retired ones still needed.
	// +optional
	JWKS *JSONWebKeySet `json:"jwks,omitempty"`

	// currentKeyID is the kid of the key new tokens are signed with.
	// +optional
	CurrentKeyID string `json:"currentKeyID,omitempty"`

	// nextKeyID is the kid of the key that replaces the current one at
	// nextRotationTime: published in the JWKS already, signing nothing yet.
	// +optional
	NextKeyID string `json:"nextKeyID,omitempty"`

	// keys records when each published key was created, began to sign and was
	// retired: the current key first, then the next key, then the retired ones,
	// newest first.
	// +optional
	// +listType=map
	// +listMapKey=keyID
	Keys []SigningKeyStatus `json:"keys,omitempty"`

	// nextRotationTime is when the current key will be replaced.
	// +optional
	NextRotationTime *metav1.Time `json:"nextRotationTime,omitempty"`

	// keySecretName is the Secret, in the operator's namespace, holding the private keys.
	// +optional
	KeySecretName string `json:"keySecretName,omitempty"`

	// lastRotateKeyRequest is the last value of the apitoken.dev/rotate-key
	// annotation that was served.
	// +optional
	LastRotateKeyRequest string `json:"lastRotateKeyRequest,omitempty"`

	// lastWithdrawal records the last rotation for a compromised key: the keys it
	// withdrew and how far the re-minting of the tokens they signed has come.
	// +optional
	LastWithdrawal *KeyWithdrawal `json:"lastWithdrawal,omitempty"`
}

// KeyWithdrawal records a rotation for a compromised key.
type KeyWithdrawal struct {
	// keyIDs are the keys withdrawn: every key the key Secret held.
	// +listType=atomic
	KeyIDs []string `json:"keyIDs"`
	// withdrawnAt is when they left the JWKS.
	WithdrawnAt metav1.Time `json:"withdrawnAt"`
	// tokens is how many APITokens held a JWT signed with a withdrawn key then.
	Tokens int32 `json:"tokens"`
	// remaining is how many of them still do: the re-minting is done at 0.
	Remaining int32 `json:"remaining"`
}

// ClusterTokenIssuer holds the signing keys and the policy of who may mint what.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=cti,categories=apitoken-operator
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Issuer",type=string,JSONPath=`.spec.issuer`
// +kubebuilder:printcolumn:name="Algorithm",type=string,JSONPath=`.spec.signing.algorithm`
// +kubebuilder:printcolumn:name="Key",type=string,JSONPath=`.status.currentKeyID`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterTokenIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec holds the signing configuration and the policy.
	// +required
	Spec ClusterTokenIssuerSpec `json:"spec"`

	// status is what the operator observed and did.
	// +optional
	Status ClusterTokenIssuerStatus `json:"status,omitempty"`
}

// ClusterTokenIssuerList is a list of ClusterTokenIssuers.
//
// +kubebuilder:object:root=true
type ClusterTokenIssuerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterTokenIssuer `json:"items"`
}
