package remote

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/shitenno/shitenno/internal/testutil"
)

// tlsEnv is the usual fixture: a root CA, a server certificate for
// backend.test / 127.0.0.1 and the CA's PEM file.
type tlsEnv struct {
	dir    string
	ca     *testutil.CA
	caFile string
	srv    *x509.Certificate
	srvKey any
}

func newTLSEnv(t *testing.T) *tlsEnv {
	t.Helper()
	e := &tlsEnv{dir: t.TempDir(), ca: testutil.NewCA(t, "Test Root CA", nil)}
	e.caFile = writeTestFile(t, e.dir, "ca.pem", testutil.PEMCert(e.ca.Cert))
	c, k := e.ca.Server(t, "backend.test", nil)
	e.srv, e.srvKey = c, k
	return e
}

func (e *tlsEnv) cert() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{e.srv.Raw}, PrivateKey: e.srvKey, Leaf: e.srv}
}

func mustTLS(t testing.TB, o TLSOptions) *TLSSetup {
	t.Helper()
	s, err := NewTLS(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func lookupOK(t *testing.T, c *Client) {
	t.Helper()
	r, err := c.Lookup(t.Context(), "virtual", "alice@example.com")
	if err != nil {
		t.Fatalf("lookup failed: %v (%#v)", err, err)
	}
	if r.Status != Found || string(r.Data) != `"alice@mbox.example.com"` {
		t.Fatalf("lookup = %v %s", r.Status, r.Data)
	}
}

// lookupRefused checks that a lookup fails as a TLS refusal with cause
// (reported to the observer and before any response), and returns the
// TLSError when there is one.
func lookupRefused(t *testing.T, c *Client, obs *tlsObserver, cause string) *TLSError {
	t.Helper()
	r, err := c.Lookup(t.Context(), "virtual", "alice@example.com")
	if err == nil {
		t.Fatalf("lookup succeeded (%v), want TLS refusal %q", r.Status, cause)
	}
	var re *Error
	if !errors.As(err, &re) {
		t.Fatalf("error %T %v is not a *remote.Error", err, err)
	}
	if re.Kind != "tls" || !re.BeforeResponse {
		t.Errorf("error kind %q BeforeResponse %v (%v), want tls/true", re.Kind, re.BeforeResponse, re.Err)
	}
	obs.mu.Lock()
	causes := append([]string(nil), obs.causes...)
	obs.mu.Unlock()
	if len(causes) == 0 || causes[len(causes)-1] != cause {
		t.Errorf("observer causes %v, want last %q (err %v)", causes, cause, re.Err)
	}
	var te *TLSError
	errors.As(err, &te)
	return te
}

func hostPort(t *testing.T, u string) (host, port string) {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Hostname(), p.Port()
}

func TestTLSTrustAndNames(t *testing.T) {
	e := newTLSEnv(t)
	b := newTLSBackend(t, e.cert(), nil)
	_, port := hostPort(t, b.URL)
	byName := "https://backend.test:" + port + "/api/"
	byIP := b.URL + "/api/"
	dialTo := b.Listener.Addr().String()

	t.Run("trusted CA, name from URL", func(t *testing.T) {
		c, _ := newTLSClient(t, byName, mustTLS(t, TLSOptions{CertPool: []string{e.caFile}}), dialTo)
		lookupOK(t, c)
	})
	t.Run("IP URL verified against IP SAN", func(t *testing.T) {
		c, _ := newTLSClient(t, byIP, mustTLS(t, TLSOptions{CertPool: []string{e.caFile}}), "")
		lookupOK(t, c)
	})
	t.Run("IP URL with ServerName", func(t *testing.T) {
		c, _ := newTLSClient(t, byIP, mustTLS(t, TLSOptions{CertPool: []string{e.caFile}, ServerName: "backend.test"}), "")
		lookupOK(t, c)
	})
	t.Run("unknown CA", func(t *testing.T) {
		other := testutil.NewCA(t, "Other CA", nil)
		f := writeTestFile(t, t.TempDir(), "other.pem", testutil.PEMCert(other.Cert))
		c, obs := newTLSClient(t, byName, mustTLS(t, TLSOptions{CertPool: []string{f}}), dialTo)
		lookupRefused(t, c, obs, "unknown-ca")
	})
	t.Run("system pool does not know the test CA", func(t *testing.T) {
		c, obs := newTLSClient(t, byName, mustTLS(t, TLSOptions{}), dialTo)
		lookupRefused(t, c, obs, "unknown-ca")
	})
	t.Run("wrong ServerName", func(t *testing.T) {
		c, obs := newTLSClient(t, byIP, mustTLS(t, TLSOptions{CertPool: []string{e.caFile}, ServerName: "other.test"}), "")
		lookupRefused(t, c, obs, "name-mismatch")
	})
	t.Run("name in URL not in certificate", func(t *testing.T) {
		c, obs := newTLSClient(t, "https://wrong.test:"+port+"/api/", mustTLS(t, TLSOptions{CertPool: []string{e.caFile}}), dialTo)
		lookupRefused(t, c, obs, "name-mismatch")
	})
	t.Run("CertPool plus system pool", func(t *testing.T) {
		if _, err := x509.SystemCertPool(); err != nil {
			t.Skip("no system pool here:", err)
		}
		c, _ := newTLSClient(t, byName, mustTLS(t, TLSOptions{CertPool: []string{e.caFile}, SystemCertPool: true}), dialTo)
		lookupOK(t, c)
	})
	if n := b.requests.Load(); n != 4 && n != 3 {
		// 3 or 4 successful lookups depending on whether the system pool
		// subtest ran; never one from a refused handshake.
		t.Errorf("backend saw %d requests", n)
	}
}

func TestTLSExpiredServerCert(t *testing.T) {
	e := newTLSEnv(t)
	c0, k0 := e.ca.Server(t, "backend.test", func(c *x509.Certificate) {
		c.NotBefore = time.Now().Add(-48 * time.Hour)
		c.NotAfter = time.Now().Add(-24 * time.Hour)
	})
	b := newTLSBackend(t, testutil.TLSChain(c0, k0), nil)
	c, obs := newTLSClient(t, b.URL+"/", mustTLS(t, TLSOptions{CertPool: []string{e.caFile}}), "")
	lookupRefused(t, c, obs, "cert-expired")
}

func TestTLSClientCert(t *testing.T) {
	e := newTLSEnv(t)
	clientCA := testutil.NewCA(t, "Client CA", nil)
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.Cert)
	for _, v := range []struct {
		name string
		max  uint16
	}{{"TLS1.3", tls.VersionTLS13}, {"TLS1.2", tls.VersionTLS12}} {
		t.Run(v.name, func(t *testing.T) {
			b := newTLSBackend(t, e.cert(), func(c *tls.Config) {
				c.ClientAuth = tls.RequireAndVerifyClientCert
				c.ClientCAs = pool
				c.MaxVersion = v.max
			})
			dir := t.TempDir()
			cert, key := clientCA.Leaf(t, "client-a", x509.ExtKeyUsageClientAuth, nil)
			certFile := writeTestFile(t, dir, "client.pem", testutil.PEMCert(cert))
			keyFile := writeTestFile(t, dir, "client.key", testutil.PEMKey(t, key))
			combined := writeTestFile(t, dir, "combined.pem", testutil.PEMCert(cert), testutil.PEMKey(t, key))

			t.Run("without", func(t *testing.T) {
				c, obs := newTLSClient(t, b.URL+"/", mustTLS(t, TLSOptions{CertPool: []string{e.caFile}}), "")
				lookupRefused(t, c, obs, "alert")
			})
			t.Run("cert and key", func(t *testing.T) {
				c, _ := newTLSClient(t, b.URL+"/", mustTLS(t, TLSOptions{CertPool: []string{e.caFile}, ClientCert: certFile, ClientKey: keyFile}), "")
				lookupOK(t, c)
				if cn, _ := b.last(); cn != "client-a" {
					t.Errorf("backend saw client %q", cn)
				}
			})
			t.Run("combined PEM", func(t *testing.T) {
				c, _ := newTLSClient(t, b.URL+"/", mustTLS(t, TLSOptions{CertPool: []string{e.caFile}, ClientCert: combined}), "")
				lookupOK(t, c)
				if cn, _ := b.last(); cn != "client-a" {
					t.Errorf("backend saw client %q", cn)
				}
			})
			if n := b.requests.Load(); n != 2 {
				t.Errorf("backend handled %d requests, want 2 (none without a client certificate)", n)
			}
		})
	}
}

func TestTLSReload(t *testing.T) {
	e := newTLSEnv(t)
	clientCA := testutil.NewCA(t, "Client CA", nil)
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.Cert)
	b := newTLSBackend(t, e.cert(), func(c *tls.Config) {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = pool
	})
	dir := t.TempDir()
	certA, keyA := clientCA.Leaf(t, "client-a", x509.ExtKeyUsageClientAuth, nil)
	certB, keyB := clientCA.Leaf(t, "client-b", x509.ExtKeyUsageClientAuth, nil)
	certFile := writeTestFile(t, dir, "client.pem", testutil.PEMCert(certA))
	keyFile := writeTestFile(t, dir, "client.key", testutil.PEMKey(t, keyA))
	s := mustTLS(t, TLSOptions{CertPool: []string{e.caFile}, ClientCert: certFile, ClientKey: keyFile})
	c, _ := newTLSClient(t, b.URL+"/", s, "")

	lookupOK(t, c)
	if cn, _ := b.last(); cn != "client-a" {
		t.Fatalf("backend saw %q, want client-a", cn)
	}
	// A new connection resumes the session: the identity stays client-a.
	c.CloseIdle()
	lookupOK(t, c)
	if cn, resumed := b.last(); cn != "client-a" || !resumed {
		t.Fatalf("second connection: client %q resumed %v, want client-a resumed", cn, resumed)
	}

	writeTestFile(t, dir, "client.pem", testutil.PEMCert(certB))
	writeTestFile(t, dir, "client.key", testutil.PEMKey(t, keyB))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := s.ClientCertificate().Subject.CommonName; got != "client-b" {
		t.Errorf("ClientCertificate after Reload = %q", got)
	}
	c.CloseIdle()
	lookupOK(t, c)
	// Reload forgot the sessions: a full handshake with the new identity.
	if cn, resumed := b.last(); cn != "client-b" || resumed {
		t.Fatalf("after Reload: client %q resumed %v, want client-b not resumed", cn, resumed)
	}

	// A broken file: Reload fails naming it, client-b stays in use.
	writeTestFile(t, dir, "client.key", []byte("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"))
	err := s.Reload()
	if err == nil || !strings.Contains(err.Error(), keyFile) {
		t.Fatalf("Reload with a broken key = %v, want an error naming %s", err, keyFile)
	}
	os.Remove(certFile)
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), certFile) {
		t.Fatalf("Reload with a missing cert = %v, want an error naming %s", err, certFile)
	}
	c.CloseIdle()
	lookupOK(t, c)
	if cn, _ := b.last(); cn != "client-b" {
		t.Fatalf("after failed Reload the backend saw %q, want client-b", cn)
	}
}

