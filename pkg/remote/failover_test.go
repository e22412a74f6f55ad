package remote

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
)

// refusedURL is a loopback URL where nothing listens: connecting is
// refused by the kernel.
func refusedURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "http://" + addr + "/"
}

// rawBackend is a hand-written HTTP/1.1 server over real TCP: on every
// connection it answers the first `answered` requests, then resets the
// connection (RST, no response byte) when the next request arrives. It
// stands for a backend that dies, or drops a keep-alive connection, at
// the worst moment.
type rawBackend struct {
	url      string
	requests atomic.Int64
	conns    *atomic.Int64
	// idemHeader is set if a request carried X-Idempotency-Key on the
	// wire (it must not: it is only a marker for net/http).
	idemHeader atomic.Bool
}

func startRawBackend(t testing.TB, answered int) *rawBackend {
	t.Helper()
	b := &rawBackend{}
	a := testutil.AcceptTCP(t, func(c net.Conn) { b.serve(c, answered) })
	b.url, b.conns = "http://"+a.Addr()+"/", &a.Accepted
	return b
}

func (b *rawBackend) serve(c net.Conn, answered int) {
	defer c.Close()
	br := bufio.NewReader(c)
	for n := 0; ; n++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		b.requests.Add(1)
		if _, ok := req.Header["X-Idempotency-Key"]; ok {
			b.idemHeader.Store(true)
		}
		if n >= answered {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // close with RST
			}
			return
		}
		body := `{"Status":"OK","Data":"raw"}`
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
}

func asError(t testing.TB, err error) *Error {
	t.Helper()
	var re *Error
	if !errors.As(err, &re) {
		t.Fatalf("got %v (%T), want a *remote.Error", err, err)
	}
	return re
}

// TestRefusedThroughNetHTTPIsBeforeResponse checks the classification on
// the real stack: a refused connection comes out of net/http as a dial
// error, so it may go to the next backend.
func TestRefusedThroughNetHTTPIsBeforeResponse(t *testing.T) {
	c := newLookupClient(t, Options{URLs: []string{refusedURL(t)}})
	_, err := c.Lookup(t.Context(), "virtual", "k")
	if re := asError(t, err); re.Kind != "transport" || !re.BeforeResponse {
		t.Fatalf("got %+v", re)
	}
}

func TestFailoverWhenFirstRefuses(t *testing.T) {
	be := newCountingBackend(answer("OK", `"second"`))
	c := newLookupClient(t, Options{URLs: []string{refusedURL(t), startHTTPTest(t, be)}, FailoverBackoff: time.Minute})
	for range 3 {
		r := mustLookup(t, c, "k")
		if string(r.Data) != `"second"` {
			t.Fatalf("got %s", r.Data)
		}
	}
	if n := be.requests.Load(); n != 3 {
		t.Fatalf("second backend got %d requests, want 3", n)
	}
	if c.backends[0].available(time.Now()) {
		t.Fatal("refusing backend not backing off")
	}
}

// TestNoFailoverAfterResponse: once the first backend has answered, even
// badly, the request is not repeated elsewhere and the backend is not
// marked down (it is alive; its answer is the answer).
func TestNoFailoverAfterResponse(t *testing.T) {
	tests := []struct {
		name  string
		reply http.HandlerFunc
		kind  Kind
	}{
		{"HTTP 500", failWith(500), "http"},
		{"HTTP 404", failWith(404), "http"},
		{"bad JSON", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "<html>") }, "json"},
		{"no Status", answer("", `null`), "status"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			first := newCountingBackend(tc.reply)
			second := newCountingBackend(answer("OK", `"second"`))
			c := newLookupClient(t, Options{URLs: []string{startHTTPTest(t, first), startHTTPTest(t, second)}, FailoverBackoff: time.Minute})
			_, err := c.Lookup(t.Context(), "virtual", "k")
			if re := asError(t, err); re.Kind != tc.kind || re.BeforeResponse {
				t.Fatalf("got %+v", re)
			}
			if n := second.requests.Load(); n != 0 {
				t.Fatalf("second backend got %d requests after a response", n)
			}
			if first.requests.Load() != 1 || !c.backends[0].available(time.Now()) {
				t.Fatal("answering backend marked down")
			}
		})
	}
}

