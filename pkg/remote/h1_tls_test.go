package remote

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
)

// newH1TLSClient is a client of url over the in-goroutine transport with
// TLS setup s (most TLS tests pin net/http's with NewTransport).
func newH1TLSClient(t *testing.T, url string, conf *tls.Config) (*Client, *tlsObserver) {
	t.Helper()
	obs := &tlsObserver{}
	c := newLookupClient(t, Options{URLs: []string{url}, Observer: obs, TLS: conf})
	if c.backends[0].h1 == nil || c.backends[0].h1.tls == nil {
		t.Fatal("https URL not served by the in-goroutine transport")
	}
	return c, obs
}

// TestH1TLSChecksEveryHandshake: over the in-goroutine transport (which
// TestTLSKeepAlive uses too), the pins are checked on every handshake,
// resumed ones included, and a refused handshake is a TLS failure before
// response that no request crossed.
func TestH1TLSChecksEveryHandshake(t *testing.T) {
	e := newTLSEnv(t)
	b := newTLSBackend(t, e.cert(), nil)
	conf := mustTLS(t, TLSOptions{CertPool: []string{e.caFile}, HPKP: []string{SPKIPin(e.ca.Cert)}}).Config()
	var resumed []bool
	verify := conf.VerifyConnection
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		resumed = append(resumed, cs.DidResume)
		if len(cs.VerifiedChains) == 0 {
			t.Error("handshake without verified chains")
		}
		return verify(cs)
	}
	c, _ := newH1TLSClient(t, b.URL+"/", conf)
	for range 5 {
		lookupOK(t, c)
	}
	c.CloseIdle()
	lookupOK(t, c)
	if len(resumed) != 2 || resumed[0] || !resumed[1] {
		t.Fatalf("handshakes (resumed?) %v, want one full for 5 lookups, then one resumed", resumed)
	}

	bad := mustTLS(t, TLSOptions{CertPool: []string{e.caFile}, HPKP: []string{SPKIPin(testutil.NewCA(t, "other", nil).Cert)}})
	c2, obs := newH1TLSClient(t, b.URL+"/", bad.Config())
	before := b.requests.Load()
	lookupRefused(t, c2, obs, "pin")
	untrusted := mustTLS(t, TLSOptions{CertPool: []string{writeTestFile(t, e.dir, "other.pem", testutil.PEMCert(testutil.NewCA(t, "x", nil).Cert))}})
	c3, obs3 := newH1TLSClient(t, b.URL+"/", untrusted.Config())
	lookupRefused(t, c3, obs3, "unknown-ca")
	if n := b.requests.Load() - before; n != 0 {
		t.Fatalf("%d requests crossed a refused handshake", n)
	}
}

// TestH1TLSSilentServer: a server that accepts the connection but never
// answers the handshake is given up at ConnectTimeout.
func TestH1TLSSilentServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	e := newTLSEnv(t)
	s := mustTLS(t, TLSOptions{CertPool: []string{e.caFile}})
	c := newLookupClient(t, Options{URLs: []string{"https://" + l.Addr().String() + "/"}, TLS: s.Config(), ConnectTimeout: 100 * time.Millisecond})
	start := time.Now()
	_, err = c.Lookup(t.Context(), "virtual", "x")
	if re := asError(t, err); re.Kind != KindTimeout || re.Reason != "backend connect timeout" || !re.BeforeResponse {
		t.Fatalf("got %+v", re)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("gave up after %v", d)
	}
}
