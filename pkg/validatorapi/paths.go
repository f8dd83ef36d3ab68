package validatorapi

// Paths of the validator's protocol.
const (
	// PathTokenReview is the kube-apiserver webhook token authenticator's endpoint:
	// authentication.k8s.io/v1 TokenReview in and out.
	PathTokenReview = "/apis/authentication.k8s.io/v1/tokenreviews"
	// PathAuthorize is forward auth for proxies: the requirement in the query or in
	// the HeaderRequired* headers, the identity in the HeaderToken* headers of a 200.
	PathAuthorize = "/authorize"
	// PathValidate takes a ValidateRequest and answers a ValidateResponse.
	PathValidate = "/v1/validate"
	// PathOIDC and PathJWKS publish an issuer's keys for offline verification; both
	// take ?issuer=<name or URL>.
	PathOIDC = "/.well-known/openid-configuration"
	PathJWKS = "/.well-known/jwks.json"
)

// Headers of PathAuthorize: what a proxy may require, and who the token is.
const (
	HeaderRequiredTenant    = "X-Required-Tenant"
	HeaderRequiredSubTenant = "X-Required-Sub-Tenant"
	HeaderRequiredRole      = "X-Required-Role"

	// DefaultTenantHeader and DefaultSubTenantHeader carry a tenant and sub-tenant
	// the way partner APIs send them (beside an API key and secret). The validator
	// reads them as requirements besides HeaderRequired*, and the exchange as the
	// tenant and sub-tenant asked for; --tenant-header and --sub-tenant-header rename
	// them.
	DefaultTenantHeader    = "X-Tenant-Id"
	DefaultSubTenantHeader = "X-Sub-Tenant-Id"

	HeaderTokenID        = "X-Token-Id"
	HeaderTokenTenant    = "X-Token-Tenant"
	HeaderTokenSubTenant = "X-Token-Sub-Tenant"
	HeaderTokenRole      = "X-Token-Role"
	HeaderTokenSubject   = "X-Token-Subject"
	// HeaderTokenScopes holds the scopes separated by spaces.
	HeaderTokenScopes = "X-Token-Scopes"
	// HeaderTokenParentID names, for a token issued by token exchange, the listed
	// token it descends from; X-Token-Id is then the exchanged token's own ID.
	HeaderTokenParentID = "X-Token-Parent-Id"
	// HeaderTokenMemberships lists, for a token of several tenants, every membership
	// (Membership.String), separated by commas. X-Token-Tenant, X-Token-Sub-Tenant and
	// X-Token-Role are then those of the membership the required tenant selected, and
	// absent when the request required nothing.
	HeaderTokenMemberships = "X-Token-Memberships"
)

// Headers a proxy or a service in front of the validator passes on about the request
// it is asking about: who sent it (believed only from the validator's
// --trusted-proxies), and the original method and URI, for the audit stream. nginx
// sends the X-Original-* pair when configured to; Traefik and Caddy's forward_auth
// send the X-Forwarded-* pair on their own.
const (
	HeaderForwardedFor    = "X-Forwarded-For"
	HeaderOriginalMethod  = "X-Original-Method"
	HeaderOriginalURI     = "X-Original-URI"
	HeaderForwardedMethod = "X-Forwarded-Method"
	HeaderForwardedURI    = "X-Forwarded-Uri"
)

// Keys of the user extra of a TokenReview the validator authenticated, and the
// prefixes of its groups: one group names the tenant, one each role granted.
const (
	ExtraTokenID   = "apitoken.dev/token-id"
	ExtraSubTenant = "apitoken.dev/sub-tenant"
	ExtraScopes    = "apitoken.dev/scopes"
	// ExtraParentTokenID names, for an exchanged token, the listed token it descends from.
	ExtraParentTokenID = "apitoken.dev/parent-token-id"
	// ExtraMemberships lists, for a token of several tenants, every membership
	// (Membership.String), sub-tenants included.
	ExtraMemberships = "apitoken.dev/memberships"

	GroupTenantPrefix = "apitoken:tenant:"
	GroupRolePrefix   = "apitoken:role:"
)

// GroupTenantRole is the group a token of several tenants gets for each role it holds
// in tenant, included roles too: "apitoken:tenant:<tenant>:role:<role>". Such a token
// gets the group GroupTenantPrefix+tenant of each of its tenants as well, but never
// GroupRolePrefix+role, which would not say in which tenant it holds the role.
func GroupTenantRole(tenant, role string) string {
	return GroupTenantPrefix + tenant + ":role:" + role
}