// pipeFailover serves first and second as the backends b1:80 and b2:80 of
// a new pipeNet and returns a client of both, in that order, with o's
// other options. Call it inside the bubble.
func pipeFailover(t testing.TB, first, second http.Handler, o Options) (c *Client, b1, b2 *pipeHost) {
	t.Helper()
	var pn pipeNet
	b1, b2 = pn.serve(t, "b1:80", first), pn.serve(t, "b2:80", second)
	o.URLs, o.Transport = []string{"http://b1:80/", "http://b2:80/"}, pn.transport(t)
	return newLookupClient(t, o), b1, b2
}

// TestFailoverBackoffThenReprobe: a refusing backend is skipped for
// FailoverBackoff, then tried again first.
func TestFailoverBackoffThenReprobe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, b1, b2 := pipeFailover(t, answer("OK", `"first"`), answer("OK", `"second"`), Options{FailoverBackoff: 30 * time.Second})
		b1.refuse.Store(true)
		want := func(data string, b1Dials int64) {
			t.Helper()
			if r := mustLookup(t, c, "k"); string(r.Data) != data {
				t.Fatalf("got %s, want %s", r.Data, data)
			}
			if n := b1.dials.Load(); n != b1Dials {
				t.Fatalf("b1 dialed %d times, want %d", n, b1Dials)
			}
		}
		want(`"second"`, 1)
		time.Sleep(29 * time.Second) // within the back-off: b1 is skipped
		want(`"second"`, 1)
		time.Sleep(time.Second) // back-off over: b1 is probed, still refuses
		want(`"second"`, 2)
		b1.refuse.Store(false)
		want(`"second"`, 2) // skipped again for 30s
		time.Sleep(30 * time.Second)
		want(`"first"`, 3) // probed, up: back in first place
		want(`"first"`, 3) // over the same keep-alive connection
		if n := b2.dials.Load(); n != 1 {
			t.Fatalf("b2 dialed %d times: keep-alive lost", n)
		}
	})
}

// TestFailoverLastResort: when every backend that is not backing off
// fails before answering, the ones backing off are tried rather than
// failing the lookup untried.
func TestFailoverLastResort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, b1, b2 := pipeFailover(t, answer("OK", `"first"`), answer("OK", `"second"`), Options{FailoverBackoff: 30 * time.Second})
		b1.refuse.Store(true)
		mustLookup(t, c, "k") // b1 backs off
		b1.refuse.Store(false)
		b2.down()
		time.Sleep(time.Second)
		if r := mustLookup(t, c, "k"); string(r.Data) != `"first"` {
			t.Fatalf("got %s", r.Data)
		}
	})
}