func TestTLSPins(t *testing.T) {
	root := testutil.NewCA(t, "Pin Root", nil)
	inter := testutil.NewCA(t, "Pin Intermediate", root)
	stranger := testutil.NewCA(t, "Stranger", nil)
	leaf, key := inter.Server(t, "backend.test", nil)
	dir := t.TempDir()
	caFile := writeTestFile(t, dir, "ca.pem", testutil.PEMCert(root.Cert))
	// The server also sends a certificate that is in no verified chain: a
	// pin on it must not count.
	b := newTLSBackend(t, testutil.TLSChain(leaf, key, inter.Cert, stranger.Cert), nil)

	for _, tc := range []struct {
		name string
		pins []string
		ok   bool
	}{
		{"leaf", []string{SPKIPin(leaf)}, true},
		{"intermediate", []string{SPKIPin(inter.Cert)}, true},
		{"root", []string{SPKIPin(root.Cert)}, true},
		{"backup pin first", []string{SPKIPin(stranger.Cert), SPKIPin(leaf)}, true},
		{"mismatch", []string{SPKIPin(testutil.NewCA(t, "Nobody", nil).Cert)}, false},
		{"only on an unverified extra certificate", []string{SPKIPin(stranger.Cert)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.requests.Load()
			c, obs := newTLSClient(t, b.URL+"/", mustTLS(t, TLSOptions{CertPool: []string{caFile}, HPKP: tc.pins}), "")
			if tc.ok {
				lookupOK(t, c)
				return
			}
			te := lookupRefused(t, c, obs, "pin")
			if te == nil {
				t.Fatal("no *TLSError in the chain")
			}
			want := "expected one of [" + strings.Join(tc.pins, ", ") + "], chain has [" +
				SPKIPin(leaf) + " (CN=backend.test), " + SPKIPin(inter.Cert) + " (CN=Pin Intermediate), " + SPKIPin(root.Cert) + " (CN=Pin Root)]"
			if !strings.Contains(te.Detail, want) {
				t.Errorf("detail %q\nwant it to contain %q", te.Detail, want)
			}
			// Deterministic: a second refusal says exactly the same.
			c.CloseIdle()
			if te2 := lookupRefused(t, c, obs, "pin"); te2 == nil || te2.Detail != te.Detail {
				t.Errorf("second detail differs: %v", te2)
			}
			if n := b.requests.Load() - before; n != 0 {
				t.Errorf("%d requests reached the backend through an unpinned connection", n)
			}
		})
	}
}

