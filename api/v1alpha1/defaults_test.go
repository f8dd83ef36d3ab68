package v1alpha1_test

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// The defaults repeated in code are the ones the API server applies from the markers:
// a spec that names nothing reads the same through the functions as it reads back
// from the server.
func TestDefaultsInCodeAreTheAPIServers(t *testing.T) {
	ensureNamespace(t, "defaults-in-code")
	ctx := context.Background()
	tok := &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Name: "minimal", Namespace: "defaults-in-code"},
		Spec:       tokensv1.APITokenSpec{Tenant: "defaults-in-code", Role: "viewer"},
	}
	if err := env.Client.Create(ctx, tok); err != nil {
		t.Fatal(err)
	}
	iss := &tokensv1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "defaults-in-code"},
		Spec:       tokensv1.ClusterTokenIssuerSpec{Issuer: "https://issuer.example"},
	}
	if err := env.Client.Create(ctx, iss); err != nil {
		t.Fatal(err)
	}
	var empty tokensv1.APITokenSpec
	if got, want := empty.IssuerName(), tok.Spec.IssuerRef.Name; got != want || want != tokensv1.DefaultIssuerName {
		t.Errorf("IssuerName() = %q, the API server defaults issuerRef.name to %q, DefaultIssuerName is %q", got, want, tokensv1.DefaultIssuerName)
	}
	if got, want := empty.LifetimeOrDefault(), tok.Spec.Lifetime.Duration; got != want || want != tokensv1.DefaultLifetime {
		t.Errorf("LifetimeOrDefault() = %s, the API server defaults lifetime to %s, DefaultLifetime is %s", got, want, tokensv1.DefaultLifetime)
	}
	var emptyIssuer tokensv1.ClusterTokenIssuerSpec
	if got, want := emptyIssuer.OpaquePrefixOrDefault(), iss.Spec.OpaquePrefix; got != want || want != tokensv1.DefaultOpaquePrefix {
		t.Errorf("OpaquePrefixOrDefault() = %q, the API server defaults opaquePrefix to %q, DefaultOpaquePrefix is %q", got, want, tokensv1.DefaultOpaquePrefix)
	}
	if iss.Spec.Signing.PublishBefore == nil {
		t.Fatal("the API server set no signing.publishBefore")
	}
	if got, want := emptyIssuer.Signing.PublishBeforeOrDefault(), iss.Spec.Signing.PublishBefore.Duration; got != want || want != tokensv1.DefaultPublishBefore {
		t.Errorf("PublishBeforeOrDefault() = %s, the API server defaults publishBefore to %s, DefaultPublishBefore is %s", got, want, tokensv1.DefaultPublishBefore)
	}
}

// A value the spec sets wins over the default.
func TestOrDefault(t *testing.T) {
	for _, tc := range []struct {
		name         string
		token        tokensv1.APITokenSpec
		issuer       tokensv1.ClusterTokenIssuerSpec
		wantIssuer   string
		wantLifetime time.Duration
		wantPrefix   string
	}{
		{name: "nothing set", wantIssuer: "default", wantLifetime: 720 * time.Hour, wantPrefix: "apt"},
		{
			name:       "everything set",
			token:      tokensv1.APITokenSpec{IssuerRef: tokensv1.IssuerReference{Name: "acme"}, Lifetime: metav1.Duration{Duration: time.Hour}},
			issuer:     tokensv1.ClusterTokenIssuerSpec{OpaquePrefix: "acme"},
			wantIssuer: "acme", wantLifetime: time.Hour, wantPrefix: "acme",
		},
		{
			name:       "a negative lifetime, which the API refuses, gets the default",
			token:      tokensv1.APITokenSpec{Lifetime: metav1.Duration{Duration: -time.Hour}},
			wantIssuer: "default", wantLifetime: 720 * time.Hour, wantPrefix: "apt",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.token.IssuerName(); got != tc.wantIssuer {
				t.Errorf("IssuerName() = %q, want %q", got, tc.wantIssuer)
			}
			if got := tc.token.LifetimeOrDefault(); got != tc.wantLifetime {
				t.Errorf("LifetimeOrDefault() = %s, want %s", got, tc.wantLifetime)
			}
			if got := tc.issuer.OpaquePrefixOrDefault(); got != tc.wantPrefix {
				t.Errorf("OpaquePrefixOrDefault() = %q, want %q", got, tc.wantPrefix)
			}
		})
	}

	for _, tc := range []struct {
		name string
		set  *metav1.Duration
		want time.Duration
	}{
		{"publishBefore unset", nil, 5 * time.Minute},
		{"publishBefore 0s: a new key signs when published", &metav1.Duration{}, 0},
		{"publishBefore set", &metav1.Duration{Duration: time.Hour}, time.Hour},
		{"a negative publishBefore, which the API refuses, gets the default", &metav1.Duration{Duration: -time.Second}, 5 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tokensv1.SigningSpec{PublishBefore: tc.set}
			if got := s.PublishBeforeOrDefault(); got != tc.want {
				t.Errorf("PublishBeforeOrDefault() = %s, want %s", got, tc.want)
			}
		})
	}
}
