package remote

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync/atomic"
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

// heldConn sends nothing while hold is set: flush then writes what was
// held in one write, so that the peer gets it in one read.
type heldConn struct {
	net.Conn
	hold bool
	buf  []byte
}

func (c *heldConn) Write(p []byte) (int, error) {
	if c.hold {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *heldConn) flush() error {
	c.hold = false
	// CloseWrite left a write deadline in the past, for the tls.Conn.
	_ = c.Conn.SetWriteDeadline(time.Time{})
	_, err := c.Conn.Write(c.buf)
	c.buf = nil
	return err
}

// serveHeldTLS serves TLS connections with conf, calling reply for each
// request with its Object and the connection's writes held, so that
// whatever reply writes leaves in one segment at hc.flush. reply returns
// whether to go on reading requests.
func serveHeldTLS(t *testing.T, conf *tls.Config, reply func(c net.Conn, tc *tls.Conn, hc *heldConn, obj string) bool) *testutil.Acceptor {
	return testutil.AcceptTCP(t, func(c net.Conn) {
		defer c.Close()
		hc := &heldConn{Conn: c}
		tc := tls.Server(hc, conf)
		serveEach(bufio.NewReader(tc), func(obj string) bool {
			hc.hold = true
			return reply(c, tc, hc, obj)
		})
	})
}

// TestH1TLSCloseNotifyWithReply: a backend that sends its close_notify
// in the same segment as a reply, and keeps the TCP connection open, has
// ended the connection although the socket shows nothing more (crypto/tls
// read the alert along with the reply). A "sasl" request, which may not be
// sent twice, must not go on that connection: it would fail. TLS 1.2 and
// 1.3 differ: crypto/tls sees a 1.2 alert as one and returns it with the
// reply, a 1.3 one only when asked for more. A backend that keeps the
// connection gets every request on it: the look before a "sasl" request
// leaves it usable.
func TestH1TLSCloseNotifyWithReply(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) { testCloseNotifyWithReply(t, v, true) })
		t.Run(tls.VersionName(v)+" kept", func(t *testing.T) { testCloseNotifyWithReply(t, v, false) })
	}
}

func testCloseNotifyWithReply(t *testing.T, version uint16, closeNotify bool) {
	e := newTLSEnv(t)
	var requests atomic.Int64
	conf := &tls.Config{Certificates: []tls.Certificate{e.cert()}, MinVersion: version, MaxVersion: version}
	a := serveHeldTLS(t, conf, func(c net.Conn, tc *tls.Conn, hc *heldConn, _ string) bool {
		requests.Add(1)
		if _, err := io.WriteString(tc, okReply("")); err != nil {
			return false
		}
		if closeNotify && tc.CloseWrite() != nil {
			return false
		}
		if hc.flush() != nil {
			return false
		}
		if closeNotify {
			_, _ = io.Copy(io.Discard, c) // the TCP connection stays open until the client closes it
			return false
		}
		return true
	})
	c, _ := newH1TLSClient(t, "https://"+a.Addr()+"/", mustTLS(t, TLSOptions{CertPool: []string{e.caFile}}).Config())
	for i := range 3 {
		if _, err := c.Lookup(t.Context(), "sasl", "k"); err != nil {
			t.Fatalf("sasl %d: %v", i, err)
		}
	}
	want := int64(1)
	if closeNotify {
		want = 3
	}
	if n, m := requests.Load(), a.Accepted.Load(); n != 3 || m != want {
		t.Fatalf("%d requests on %d connections, want 3 on %d", n, m, want)
	}
}

// TestH1TLSUnsolicitedRecord: over TLS, a reply followed in the same
// segment by a record the client did not ask for. crypto/tls hands over
// one record per read and keeps the other: neither the read buffer nor
// the socket shows it, and it must still end the connection.
func TestH1TLSUnsolicitedRecord(t *testing.T) {
	e := newTLSEnv(t)
	conf := &tls.Config{Certificates: []tls.Certificate{e.cert()}}
	var requests atomic.Int64
	a := serveHeldTLS(t, conf, func(_ net.Conn, tc *tls.Conn, hc *heldConn, obj string) bool {
		_, _ = io.WriteString(tc, h1Reply(`{"Status":"OK","Data":`+obj+`}`))
		if requests.Add(1) == 1 {
			_, _ = io.WriteString(tc, h1Reply(`{"Status":"KO","Data":"stale"}`))
		}
		return hc.flush() == nil
	})
	c, _ := newH1TLSClient(t, "https://"+a.Addr()+"/", mustTLS(t, TLSOptions{CertPool: []string{e.caFile}}).Config())
	checkLookupsAnswered(t, c)
}

// TestTLSErrorAfterResponseBegun: a TLS record the client cannot read
// after the status line is a failure after the response began (so an
// idempotent lookup is not sent to the next URL as if the backend never
// answered), on either transport.
func TestTLSErrorAfterResponseBegun(t *testing.T) {
	e := newTLSEnv(t)
	conf := &tls.Config{Certificates: []tls.Certificate{e.cert()}, MaxVersion: tls.VersionTLS12}
	a := testutil.AcceptTCP(t, func(c net.Conn) {
		defer c.Close()
		tc := tls.Server(c, conf)
		req, err := http.ReadRequest(bufio.NewReader(tc))
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		_, _ = io.WriteString(tc, "HTTP/1.1 200 OK\r\n")
		time.Sleep(20 * time.Millisecond)
		// A record header with a version no TLS 1.2 peer sends.
		_, _ = c.Write([]byte{23, 3, 0, 0, 5, 1, 2, 3, 4, 5})
		time.Sleep(100 * time.Millisecond)
	})
	url := "https://" + a.Addr() + "/"
	setup := mustTLS(t, TLSOptions{CertPool: []string{e.caFile}})
	for _, viaNetHTTP := range []bool{false, true} {
		o := Options{URLs: []string{url}, TLS: setup.Config()}
		if viaNetHTTP {
			o.Transport = NewTransport(setup.Config(), 0)
		}
		c := newLookupClient(t, o)
		_, err := c.Lookup(t.Context(), "virtual", "k")
		if re := asError(t, err); re.BeforeResponse {
			t.Errorf("nethttp=%v: %+v has BeforeResponse set after a status line arrived", viaNetHTTP, re)
		}
	}
}