// TestTLSResumption checks that pins and OCSP are enforced on resumed
// handshakes too, with the verified chains Go restores from the session.
func TestTLSResumption(t *testing.T) {
	e := newTLSEnv(t)
	good := e.ca.OCSP(t, ocsp.Response{Status: ocsp.Good, SerialNumber: e.srv.SerialNumber}, nil, nil)
	for _, v := range []struct {
		name string
		max  uint16
	}{{"TLS1.3", tls.VersionTLS13}, {"TLS1.2", tls.VersionTLS12}} {
		t.Run(v.name, func(t *testing.T) {
			cert := e.cert()
			cert.OCSPStaple = good
			b := newTLSBackend(t, cert, func(c *tls.Config) { c.MaxVersion = v.max })
			s := mustTLS(t, TLSOptions{CertPool: []string{e.caFile}, HPKP: []string{SPKIPin(e.ca.Cert)}, OCSP: OCSPRequireStapled})
			conf := s.Config()
			type seen struct {
				resumed bool
				chains  int
				staple  bool
				err     error
			}
			var mu sync.Mutex
			var calls []seen
			check := conf.VerifyConnection
			conf.VerifyConnection = func(cs tls.ConnectionState) error {
				err := check(cs)
				mu.Lock()
				calls = append(calls, seen{cs.DidResume, len(cs.VerifiedChains), len(cs.OCSPResponse) > 0, err})
				mu.Unlock()
				return err
			}
			c, err := New(Options{URLs: []string{b.URL + "/"}, Timeout: 5 * time.Second, Transport: NewTransport(conf, 0)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseIdle()
			for range 3 {
				lookupOK(t, c)
				c.CloseIdle()
			}
			mu.Lock()
			defer mu.Unlock()
			if len(calls) != 3 {
				t.Fatalf("VerifyConnection ran %d times for 3 connections", len(calls))
			}
			if calls[0].resumed || !calls[1].resumed || !calls[2].resumed {
				t.Fatalf("resumption pattern %+v, want full then resumed", calls)
			}
			for i, c := range calls {
				if c.chains == 0 || !c.staple || c.err != nil {
					t.Errorf("handshake %d: %+v, want verified chains, a staple and no error", i, c)
				}
			}

			// The same saved session under a setup whose pin does not
			// match: the resumed handshake must be refused too.
			s2 := mustTLS(t, TLSOptions{CertPool: []string{e.caFile}, HPKP: []string{SPKIPin(testutil.NewCA(t, "x", nil).Cert)}})
			conf2 := s2.Config()
			conf2.ClientSessionCache = conf.ClientSessionCache
			check2 := conf2.VerifyConnection
			var resumedRefusal bool
			conf2.VerifyConnection = func(cs tls.ConnectionState) error {
				err := check2(cs)
				resumedRefusal = cs.DidResume && err != nil
				return err
			}
			c2, err := New(Options{URLs: []string{b.URL + "/"}, Timeout: 5 * time.Second, Transport: NewTransport(conf2, 0)})
			if err != nil {
				t.Fatal(err)
			}
			before := b.requests.Load()
			if _, err := c2.Lookup(t.Context(), "virtual", "x"); err == nil {
				t.Fatal("resumed session with a non-matching pin was accepted")
			}
			if !resumedRefusal {
				t.Error("the refusal did not happen on a resumed handshake")
			}
			if b.requests.Load() != before {
				t.Error("a request reached the backend")
			}
		})
	}
}

func TestTLSOCSP(t *testing.T) {
	e := newTLSEnv(t)
	serial := e.srv.SerialNumber
	other := testutil.NewCA(t, "Other CA", nil)
	responder, responderKey := e.ca.Leaf(t, "OCSP responder", x509.ExtKeyUsageOCSPSigning, nil)
	noEKU, noEKUKey := e.ca.Leaf(t, "not a responder", x509.ExtKeyUsageServerAuth, nil)
	now := time.Now()
	revokedAt := now.Add(-30 * time.Minute).Truncate(time.Second)

	for _, tc := range []struct {
		name   string
		staple []byte
		mode   string
		cause  string // "" means accepted
		detail string
	}{
		{"good", e.ca.OCSP(t, ocsp.Response{Status: ocsp.Good, SerialNumber: serial}, nil, nil), "", "", ""},
		{"good, require-stapled", e.ca.OCSP(t, ocsp.Response{Status: ocsp.Good, SerialNumber: serial}, nil, nil), OCSPRequireStapled, "", ""},
		{"good via delegated responder", e.ca.OCSP(t, ocsp.Response{Status: ocsp.Good, SerialNumber: serial, Certificate: responder}, responder, responderKey), "", "", ""},
		{"revoked", e.ca.OCSP(t, ocsp.Response{Status: ocsp.Revoked, SerialNumber: serial, RevokedAt: revokedAt, RevocationReason: ocsp.KeyCompromise}, nil, nil), "", "ocsp-revoked",
			"serial " + serial.Text(16) + " revoked at " + revokedAt.UTC().Format(time.RFC3339) + " (reason 1)"},
		{"revoked but OCSP off", e.ca.OCSP(t, ocsp.Response{Status: ocsp.Revoked, SerialNumber: serial, RevokedAt: revokedAt}, nil, nil), OCSPOff, "", ""},
		{"unknown status", e.ca.OCSP(t, ocsp.Response{Status: ocsp.Unknown, SerialNumber: serial}, nil, nil), "", "ocsp-invalid", "status unknown"},
		{"expired", e.ca.OCSP(t, ocsp.Response{Status: ocsp.Good, SerialNumber: serial, ThisUpdate: now.Add(-3 * time.Hour), NextUpdate: now.Add(-time.Hour)}, nil, nil), "", "ocsp-invalid", "expired (NextUpdate"},
		{"not yet valid", e.ca.OCSP(t, ocsp.Response{Status: ocsp.Good, SerialNumber: serial, ThisUpdate: now.Add(time.Hour), NextUpdate: now.Add(2 * time.Hour)}, nil, nil), "", "ocsp-invalid", "not yet valid"},
		{"no NextUpdate, old", e.ca.OCSP(t, ocsp.Response{Status: ocsp.Good, SerialNumber: serial, ThisUpdate: now.Add(-8 * 24 * time.Hour)}, nil, nil), "", "ocsp-invalid", "older than 7 days"},
		{"no NextUpdate, recent", e.ca.OCSP(t, ocsp.Response{Status: ocsp.Good, SerialNumber: serial, ThisUpdate: now.Add(-time.Hour)}, nil, nil), "", "", ""},
		{"wrong serial", e.ca.OCSP(t, ocsp.Response{Status: ocsp.Good, SerialNumber: new(big.Int).Add(serial, big.NewInt(1))}, nil, nil), "", "ocsp-invalid", "no response matching"},
		{"bad signature", other.OCSP(t, ocsp.Response{Status: ocsp.Good, SerialNumber: serial}, nil, nil), "", "ocsp-invalid", "bad OCSP signature"},
		{"responder without OCSPSigning", e.ca.OCSP(t, ocsp.Response{Status: ocsp.Good, SerialNumber: serial, Certificate: noEKU}, noEKU, noEKUKey), "", "ocsp-invalid", "OCSPSigning"},
		{"garbage", []byte("not DER"), "", "ocsp-invalid", ""},
		{"missing, require-stapled", nil, OCSPRequireStapled, "ocsp-missing", "require-stapled"},
		{"missing, if-stapled", nil, OCSPIfStapled, "", ""},
		{"missing, default mode", nil, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := e.cert()
			cert.OCSPStaple = tc.staple
			b := newTLSBackend(t, cert, nil)
			c, obs := newTLSClient(t, b.URL+"/", mustTLS(t, TLSOptions{CertPool: []string{e.caFile}, OCSP: tc.mode}), "")
			if tc.cause == "" {
				lookupOK(t, c)
				return
			}
			te := lookupRefused(t, c, obs, tc.cause)
			if te == nil || !strings.Contains(te.Detail, tc.detail) {
				t.Errorf("TLSError %v, want detail containing %q", te, tc.detail)
			}
			if n := b.requests.Load(); n != 0 {
				t.Errorf("%d requests reached the backend", n)
			}
		})
	}
}

func TestTLSMustStaple(t *testing.T) {
	e := newTLSEnv(t)
	feature, _ := asn1.Marshal([]int{5})
	leaf, key := e.ca.Server(t, "backend.test", func(c *x509.Certificate) {
		c.ExtraExtensions = []pkix.Extension{{Id: oidTLSFeature, Value: feature}}
	})
	b := newTLSBackend(t, testutil.TLSChain(leaf, key), nil)
	c, obs := newTLSClient(t, b.URL+"/", mustTLS(t, TLSOptions{CertPool: []string{e.caFile}}), "")
	te := lookupRefused(t, c, obs, "ocsp-missing")
	if te == nil || !strings.Contains(te.Detail, "must-staple") {
		t.Errorf("TLSError %v", te)
	}
	c, _ = newTLSClient(t, b.URL+"/", mustTLS(t, TLSOptions{CertPool: []string{e.caFile}, OCSP: OCSPOff}), "")
	lookupOK(t, c)
}

// TestTLSHandshakeWithNonTLSServer: a server that answers the ClientHello
// with something that is not TLS (here an SSH banner) is a handshake
// failure. (An HTTP answer is turned by net/http into an unwrapped "server
// gave HTTP response to HTTPS client", which stays a transport failure.)
func TestTLSHandshakeWithNonTLSServer(t *testing.T) {
	e := newTLSEnv(t)
	ssh := testutil.AcceptTCP(t, func(conn net.Conn) {
		_, _ = conn.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
		conn.Close()
	})
	c, obs := newTLSClient(t, "https://"+ssh.Addr()+"/", mustTLS(t, TLSOptions{CertPool: []string{e.caFile}}), "")
	lookupRefused(t, c, obs, "handshake")
}

func TestNewTLSErrors(t *testing.T) {
	e := newTLSEnv(t)
	dir := t.TempDir()
	cert, key := e.ca.Leaf(t, "client", x509.ExtKeyUsageClientAuth, nil)
	_, otherKey := e.ca.Leaf(t, "other", x509.ExtKeyUsageClientAuth, nil)
	certFile := writeTestFile(t, dir, "c.pem", testutil.PEMCert(cert))
	keyFile := writeTestFile(t, dir, "c.key", testutil.PEMKey(t, key))
	otherKeyFile := writeTestFile(t, dir, "o.key", testutil.PEMKey(t, otherKey))
	keyOnly := writeTestFile(t, dir, "keyonly.pem", testutil.PEMKey(t, key))
	empty := writeTestFile(t, dir, "empty.pem", nil)
	missing := dir + "/missing.pem"

	for _, tc := range []struct {
		name string
		o    TLSOptions
		want string
	}{
		{"missing CA file", TLSOptions{CertPool: []string{e.caFile, missing}}, "CertPool " + missing},
		{"CA file without certificates", TLSOptions{CertPool: []string{keyOnly}}, "CertPool " + keyOnly + ": no PEM CERTIFICATE"},
		{"empty CA file", TLSOptions{CertPool: []string{empty}}, "CertPool " + empty},
		{"missing client cert", TLSOptions{ClientCert: missing}, "ClientCert " + missing},
		{"missing client key", TLSOptions{ClientCert: certFile, ClientKey: missing}, "ClientKey " + missing},
		{"key does not match", TLSOptions{ClientCert: certFile, ClientKey: otherKeyFile}, "ClientKey " + otherKeyFile},
		{"cert without key", TLSOptions{ClientCert: certFile}, "ClientCert " + certFile},
		{"key without cert", TLSOptions{ClientKey: keyFile}, "ClientKey set without ClientCert"},
		{"pin not base64", TLSOptions{HPKP: []string{"sha256/abc"}}, `HPKP[0] "sha256/abc"`},
		{"pin wrong length", TLSOptions{HPKP: []string{SPKIPin(cert), "AAAA"}}, `HPKP[1] "AAAA"`},
		{"bad OCSP mode", TLSOptions{OCSP: "on"}, `not "on"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewTLS(tc.o)
			if err == nil {
				t.Fatalf("NewTLS = %v, want error containing %q", s, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewTLS error %q, want it to contain %q", err, tc.want)
			}
		})
	}

	s := mustTLS(t, TLSOptions{CertPool: []string{e.caFile}, ClientCert: certFile, ClientKey: keyFile})
	conf := s.Config()
	if conf.MinVersion != tls.VersionTLS12 || conf.CipherSuites != nil || conf.MaxVersion != 0 || conf.InsecureSkipVerify {
		t.Errorf("config: min %x max %x ciphers %v insecure %v", conf.MinVersion, conf.MaxVersion, conf.CipherSuites, conf.InsecureSkipVerify)
	}
	if conf.ClientSessionCache == nil || conf.VerifyConnection == nil || conf.GetClientCertificate == nil {
		t.Error("config lacks session cache, VerifyConnection or GetClientCertificate")
	}
	if conf == s.Config() {
		t.Error("Config returns the same pointer twice")
	}
}

// TestTLSHandshakeTimeout: a backend that accepts TCP but never answers
// the handshake is a timeout, not a TLS refusal.
func TestTLSHandshakeTimeout(t *testing.T) {
	e := newTLSEnv(t)
	silent := testutil.AcceptTCP(t, func(net.Conn) {}) // accepts, never answers
	s := mustTLS(t, TLSOptions{CertPool: []string{e.caFile}})
	c, err := New(Options{URLs: []string{"https://" + silent.Addr() + "/"}, Timeout: 200 * time.Millisecond, Transport: NewTransport(s.Config(), 0)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Lookup(context.Background(), "virtual", "x")
	var re *Error
	if !errors.As(err, &re) || re.Kind != "timeout" {
		t.Fatalf("lookup against a silent server = %v, want a timeout", err)
	}
}

// TestTLSKeepAlive: the pin and OCSP checks run once per handshake, and
// sequential lookups reuse one connection (no handshake per lookup).
func TestTLSKeepAlive(t *testing.T) {
	e := newTLSEnv(t)
	cert := e.cert()
	cert.OCSPStaple = e.ca.OCSP(t, ocsp.Response{Status: ocsp.Good, SerialNumber: e.srv.SerialNumber}, nil, nil)
	b := newTLSBackend(t, cert, nil)
	s := mustTLS(t, TLSOptions{CertPool: []string{e.caFile}, HPKP: []string{SPKIPin(e.srv)}, OCSP: OCSPRequireStapled})
	conf := s.Config()
	var handshakes atomic.Int64
	check := conf.VerifyConnection
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		handshakes.Add(1)
		return check(cs)
	}
	c, err := New(Options{URLs: []string{b.URL + "/"}, Timeout: 5 * time.Second, TLS: conf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdle()
	for range 20 {
		lookupOK(t, c)
	}
	if n := handshakes.Load(); n != 1 {
		t.Errorf("%d handshakes for 20 sequential lookups, want 1", n)
	}
}

// TestTLSResumedStapleRefresh: a resumed session carries the staple of its
// full handshake. Once that staple would be stale, the session must not be
// resumed any more: the next connection does a full handshake and gets the
// server's fresh staple, instead of failing a lookup.
func TestTLSResumedStapleRefresh(t *testing.T) {
	e := newTLSEnv(t)
	start := time.Now()
	var mu sync.Mutex
	staple := e.ca.OCSP(t, ocsp.Response{Status: ocsp.Good, SerialNumber: e.srv.SerialNumber, ThisUpdate: start.Add(-time.Hour), NextUpdate: start.Add(90 * time.Minute)}, nil, nil)
	b := newTLSBackend(t, e.cert(), func(c *tls.Config) {
		cert := e.cert()
		// Called because the client sends SNI (ServerName below); the
		// static certificate has no staple.
		c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			mu.Lock()
			defer mu.Unlock()
			cc := cert
			cc.OCSPStaple = staple
			return &cc, nil
		}
	})
	s := mustTLS(t, TLSOptions{CertPool: []string{e.caFile}, ServerName: "backend.test", OCSP: OCSPRequireStapled})
	var clock atomic.Int64 // offset from the real time
	s.now = func() time.Time { return time.Now().Add(time.Duration(clock.Load())) }
	c, obs := newTLSClient(t, b.URL+"/", s, "")

	lookupOK(t, c)
	c.CloseIdle()
	lookupOK(t, c)
	if _, resumed := b.last(); !resumed {
		t.Fatal("second connection did not resume")
	}

	// Two hours later the first staple is past its NextUpdate; the server
	// now staples a fresh one.
	clock.Store(int64(2 * time.Hour))
	mu.Lock()
	staple = e.ca.OCSP(t, ocsp.Response{Status: ocsp.Good, SerialNumber: e.srv.SerialNumber, ThisUpdate: start.Add(time.Hour), NextUpdate: start.Add(5 * time.Hour)}, nil, nil)
	mu.Unlock()
	c.CloseIdle()
	if _, err := c.Lookup(t.Context(), "virtual", "alice@example.com"); err != nil {
		t.Fatalf("lookup after the staple aged: %v (causes %v)", err, obs.causes)
	}
	if _, resumed := b.last(); resumed {
		t.Error("a session older than maxSessionAge was resumed")
	}
}