// TestTimeoutAcrossFailover: the Timeout bounds the whole lookup, however
// many backends it tries.
func TestTimeoutAcrossFailover(t *testing.T) {
	const timeout = 2 * time.Second
	hang := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	// A first URL that refuses slowly or hangs, then a second that hangs:
	// a timeout after exactly the Timeout, the second having been tried.
	for _, tc := range []struct {
		name        string
		slowRefusal bool
	}{{"slow refusal then hang", true}, {"both hang", false}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				first := http.Handler(newCountingBackend(hang))
				if tc.slowRefusal {
					first = answer("OK", `"first"`)
				}
				c, b1, b2 := pipeFailover(t, first, newCountingBackend(hang), Options{Timeout: timeout, FailoverBackoff: time.Minute})
				if tc.slowRefusal {
					b1.refuse.Store(true)
					b1.dialDelay.Store(int64(1500 * time.Millisecond))
				}
				start := time.Now()
				_, err := c.Lookup(t.Context(), "virtual", "k")
				if re := asError(t, err); re.Kind != "timeout" {
					t.Fatalf("got %+v", re)
				}
				if d := time.Since(start); d != timeout {
					t.Fatalf("lookup took %v, want %v", d, timeout)
				}
				if b2.dials.Load() != 1 {
					t.Fatal("second backend not tried")
				}
			})
		})
	}
	// A first URL that hangs gets its share of the Timeout (half, with
	// two URLs), then the second answers and the first is skipped.
	t.Run("first hangs", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c, _, b2 := pipeFailover(t, newCountingBackend(hang), answer("OK", `"second"`), Options{Timeout: timeout, FailoverBackoff: time.Minute})
			start := time.Now()
			if r := mustLookup(t, c, "k"); string(r.Data) != `"second"` {
				t.Fatalf("got %s", r.Data)
			}
			if d := time.Since(start); d != timeout/2 {
				t.Fatalf("lookup took %v, want %v", d, timeout/2)
			}
			if b2.dials.Load() != 1 {
				t.Fatal("second backend not tried")
			}
			if c.backends[0].available(time.Now()) {
				t.Fatal("silent backend not marked down")
			}
		})
	})
	// A backend that has begun its answer keeps the whole Timeout: the
	// per-attempt budget only bounds the wait for the first byte.
	t.Run("slow body keeps the Timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c, _, _ := pipeFailover(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(200)
				_, _ = io.WriteString(w, `{"Status":`)
				w.(http.Flusher).Flush()
				time.Sleep(timeout * 3 / 4)
				_, _ = io.WriteString(w, `"OK","Data":"first"}`)
			}), answer("OK", `"second"`), Options{Timeout: timeout, FailoverBackoff: time.Minute})
			if r := mustLookup(t, c, "k"); string(r.Data) != `"first"` {
				t.Fatalf("got %s", r.Data)
			}
		})
	})
}

// TestReusedConnectionResetIsRetried: a keep-alive connection the backend
// drops just as a request is sent on it fails before any response byte.
// That is a stale connection, not a dead backend: the lookup must succeed
// on a fresh connection to the same backend, not fail nor fail over.
func TestReusedConnectionResetIsRetried(t *testing.T) {
	b := startRawBackend(t, 1)
	c := newLookupClient(t, Options{URLs: []string{b.url}})
	for i := range 2 {
		if r := mustLookup(t, c, "k"); string(r.Data) != `"raw"` {
			t.Fatalf("lookup %d: got %s", i, r.Data)
		}
	}
	if n, m := b.requests.Load(), b.conns.Load(); n != 3 || m != 2 {
		t.Fatalf("backend saw %d requests on %d connections, want 3 on 2", n, m)
	}
	if b.idemHeader.Load() {
		t.Fatal("X-Idempotency-Key sent on the wire")
	}
}

// TestResetBeforeResponseFailsOver: a backend that takes the connection
// and resets it before answering anything is a failure before response.
func TestResetBeforeResponseFailsOver(t *testing.T) {
	b := startRawBackend(t, 0)
	t.Run("classified", func(t *testing.T) {
		c := newLookupClient(t, Options{URLs: []string{b.url}})
		_, err := c.Lookup(t.Context(), "virtual", "k")
		if re := asError(t, err); re.Kind != "transport" || !re.BeforeResponse {
			t.Fatalf("got %+v", re)
		}
	})
	t.Run("fails over", func(t *testing.T) {
		second := newCountingBackend(answer("OK", `"second"`))
		c := newLookupClient(t, Options{URLs: []string{b.url, startHTTPTest(t, second)}, FailoverBackoff: time.Minute})
		if r := mustLookup(t, c, "k"); string(r.Data) != `"second"` {
			t.Fatalf("got %s", r.Data)
		}
	})
}

// TestResetAfterResponseHeaderDoesNotFailOver: bytes of a response were
// received, so the request is not repeated elsewhere.
func TestResetAfterResponseHeaderDoesNotFailOver(t *testing.T) {
	first := newCountingBackend(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, `{"Status":`)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drop the connection mid-body
	})
	second := newCountingBackend(answer("OK", `"second"`))
	c := newLookupClient(t, Options{URLs: []string{startHTTPTest(t, first), startHTTPTest(t, second)}})
	_, err := c.Lookup(t.Context(), "virtual", "k")
	if re := asError(t, err); re.BeforeResponse {
		t.Fatalf("got %+v", re)
	}
	if second.requests.Load() != 0 {
		t.Fatal("request repeated after a response began")
	}
}

