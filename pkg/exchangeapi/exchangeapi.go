// Package exchangeapi is the wire contract of the apitoken-exchange service: its
// paths, parameters, answers and error codes. The service and its clients
// (pkg/tokensource, the kubectl plugin) import it, so the two sides cannot drift. It
// imports nothing of Kubernetes.
//
// Two request styles reach the same decision:
//   - POST PathOAuthToken, OAuth 2.0 Token Exchange (RFC 8693): a form with
//     grant_type GrantTypeTokenExchange and the token in subject_token; answers
//     TokenExchangeResponse, errors OAuthError.
//   - GET PathToken, for simple clients: the token where the validator reads it
//     (Authorization: Bearer, a token header, or an ID and secret header pair), the
//     narrowing in query parameters; answers TokenResponse, errors Error.
package exchangeapi

import (
	"time"

	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// Paths the exchange service answers.
const (
	PathOAuthToken = "/oauth2/token"
	PathToken      = "/v1/token"
)

// RFC 8693 identifiers.
const (
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
)

// Form parameters of PathOAuthToken: RFC 8693's, then this service's extensions.
const (
	ParamGrantType          = "grant_type"
	ParamSubjectToken       = "subject_token"
	ParamSubjectTokenType   = "subject_token_type"
	ParamRequestedTokenType = "requested_token_type"
	ParamAudience           = "audience"
	ParamScope              = "scope"
	ParamResource           = "resource"
	ParamActorToken         = "actor_token"
	ParamExpiresIn          = "expires_in"
	ParamTenant             = "tenant"
	ParamSubTenant          = "sub_tenant"
	ParamRole               = "role"
)

// ParamExpiration is PathToken's lifetime parameter, in seconds. PathToken takes
// ParamTenant, ParamSubTenant, ParamRole, ParamScope and ParamAudience too.
const ParamExpiration = "expiration"

// Default headers of the tenant and sub-tenant of a PathToken request, as partner
// APIs send them, the same the validator reads; the service's --tenant-header and
// --sub-tenant-header rename them.
const (
	DefaultTenantHeader    = validatorapi.DefaultTenantHeader
	DefaultSubTenantHeader = validatorapi.DefaultSubTenantHeader
)

// TokenExchangeResponse is the answer of PathOAuthToken (RFC 8693 §2.2.1).
type TokenExchangeResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope,omitempty"`
}

// OAuthError is an error of PathOAuthToken (RFC 6749 §5.2).
type OAuthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// Error codes of OAuthError.
const (
	OAuthInvalidRequest       = "invalid_request"
	OAuthInvalidGrant         = "invalid_grant"
	OAuthInvalidTarget        = "invalid_target"
	OAuthInvalidScope         = "invalid_scope"
	OAuthUnauthorizedClient   = "unauthorized_client"
	OAuthUnsupportedGrantType = "unsupported_grant_type"
	OAuthSlowDown             = "slow_down"
	OAuthTemporarilyUnavail   = "temporarily_unavailable"
	OAuthServerError          = "server_error"
)

// TokenResponse is the answer of PathToken.
type TokenResponse struct {
	Token     string    `json:"token"`
	TokenID   string    `json:"tokenID"`
	ExpiresAt time.Time `json:"expiresAt"`
	// ExpiresIn is the lifetime in whole seconds.
	ExpiresIn int64 `json:"expiresIn"`
}

// Error is an error of PathToken: a stable CamelCase code (the validator's refusal
// reasons, the policy's rule names, or one of the codes below) and a sentence saying
// what is wrong, safe to show. It is the validator's JSON error, so that a client
// reads both services' refusals alike.
type Error = validatorapi.Error

// Codes of Error besides refusal reasons and policy rules.
const (
	CodeInvalidParameter = "InvalidParameter"
	CodeRateLimited      = "RateLimited"
	CodeUnavailable      = validatorapi.ReasonUnavailable
)
