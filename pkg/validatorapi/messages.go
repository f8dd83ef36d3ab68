package validatorapi

import (
	"encoding/json"
	"time"
)

// ValidateRequest is the body of POST PathValidate. A body with any other field, or
// with anything after the object, is refused (400): a requirement under a mistyped
// name must not pass as a request that requires nothing.
type ValidateRequest struct {
	Token string `json:"token"`
	Requirement
}

// ValidateResponse is the answer of POST PathValidate: the decision PathAuthorize
// makes, as JSON. It comes with HTTP 200 whatever the decision, except 400 for a body
// that is not a ValidateRequest and 429 (with Retry-After) when rate limited.
type ValidateResponse struct {
	Allowed bool   `json:"allowed"`
	Status  int    `json:"status"`
	Reason  string `json:"reason"`
	// Message is the reason's description; empty when allowed.
	Message string `json:"message,omitempty"`
	// Identity is set once the token was authenticated, also when it was then
	// refused a tenant or role.
	Identity *IdentityResponse `json:"identity,omitempty"`
}

// IdentityResponse is the identity of an authenticated token.
type IdentityResponse struct {
	TokenID   string `json:"tokenID"`
	Format    string `json:"format"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
	// Subject is "apitoken:<namespace>:<name>".
	Subject string `json:"subject"`
	// Issuer is the ClusterTokenIssuer's name.
	Issuer string `json:"issuer"`
	// Tenant, SubTenant and Role are, for a token of several tenants, those of the
	// membership the required tenant selected, and empty when none was selected.
	Tenant    string `json:"tenant"`
	SubTenant string `json:"subTenant,omitempty"`
	Role      string `json:"role"`
	// Roles are Role and every role it includes.
	Roles []string `json:"roles"`
	// Memberships are, for a token of several tenants, all of them.
	Memberships []Membership `json:"memberships,omitempty"`
	// CreatedBy is the user who created the token's APIToken, when it was recorded.
	CreatedBy string   `json:"createdBy,omitempty"`
	Scopes    []string `json:"scopes,omitempty"`
	Audiences []string `json:"audiences,omitempty"`
	// ExpiresAt is written in RFC 3339 in UTC to the second, null when zero: the
	// format of a Kubernetes metav1.Time, which the field was first.
	ExpiresAt time.Time `json:"expiresAt"`
	// ParentTokenID is set for a token issued by token exchange: the listed token
	// it descends from. TokenID is then the exchanged token's own.
	ParentTokenID string `json:"parentTokenID,omitempty"`
}

// MarshalJSON writes ExpiresAt as a Kubernetes time; time.Time alone would write
// nanoseconds and the local zone.
func (r IdentityResponse) MarshalJSON() ([]byte, error) {
	type fields IdentityResponse // without this method
	var exp *string
	if !r.ExpiresAt.IsZero() {
		s := r.ExpiresAt.UTC().Format(time.RFC3339)
		exp = &s
	}
	// The outer ExpiresAt is shallower than the embedded one, so it is the one written.
	return json.Marshal(struct {
		fields
		ExpiresAt *string `json:"expiresAt"`
	}{fields(r), exp})
}

// Error is the JSON body of a refusal, for clients that ask for JSON (Accept:
// application/json): PathAuthorize's refusals, pkg/middleware's, and the exchange's
// GET /v1/token errors. Error is a stable CamelCase word (one of the Reason words,
// or a code of the service that answered); Message is a sentence safe to show, which
// for a 429 says how many seconds to wait.
type Error struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}
