package v1alpha1

import "time"

// Defaults the API server applies from markers, repeated here for objects that did not
// pass through it (tests, dry runs, objects built in code) and for the readers that
// must agree with it. Each has one home: read it through these functions.
const (
	// DefaultIssuerName is the ClusterTokenIssuer an APIToken uses when it names none.
	DefaultIssuerName = "default"
	// DefaultOpaquePrefix starts Opaque tokens of an issuer that names no prefix
	// (+kubebuilder:default on ClusterTokenIssuerSpec.OpaquePrefix).
	DefaultOpaquePrefix = "apt"
	// DefaultLifetime is the lifetime of each token of an APIToken that names none
	// (+kubebuilder:default on APITokenSpec.Lifetime).
	DefaultLifetime = 720 * time.Hour
	// DefaultPublishBefore is how long a new signing key of an issuer that names
	// none is published before it signs (+kubebuilder:default on
	// SigningSpec.PublishBefore).
	DefaultPublishBefore = 5 * time.Minute
)

// IssuerName is the ClusterTokenIssuer the APIToken names, or the default one.
func (s *APITokenSpec) IssuerName() string {
	if s.IssuerRef.Name != "" {
		return s.IssuerRef.Name
	}
	return DefaultIssuerName
}

// OpaquePrefixOrDefault is the prefix of the issuer's Opaque tokens.
func (s *ClusterTokenIssuerSpec) OpaquePrefixOrDefault() string {
	if s.OpaquePrefix != "" {
		return s.OpaquePrefix
	}
	return DefaultOpaquePrefix
}

// LifetimeOrDefault is the lifetime of each token the APIToken mints: what the
// issuer's maxLifetime is checked against, at admission and at mint time alike.
func (s *APITokenSpec) LifetimeOrDefault() time.Duration {
	if s.Lifetime.Duration > 0 {
		return s.Lifetime.Duration
	}
	return DefaultLifetime
}

// PublishBeforeOrDefault is how long a new signing key is published before it
// signs. A negative value, which the API refuses, gets the default.
func (s *SigningSpec) PublishBeforeOrDefault() time.Duration {
	if s.PublishBefore != nil && s.PublishBefore.Duration >= 0 {
		return s.PublishBefore.Duration
	}
	return DefaultPublishBefore
}