// TestGarbageResponseDoesNotFailOver: a reply that is not HTTP still means
// bytes of a response arrived.
func TestGarbageResponseDoesNotFailOver(t *testing.T) {
	garbage := testutil.AcceptTCP(t, func(c net.Conn) {
		_, _ = http.ReadRequest(bufio.NewReader(c))
		_, _ = io.WriteString(c, "SMTP 220 hello\r\n\r\n")
		_ = c.Close()
	})
	second := newCountingBackend(answer("OK", `"second"`))
	c := newLookupClient(t, Options{URLs: []string{"http://" + garbage.Addr() + "/", startHTTPTest(t, second)}})
	_, err := c.Lookup(t.Context(), "virtual", "k")
	if re := asError(t, err); re.Kind != "transport" || re.BeforeResponse {
		t.Fatalf("got %+v", re)
	}
	if second.requests.Load() != 0 {
		t.Fatal("request repeated after a garbage response")
	}
}

// blackHole is a backend that accepts TCP connections and reads what is
// sent but never answers: a hung process, or a route whose packets go
// nowhere once the handshake is done.
type blackHole struct {
	url   string
	conns *atomic.Int64
}

func startBlackHole(t testing.TB) *blackHole {
	t.Helper()
	a := testutil.AcceptTCP(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	return &blackHole{url: "http://" + a.Addr() + "/", conns: &a.Accepted}
}

// TestFailoverFromSilentBackend: a first URL that takes the request and
// never answers still leaves the second URL time to answer within one
// Timeout, and is then skipped like a refusing one.
func TestFailoverFromSilentBackend(t *testing.T) {
	const timeout = 3 * time.Second
	hole := startBlackHole(t)
	second := newCountingBackend(answer("OK", `"second"`))
	c := newLookupClient(t, Options{URLs: []string{hole.url, startHTTPTest(t, second)}, Timeout: timeout, FailoverBackoff: time.Minute})
	start := time.Now()
	r, err := c.Lookup(t.Context(), "virtual", "k")
	if err != nil {
		t.Fatalf("lookup failed after %v: %v", time.Since(start), err)
	}
	if d := time.Since(start); string(r.Data) != `"second"` || d >= timeout {
		t.Fatalf("got %s after %v, want the second URL's answer within %v", r.Data, d, timeout)
	}
	if hole.conns.Load() != 1 {
		t.Fatalf("silent backend got %d connections, want 1", hole.conns.Load())
	}
	if c.backends[0].available(time.Now()) {
		t.Fatal("silent backend not marked down")
	}
	// The following lookups go straight to the second URL.
	for i := range 3 {
		start := time.Now()
		r := mustLookup(t, c, fmt.Sprint("k", i))
		if d := time.Since(start); string(r.Data) != `"second"` || d > time.Second {
			t.Fatalf("lookup %d: got %s after %v", i, r.Data, d)
		}
	}
	if n := hole.conns.Load(); n != 1 {
		t.Fatalf("silent backend got %d connections while backing off", n)
	}
}

// TestSilentBackendNonIdempotentVerbNotRetried: a "sasl" or "policy"
// request the backend received but did not answer may have had its side
// effect (a failed-login counter, a rate limit): it is not sent again to
// the next URL. The silent URL is still marked down.
func TestSilentBackendNonIdempotentVerbNotRetried(t *testing.T) {
	for _, verb := range []string{"sasl", "policy"} {
		t.Run(verb, func(t *testing.T) {
			t.Parallel()
			const timeout = time.Second
			hole := startBlackHole(t)
			second := newCountingBackend(answer("OK", `"second"`))
			c := newLookupClient(t, Options{URLs: []string{hole.url, startHTTPTest(t, second)}, Timeout: timeout, FailoverBackoff: time.Minute})
			start := time.Now()
			_, err := c.Lookup(t.Context(), verb, "k")
			if re := asError(t, err); re.Kind != "timeout" {
				t.Fatalf("got %+v", re)
			}
			// The one attempt had the whole Timeout: it will not be retried,
			// so cutting it short would gain nothing.
			if d := time.Since(start); d < timeout {
				t.Fatalf("gave up after %v, before the Timeout", d)
			}
			if n := second.requests.Load(); n != 0 {
				t.Fatalf("%s request sent again to the second URL", verb)
			}
			if c.backends[0].available(time.Now()) {
				t.Fatal("silent backend not marked down")
			}
			if r := mustLookup(t, c, "k"); string(r.Data) != `"second"` {
				t.Fatalf("got %s", r.Data)
			}
		})
	}
}

// TestNonIdempotentVerbFailsOverBeforeSending: a refused connection means
// the request never left, so even a "sasl" request goes to the next URL.
func TestNonIdempotentVerbFailsOverBeforeSending(t *testing.T) {
	second := newCountingBackend(answer("OK", `"second"`))
	c := newLookupClient(t, Options{URLs: []string{refusedURL(t), startHTTPTest(t, second)}, FailoverBackoff: time.Minute})
	if _, err := c.Lookup(t.Context(), "sasl", "k"); err != nil {
		t.Fatal(err)
	}
	if second.requests.Load() != 1 {
		t.Fatal("sasl request not failed over after a refused connection")
	}
}

// TestNonIdempotentVerbNotRetriedAfterReset: a connection reset after the
// request was written is a failure before response, retried for a
// lookup (TestResetBeforeResponseFailsOver) but not for a "sasl" request.
func TestNonIdempotentVerbNotRetriedAfterReset(t *testing.T) {
	b := startRawBackend(t, 0)
	second := newCountingBackend(answer("OK", `"second"`))
	c := newLookupClient(t, Options{URLs: []string{b.url, startHTTPTest(t, second)}, FailoverBackoff: time.Minute})
	_, err := c.Lookup(t.Context(), "sasl", "k")
	if re := asError(t, err); re.Kind != "transport" || !re.BeforeResponse {
		t.Fatalf("got %+v", re)
	}
	if second.requests.Load() != 0 {
		t.Fatal("sasl request sent again after the first backend received it")
	}
	if b.requests.Load() != 1 {
		t.Fatalf("first backend saw %d requests, want 1 (no silent resend)", b.requests.Load())
	}
}

// TestNonIdempotentVerbsOption: the set of verbs never resent is an
// option (the verbs are configurable).
func TestNonIdempotentVerbsOption(t *testing.T) {
	b := startRawBackend(t, 0)
	second := newCountingBackend(answer("OK", `"second"`))
	c := newLookupClient(t, Options{URLs: []string{b.url, startHTTPTest(t, second)}, FailoverBackoff: time.Minute, NonIdempotentVerbs: []string{"login"}})
	if _, err := c.Lookup(t.Context(), "login", "k"); err == nil {
		t.Fatal("login request retried")
	}
	if _, err := c.Lookup(t.Context(), "sasl", "k"); err != nil {
		t.Fatalf("sasl is idempotent with this option: %v", err)
	}
}

// TestConnectTimeout: a dial that hangs (SYN dropped) is given up after
// ConnectTimeout, so the next URL is tried within the Timeout.
func TestConnectTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, b1, _ := pipeFailover(t, answer("OK", `"first"`), answer("OK", `"second"`), Options{Timeout: 3 * time.Second, ConnectTimeout: 500 * time.Millisecond, FailoverBackoff: time.Minute})
		b1.dialDelay.Store(int64(time.Hour))
		start := time.Now()
		if r := mustLookup(t, c, "k"); string(r.Data) != `"second"` {
			t.Fatalf("got %s", r.Data)
		}
		if d := time.Since(start); d != 500*time.Millisecond {
			t.Fatalf("failed over after %v, want the ConnectTimeout", d)
		}
	})
}
