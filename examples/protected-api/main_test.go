package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// TestExample runs the example's server in offline mode against a JWKS server and its
// client with a token directory: the client's token reaches the handler.
func TestExample(t *testing.T) {
	g := NewWithT(t)
	key, err := token.GenerateKey(token.ES256)
	g.Expect(err).NotTo(HaveOccurred())
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(token.JWKS{Keys: []token.JWK{key.PublicJWK()}})
	}))
	t.Cleanup(jwks.Close)

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	const issuer = "https://tokens.example.test"
	h, err := newServer(serverConfig{jwksURL: jwks.URL, insecureJWKS: true, issuer: issuer, tenant: "acme", roles: "admin=editor,editor=viewer"}, log)
	g.Expect(err).NotTo(HaveOccurred())
	api := httptest.NewServer(h)
	t.Cleanup(api.Close)

	dir := t.TempDir()
	for name, claims := range map[string]token.Claims{
		"editor": {Subject: "apitoken:acme:ci", Tenant: "acme", Role: "editor"},
		"other":  {Subject: "apitoken:globex:ci", Tenant: "globex", Role: "admin"},
	} {
		claims.Issuer, claims.ExpiresAt, claims.ID = issuer, time.Now().Add(time.Hour), token.NewTokenID()
		tok, err := token.MintJWT(key, claims)
		g.Expect(err).NotTo(HaveOccurred())
		d := filepath.Join(dir, name)
		g.Expect(os.Mkdir(d, 0o700)).To(Succeed())
		g.Expect(os.WriteFile(filepath.Join(d, "token"), []byte(tok), 0o600)).To(Succeed())
	}

	var out bytes.Buffer
	g.Expect(call(context.Background(), log, []string{"-url", api.URL + "/reports", "-token-dir", filepath.Join(dir, "editor")}, &out)).To(Succeed())
	g.Expect(out.String()).To(HavePrefix("200 OK "))
	var body map[string]string
	g.Expect(json.Unmarshal([]byte(strings.TrimPrefix(out.String(), "200 OK ")), &body)).To(Succeed())
	g.Expect(body).To(HaveKeyWithValue("caller", "apitoken:acme:ci"))
	g.Expect(body).To(HaveKeyWithValue("role", "editor"))

	out.Reset()
	g.Expect(call(context.Background(), log, []string{"-url", api.URL + "/reports", "-token-dir", filepath.Join(dir, "other")}, &out)).To(Succeed())
	g.Expect(out.String()).To(Equal("404 Not Found not found\n"))
}
