package remote

// TLS backends and clients for the TLS tests, with certificates and OCSP
// responses from testutil's PKI, all generated per test (no network, no
// fixtures).

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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
