package e2e

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shitenno/shitenno/internal/testutil"
)

// selfSignedFiles writes a self-signed certificate for name and its key
// (PEM, PKCS #8) into dir, for a peer's TLS server (smtpd).
func selfSignedFiles(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	cert, key := testutil.SelfSigned(t, name)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, testutil.PEMCert(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, testutil.PEMKey(t, key), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// tlsFakeBackend is newFakeBackend over HTTPS with a certificate from a
// fresh test CA. It returns the backend, the CA's PEM file and the SPKI
// pin of the backend's certificate.
func tlsFakeBackend(t *testing.T, dir string, answer func(BackendRequest) (int, string)) (f *FakeBackend, caFile, pin string) {
	t.Helper()
	ca := testutil.NewCA(t, "e2e backend CA", nil)
	srv, srvKey := ca.Server(t, "backend.test", nil)
	caFile = filepath.Join(dir, "backend-ca.pem")
	if err := os.WriteFile(caFile, testutil.PEMCert(ca.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(srv.RawSubjectPublicKeyInfo)
	pin = base64.StdEncoding.EncodeToString(sum[:])

	f = &FakeBackend{Answer: answer, hang: make(chan struct{})}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.TLS = &tls.Config{Certificates: []tls.Certificate{testutil.TLSChain(srv, srvKey)}}
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
