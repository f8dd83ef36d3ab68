package validatorapi

import "time"

// AuditLine is one line of the validator's audit stream (--audit-log), written as
// JSON: one per decision, accepted ones too, or a summary of the refusals of one
// client that were not written one by one. It names the token by its ID and its
// APIToken, never by the token itself.
type AuditLine struct {
	Time time.Time `json:"time"`
	// Decision is AuditAllowed or AuditRefused.
	Decision string `json:"decision"`
	// Endpoint is authorize, validate or tokenreview.
	Endpoint string `json:"endpoint,omitempty"`
	// Status, Result and Reason are the answer: the HTTP status (for /v1/validate
	// and TokenReviews, the decision's), its class and its Reason word.
	Status int    `json:"status,omitempty"`
	Result string `json:"result,omitempty"`
	Reason string `json:"reason,omitempty"`
	// TokenID is the token's ID when known: a verified JWT's jti, or the ID an
	// opaque token carries (which anyone can write, so on a refusal it names the
	// token tried, not a proven holder).
	TokenID string `json:"tokenID,omitempty"`
	// ParentTokenID is, for an exchanged token, the listed token it descends from.
	ParentTokenID string `json:"parentTokenID,omitempty"`
	// APIToken is "<namespace>/<name>" of the token's APIToken, once authenticated.
	APIToken string `json:"apiToken,omitempty"`
	// Tenant, SubTenant and Role are what the authenticated token grants; for a
	// token of several tenants, the membership the request was decided by.
	Tenant    string `json:"tenant,omitempty"`
	SubTenant string `json:"subTenant,omitempty"`
	Role      string `json:"role,omitempty"`
	// CreatedBy is who created the APIToken, as its admission recorded it.
	CreatedBy string `json:"createdBy,omitempty"`
	// Required is what the request required.
	Required Requirement `json:"required,omitzero"`
	// Client is the client's address (see the validator's --trusted-proxies).
	Client string `json:"client,omitempty"`
	// Method and URI are the original request's, when the proxy passed them
	// (HeaderOriginal* or HeaderForwarded*). The URI is its path: a query may hold
	// credentials, so it is not recorded.
	Method string `json:"method,omitempty"`
	URI    string `json:"uri,omitempty"`

	// Suppressed, on a summary line, is how many refusals of Client since Since
	// were not written one by one, and Reasons counts them by reason. Client "*"
	// stands for the clients not tracked one by one.
	Suppressed int            `json:"suppressed,omitempty"`
	Since      time.Time      `json:"since,omitzero"`
	Reasons    map[string]int `json:"reasons,omitempty"`
}

// Decisions of an AuditLine.
const (
	AuditAllowed = "allowed"
	AuditRefused = "refused"
)
