package v1alpha1

// Labels, annotations and the Secret type that the operator reads and writes.
const (
	// ManagedByLabel marks the Secrets the operator writes. The manager caches only
	// Secrets that carry it, so unrelated Secrets cost it no memory.
	ManagedByLabel = "apitoken.dev/managed-by"
	// ManagedByValue is the value of ManagedByLabel.
	ManagedByValue = "apitoken-operator"

	// RotateAnnotation requests an immediate rotation: every new value rotates once.
	RotateAnnotation = "apitoken.dev/rotate"
	// RetirePreviousAnnotation, set to "true" together with a new RotateAnnotation
	// value, retires every previous token at once instead of after its grace period:
	// the answer to a leaked token.
	RetirePreviousAnnotation = "apitoken.dev/retire-previous"
	// RotateKeyAnnotation on a ClusterTokenIssuer requests a new signing key now:
	// every new value makes one, published publishBefore ahead of signing like a
	// scheduled one.
	RotateKeyAnnotation = "apitoken.dev/rotate-key"
	// KeyCompromisedAnnotation, set to "true" together with a new
	// RotateKeyAnnotation value, treats every key of the issuer as leaked: they
	// leave the JWKS at once, a new key signs at once, and every token signed with
	// a withdrawn key is re-minted.
	KeyCompromisedAnnotation = "apitoken.dev/key-compromised"
	// RestartedAtAnnotation is bumped on the pod templates of rolloutRestartTargets
	// after the token Secret changed.
	RestartedAtAnnotation = "apitoken.dev/restartedAt"

	// CreatedByAnnotation holds the user (or ServiceAccount) who created the APIToken.
	// The admission webhook sets it on create and keeps it on every update, so that
	// nobody can write or change it.
	CreatedByAnnotation = "apitoken.dev/created-by"

	// TokenSecretType is the type of the Secrets holding minted tokens.
	TokenSecretType = "apitoken.dev/token"
	// SigningKeySecretType is the type of the Secrets holding an issuer's private keys.
	SigningKeySecretType = "apitoken.dev/signing-keys"

	// Keys of a token Secret.
	SecretKeyToken     = "token"
	SecretKeyTokenID   = "tokenID"
	SecretKeyExpiresAt = "expiresAt"
	SecretKeyTenant    = "tenant"
	SecretKeyRole      = "role"
	// SecretKeyMemberships replaces tenant and role in the Secret of a multi-tenant
	// token: its memberships as a JSON array of {tenant, subTenant, role}.
	SecretKeyMemberships = "memberships"
)

// What an issuer that requires mint permission asks RBAC (spec.requireMintPermission):
// may the requester use verb MintVerb on resource MintResource of this API group, with
// the role as resourceName, in the APIToken's namespace? MinterClusterRolePrefix names
// the ClusterRoles the install ships for the default roles, apitoken-minter-<role>.
const (
	MintVerb                = "mint"
	MintResource            = "roles"
	MinterClusterRolePrefix = "apitoken-minter-"
)

// Condition types shared by both kinds. Ready is the summary, kstatus-compatible.
const (
	// ConditionReady is True when the object is fully served: for an APIToken, its
	// Secret holds a valid token; for an issuer, a current signing key is published.
	ConditionReady = "Ready"
	// ConditionStalled is True when the spec cannot be served as written. Nothing is
	// retried until the object (or, for a token, its issuer) changes.
	ConditionStalled = "Stalled"
	// ConditionRevoked is True once an APIToken is revoked: none of its tokens is valid.
	ConditionRevoked = "Revoked"
	// ConditionExpired is True when an APIToken with rotation disabled has run out.
	ConditionExpired = "Expired"
	// ConditionKeysLost is True when an issuer's private keys disappeared and tokens
	// signed with them had to be re-minted.
	ConditionKeysLost = "KeysLost"
	// ConditionKeysWithdrawn is True once a rotation for a compromised key withdrew
	// the issuer's keys; its message counts the tokens re-minted since.
	ConditionKeysWithdrawn = "KeysWithdrawn"
)

// Condition reasons.
const (
	ReasonMinted           = "Minted"
	ReasonRotated          = "Rotated"
	ReasonRevoked          = "Revoked"
	ReasonExpired          = "Expired"
	ReasonPolicyViolation  = "PolicyViolation"
	ReasonIssuerNotFound   = "IssuerNotFound"
	ReasonIssuerNotReady   = "IssuerNotReady"
	ReasonSecretConflict   = "SecretConflict"
	ReasonSecretRepaired   = "SecretRepaired"
	ReasonShortGracePeriod = "ShortGracePeriod"
	ReasonProgressing      = "Progressing"
	ReasonInvalidSpec      = "InvalidSpec"
	ReasonKeyGenerated     = "KeyGenerated"
	ReasonKeyRotated       = "KeyRotated"
	ReasonKeysLost         = "KeysLost"
	ReasonKeysIntact       = "KeysIntact"
	ReasonKeyPublished     = "KeyPublished"
	ReasonKeysWithdrawn    = "KeysWithdrawn"
	ReasonReminting        = "Reminting"
	ReasonReminted         = "Reminted"
	ReasonActive           = "Active"
	// ReasonNotRevoked and ReasonNotExpired are of the Revoked=False and
	// Expired=False conditions earlier versions set on every APIToken; the controller
	// now sets those conditions only while True, and drops a False one with the next
	// status write it makes anyway.
	ReasonNotRevoked = "NotRevoked"
	ReasonNotExpired = "NotExpired"
)
