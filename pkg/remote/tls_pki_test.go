package remote

// A tiny in-test PKI: CAs, server and client certificates, OCSP responses
// and TLS backends, all generated per test (no network, no fixtures).

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/shitenno/shitenno/internal/testutil"
)

type tlsTestCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

var tlsTestSerial atomic.Int64

func tlsTestKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sign issues tmpl (with pub) from ca; ca nil means self-signed with key.
func tlsTestSign(t testing.TB, tmpl *x509.Certificate, pub any, ca *tlsTestCA, key crypto.Signer) *x509.Certificate {
	t.Helper()
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(1000 + tlsTestSerial.Add(1))
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	return testutil.SignCert(t, tmpl, parent, pub, signer)
}

func newTestCA(t testing.TB, name string) *tlsTestCA {
	return newTestSubCA(t, name, nil)
}

// newTestSubCA makes a CA signed by parent (nil: a root).
func newTestSubCA(t testing.TB, name string, parent *tlsTestCA) *tlsTestCA {
	t.Helper()
	k := tlsTestKey(t)
	c := tlsTestSign(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, &k.PublicKey, parent, k)
	return &tlsTestCA{cert: c, key: k}
}

// leaf issues an end-entity certificate; tweak may adjust the template.
func (ca *tlsTestCA) leaf(t testing.TB, cn string, usage x509.ExtKeyUsage, tweak func(*x509.Certificate)) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k := tlsTestKey(t)
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.DNSNames = []string{cn}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	if tweak != nil {
		tweak(tmpl)
	}
	return tlsTestSign(t, tmpl, &k.PublicKey, ca, nil), k
}

func (ca *tlsTestCA) server(t testing.TB, cn string, tweak func(*x509.Certificate)) (*x509.Certificate, *ecdsa.PrivateKey) {
	return ca.leaf(t, cn, x509.ExtKeyUsageServerAuth, tweak)
}

// ocspResp signs an OCSP response about serial with the CA key (or with a
// delegated responder when responder is set).
func (ca *tlsTestCA) ocspResp(t testing.TB, tmpl ocsp.Response, responder *x509.Certificate, responderKey crypto.Signer) []byte {
	t.Helper()
	if tmpl.ThisUpdate.IsZero() {
		tmpl.ThisUpdate = time.Now().Add(-time.Hour)
		tmpl.NextUpdate = time.Now().Add(time.Hour)
	}
	rc, rk := ca.cert, ca.key
	if responder != nil {
		rc, rk = responder, responderKey
	}
	der, err := ocsp.CreateResponse(ca.cert, rc, tmpl, rk)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func pemKey(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func writeTestFile(t testing.TB, dir, name string, parts ...[]byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	var all []byte
	for _, b := range parts {
		all = append(all, b...)
	}
	if err := os.WriteFile(p, all, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tlsChain makes a tls.Certificate from a leaf, its key and intermediates.
func tlsChain(leaf *x509.Certificate, key crypto.Signer, rest ...*x509.Certificate) tls.Certificate {
	tc := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	for _, c := range rest {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc
}

// tlsBackend is an httptest TLS backend answering every lookup with OK and
// recording what it saw.
type tlsBackend struct {
	*httptest.Server
	requests atomic.Int64

	mu        sync.Mutex
	clientCNs []string // client certificate CN per request ("" without)
	didResume []bool   // per request
}

func (b *tlsBackend) last() (cn string, resumed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.clientCNs)
	if n == 0 {
		return "", false
	}
	return b.clientCNs[n-1], b.didResume[n-1]
}

// newTLSBackend starts a backend presenting cert; tweak may adjust its
// tls.Config (client auth, versions).
func newTLSBackend(t testing.TB, cert tls.Certificate, tweak func(*tls.Config)) *tlsBackend {
	t.Helper()
	b := &tlsBackend{}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.requests.Add(1)
		cn := ""
		if len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		b.mu.Lock()
		b.clientCNs = append(b.clientCNs, cn)
		b.didResume = append(b.didResume, r.TLS.DidResume)
		b.mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"Status":"OK","Data":"alice@mbox.example.com"}`)
	}))
	b.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	if tweak != nil {
		tweak(b.TLS)
	}
	// Refused handshakes are the point of these tests; keep them out of
	// the test output.
	b.Config.ErrorLog = log.New(io.Discard, "", 0)
	b.StartTLS()
	t.Cleanup(b.Close)
	return b
}

// tlsObserver records TLSFailure causes.
type tlsObserver struct {
	nopObserver
	mu     sync.Mutex
	causes []string
}

func (o *tlsObserver) TLSFailure(cause string) {
	o.mu.Lock()
	o.causes = append(o.causes, cause)
	o.mu.Unlock()
}

// newTLSClient builds a remote.Client for url with the TLS setup s. When
// dialTo is set, every dial goes there instead (so a URL can use a DNS
// name that does not resolve).
func newTLSClient(t testing.TB, url string, s *TLSSetup, dialTo string) (*Client, *tlsObserver) {
	t.Helper()
	obs := &tlsObserver{}
	tr := NewTransport(s.Config(), 0)
	if dialTo != "" {
		d := &net.Dialer{Timeout: 5 * time.Second}
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, dialTo)
		}
	}
	c, err := New(Options{URLs: []string{url}, Timeout: 5 * time.Second, Observer: obs, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdle)
	return c, obs
}
