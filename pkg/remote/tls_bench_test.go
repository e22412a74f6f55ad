package remote

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/shitenno/shitenno/internal/testutil"
)

// The issue asks that lookups over HTTPS with keep-alive cost within 1.2×
// of plain HTTP after warm-up. Compare:
//
//	go test -run '^$' -bench 'Lookup(HTTP|HTTPS)$' -count 6 ./pkg/remote | benchstat -col /proto -
//
// or simply the ns/op of BenchmarkLookupHTTPS over BenchmarkLookupHTTP.
// The HTTPS backend staples OCSP and the client checks a pin and the
// staple, so the handshake-time checks are included in the warm-up only:
// with keep-alive no lookup pays for a handshake.

func benchBackend() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"Status":"OK","Data":"alice@mbox.example.com"}`)
	})
}

func benchLookups(b *testing.B, c *Client) {
	b.Helper()
	// Warm-up: the connection (and for HTTPS the handshake) is made here.
	if _, err := c.Lookup(b.Context(), "virtual", "alice@example.com"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Lookup(b.Context(), "virtual", "alice@example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookupHTTP(b *testing.B) {
	srv := httptest.NewServer(benchBackend())
	defer srv.Close()
	c, err := New(Options{URLs: []string{srv.URL + "/"}, Timeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseIdle()
	benchLookups(b, c)
}

// benchTLSBackend starts benchBackend over TLS (HTTP/2 if h2) with a
// stapled OCSP response, and returns it with a client TLS setup that
// trusts its CA, pins its key and requires the staple.
func benchTLSBackend(b *testing.B, h2 bool) (*httptest.Server, *TLSSetup) {
	ca := testutil.NewCA(b, "Bench CA", nil)
	leaf, key := ca.Server(b, "backend.test", nil)
	cert := testutil.TLSChain(leaf, key)
	cert.OCSPStaple = ca.OCSP(b, ocsp.Response{Status: ocsp.Good, SerialNumber: leaf.SerialNumber}, nil, nil)
	srv := httptest.NewUnstartedServer(benchBackend())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.EnableHTTP2 = h2
	srv.StartTLS()
	b.Cleanup(srv.Close)
	caFile := writeTestFile(b, b.TempDir(), "ca.pem", testutil.PEMCert(ca.Cert))
	s, err := NewTLS(TLSOptions{CertPool: []string{caFile}, HPKP: []string{SPKIPin(ca.Cert)}, OCSP: OCSPRequireStapled})
	if err != nil {
		b.Fatal(err)
	}
	return srv, s
}

func benchHTTPS(b *testing.B, h2 bool) {
	srv, s := benchTLSBackend(b, h2)
	c, err := New(Options{URLs: []string{srv.URL + "/"}, Timeout: 5 * time.Second, TLS: s.Config()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseIdle()
	benchLookups(b, c)
}

// BenchmarkLookupHTTPS is HTTP/1.1 over TLS, like BenchmarkLookupHTTP.
func BenchmarkLookupHTTPS(b *testing.B) { benchHTTPS(b, false) }

// BenchmarkLookupHTTPS2 is the same over HTTP/2 (what Go negotiates with
// a backend that offers it).
func BenchmarkLookupHTTPS2(b *testing.B) { benchHTTPS(b, true) }

// BenchmarkHandshake is the cost of one full handshake with the pin and
// OCSP checks: what keep-alive saves on every lookup.
func BenchmarkHandshake(b *testing.B) {
	srv, s := benchTLSBackend(b, false)
	conf := s.Config()
	conf.ClientSessionCache = nil // always a full handshake
	addr := srv.Listener.Addr().String()
	for b.Loop() {
		conn, err := tls.Dial("tcp", addr, conf)
		if err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
}
