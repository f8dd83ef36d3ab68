package validator

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"

	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with serial, replacing the
// files by rename as the kubelet and cert-manager do.
func writeCert(t *testing.T, dir string, serial int64) *x509.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "apitoken-validator"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{"tls.crt": {Type: "CERTIFICATE", Bytes: der}, "tls.key": {Type: "PRIVATE KEY", Bytes: keyDER}} {
		tmp := filepath.Join(dir, "."+name)
		if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return cert
}

// TestServeTLS: the server presents the certificate on disk and picks up a renewed one
// without a restart.
func TestServeTLS(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	first := writeCert(t, dir, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, New(index.New(index.Config{}), Options{}).Handler(), ServeOptions{
			CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), Log: logr.Discard(),
		})
	}()
	defer func() {
		cancel()
		g.Expect(<-done).To(Succeed())
	}()

	served := func() (*big.Int, error) {
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test compares the certificate itself
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber, nil
	}
	g.Eventually(served).Should(Equal(first.SerialNumber))

	// A client that trusts the certificate speaks HTTPS to it.
	pool := x509.NewCertPool()
	pool.AddCert(first)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	resp, err := c.Get("https://" + ln.Addr().String() + PathHealthz)
	g.Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(200))
	g.Expect(resp.ProtoMajor).To(Equal(2), "HTTP/2 over TLS")

	second := writeCert(t, dir, 2)
	g.Eventually(served).WithTimeout(20 * time.Second).Should(Equal(second.SerialNumber))
}

func TestServeRefusesAmbiguousTLS(t *testing.T) {
	g := NewWithT(t)
	h := http.NotFoundHandler()
	for _, opts := range []ServeOptions{
		{}, // neither TLS nor an explicit insecure
		{CertFile: "c", KeyFile: "k", Insecure: true}, // both
		{CertFile: "c"}, // half a key pair
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(Serve(context.Background(), ln, h, opts)).To(HaveOccurred())
		ln.Close()
	}
}
