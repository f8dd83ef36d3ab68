package validatorapi

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// identityV1 is IdentityResponse as the validator first wrote it, with a metav1.Time:
// the wire format clients already parse.
type identityV1 struct {
	TokenID   string      `json:"tokenID"`
	Format    string      `json:"format"`
	Namespace string      `json:"namespace"`
	Name      string      `json:"name"`
	UID       string      `json:"uid"`
	Subject   string      `json:"subject"`
	Issuer    string      `json:"issuer"`
	Tenant    string      `json:"tenant"`
	SubTenant string      `json:"subTenant,omitempty"`
	Role      string      `json:"role"`
	Roles     []string    `json:"roles"`
	Scopes    []string    `json:"scopes,omitempty"`
	Audiences []string    `json:"audiences,omitempty"`
	ExpiresAt metav1.Time `json:"expiresAt"`
}

type responseV1 struct {
	Allowed  bool        `json:"allowed"`
	Status   int         `json:"status"`
	Reason   string      `json:"reason"`
	Message  string      `json:"message,omitempty"`
	Identity *identityV1 `json:"identity,omitempty"`
}

func TestIdentityWireFormat(t *testing.T) {
	paris := time.FixedZone("CET", 3600)
	for name, exp := range map[string]time.Time{
		"UTC, whole second":     time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC),
		"another zone":          time.Date(2026, 11, 22, 7, 0, 0, 0, paris),
		"fractions are dropped": time.Date(2026, 11, 22, 6, 0, 0, 999_999_999, time.UTC),
		"zero is null":          {},
	} {
		t.Run(name, func(t *testing.T) {
			old := responseV1{Allowed: false, Status: 403, Reason: ReasonInsufficientRole, Message: "m", Identity: &identityV1{
				TokenID: "01J", Format: "JWT", Namespace: "acme", Name: "ci", UID: "u", Subject: "apitoken:acme:ci", Issuer: "default",
				Tenant: "acme", SubTenant: "payments", Role: "viewer", Roles: []string{"viewer"}, Scopes: []string{"a"}, Audiences: []string{"b"},
				ExpiresAt: metav1.NewTime(exp),
			}}
			cur := ValidateResponse{Allowed: false, Status: 403, Reason: ReasonInsufficientRole, Message: "m", Identity: &IdentityResponse{
				TokenID: "01J", Format: "JWT", Namespace: "acme", Name: "ci", UID: "u", Subject: "apitoken:acme:ci", Issuer: "default",
				Tenant: "acme", SubTenant: "payments", Role: "viewer", Roles: []string{"viewer"}, Scopes: []string{"a"}, Audiences: []string{"b"},
				ExpiresAt: exp,
			}}
			oldJSON, err := json.Marshal(old)
			if err != nil {
				t.Fatal(err)
			}
			curJSON, err := json.Marshal(cur)
			if err != nil {
				t.Fatal(err)
			}
			if string(curJSON) != string(oldJSON) {
				t.Fatalf("wire format changed:\n got %s\nwant %s", curJSON, oldJSON)
			}

			// A client reads what the old server wrote.
			var got ValidateResponse
			if err := json.Unmarshal(oldJSON, &got); err != nil {
				t.Fatal(err)
			}
			want := cur
			id := *cur.Identity
			id.ExpiresAt = exp.Truncate(time.Second)
			want.Identity = &id
			if !got.Identity.ExpiresAt.Equal(want.Identity.ExpiresAt) {
				t.Errorf("expiresAt = %s, want %s", got.Identity.ExpiresAt, want.Identity.ExpiresAt)
			}
			got.Identity.ExpiresAt, want.Identity.ExpiresAt = time.Time{}, time.Time{}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decoded %+v, want %+v", got, want)
			}
		})
	}
}

func TestValidateRequestWireFormat(t *testing.T) {
	b, err := json.Marshal(ValidateRequest{Token: "t", Requirement: Requirement{Tenant: "acme", Role: "viewer"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"token":"t","tenant":"acme","role":"viewer"}`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
}
