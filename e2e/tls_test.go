package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newTestKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func signTestCert(t *testing.T, tmpl, parent *x509.Certificate, pub any, key *ecdsa.PrivateKey) *x509.Certificate {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// selfSignedFiles writes a self-signed certificate for name and its key
// (PEM, PKCS #8) into dir, for a peer's TLS server (smtpd).
func selfSignedFiles(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key := newTestKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	cert := signTestCert(t, tmpl, tmpl, &key.PublicKey, key)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// tlsFakeBackend is newFakeBackend over HTTPS with a certificate from a
// fresh test CA. It returns the backend, the CA's PEM file and the SPKI
// pin of the backend's certificate.
func tlsFakeBackend(t *testing.T, dir string, answer func(BackendRequest) (int, string)) (f *FakeBackend, caFile, pin string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey { return newTestKey(t) }
	sign := func(tmpl, parent *x509.Certificate, pub any, key *ecdsa.PrivateKey) *x509.Certificate {
		return signTestCert(t, tmpl, parent, pub, key)
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e backend CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	ca := sign(caTmpl, caTmpl, &caKey.PublicKey, caKey)
	srvKey := newKey()
	srv := sign(&x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "backend.test"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"backend.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}, ca, &srvKey.PublicKey, caKey)

	caFile = filepath.Join(dir, "backend-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(srv.RawSubjectPublicKeyInfo)
	pin = base64.StdEncoding.EncodeToString(sum[:])

	f = &FakeBackend{Answer: answer, hang: make(chan struct{})}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{srv.Raw}, PrivateKey: srvKey, Leaf: srv}}}
	// Refused handshakes are expected here.
	f.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.StartTLS()
	t.Cleanup(func() {
		close(f.hang)
		f.Server.CloseClientConnections()
		f.Server.Close()
	})
	return f, caFile, pin
}

// TestPostmapOverHTTPS: a postmap lookup through shitenno-postfix to an
// HTTPS backend is found when the backend's key matches HPKP, and is a
// TEMP — with no request reaching the backend — when it does not.
func TestPostmapOverHTTPS(t *testing.T) {
	requireTool(t, "postmap")
	answer := func(r BackendRequest) (int, string) { return 200, okReply(r, "OK", "alice@mbox.example.com") }
	for _, tc := range []struct {
		name  string
		pin   func(good string) string
		found bool
	}{
		{"pin matches", func(good string) string { return good }, true},
		{"pin mismatch", func(string) string { return "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testDir(t)
			fb, caFile, good := tlsFakeBackend(t, dir, answer)
			top := fmt.Sprintf("CertPool = %q\nHPKP = [%q]\nOCSP = \"if-stapled\"\n", caFile, tc.pin(good))
			d := startDaemonWith(t, dir, "postfix", fb.BaseURL(), top, "")
			pd := postmapDir(t, dir)
			out, errOut, code := postmapQuery(t, pd, d.Socket, "virtual", "alice@example.org")
			if tc.found {
				if code != 0 || out != "alice@mbox.example.com\n" {
					t.Errorf("got exit %d, stdout %q, stderr %q; want found", code, out, errOut)
				}
				if n := len(fb.Requests()); n != 1 {
					t.Errorf("backend got %d requests, want 1", n)
				}
				return
			}
			if code != 1 || out != "" || !strings.Contains(errOut, "temporary error") {
				t.Errorf("got exit %d, stdout %q, stderr %q; want a temporary error", code, out, errOut)
			}
			if n := len(fb.Requests()); n != 0 {
				t.Errorf("backend got %d requests through an unpinned connection", n)
			}
		})
	}
}
