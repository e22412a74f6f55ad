package remote

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
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
	conns    atomic.Int64
	// idemHeader is set if a request carried X-Idempotency-Key on the
	// wire (it must not: it is only a marker for net/http).
	idemHeader atomic.Bool
}

func startRawBackend(t testing.TB, answered int) *rawBackend {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &rawBackend{url: "http://" + l.Addr().String() + "/"}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		open []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			b.conns.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Go(func() { b.serve(c, answered) })
		}
	})
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		for _, c := range open {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
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
		kind  string
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

// TestFailoverBackoffThenReprobe: a refusing backend is skipped for
// FailoverBackoff, then tried again first.
func TestFailoverBackoffThenReprobe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var pn pipeNet
		b1 := pn.serve(t, "b1:80", answer("OK", `"first"`))
		b2 := pn.serve(t, "b2:80", answer("OK", `"second"`))
		b1.refuse.Store(true)
		c := newLookupClient(t, Options{URLs: []string{"http://b1:80/", "http://b2:80/"}, FailoverBackoff: 30 * time.Second, Transport: pn.transport(t)})
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
		var pn pipeNet
		b1 := pn.serve(t, "b1:80", answer("OK", `"first"`))
		b2 := pn.serve(t, "b2:80", answer("OK", `"second"`))
		b1.refuse.Store(true)
		c := newLookupClient(t, Options{URLs: []string{"http://b1:80/", "http://b2:80/"}, FailoverBackoff: 30 * time.Second, Transport: pn.transport(t)})
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
	t.Run("slow refusal then hang", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var pn pipeNet
			b1 := pn.serve(t, "b1:80", answer("OK", `"first"`))
			b2 := pn.serve(t, "b2:80", newCountingBackend(hang))
			b1.refuse.Store(true)
			b1.dialDelay.Store(int64(1500 * time.Millisecond))
			c := newLookupClient(t, Options{URLs: []string{"http://b1:80/", "http://b2:80/"}, Timeout: timeout, FailoverBackoff: time.Minute, Transport: pn.transport(t)})
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
	t.Run("first hangs", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var pn pipeNet
			pn.serve(t, "b1:80", newCountingBackend(hang))
			b2 := pn.serve(t, "b2:80", answer("OK", `"second"`))
			c := newLookupClient(t, Options{URLs: []string{"http://b1:80/", "http://b2:80/"}, Timeout: timeout, FailoverBackoff: time.Minute, Transport: pn.transport(t)})
			start := time.Now()
			_, err := c.Lookup(t.Context(), "virtual", "k")
			if re := asError(t, err); re.Kind != "timeout" {
				t.Fatalf("got %+v", re)
			}
			if d := time.Since(start); d != timeout {
				t.Fatalf("lookup took %v, want %v", d, timeout)
			}
			if b2.dials.Load() != 0 {
				t.Fatal("second backend tried after the Timeout")
			}
			// A timeout is not a refusal: b1 stays first.
			if !c.backends[0].available(time.Now()) {
				t.Fatal("timed-out backend marked down")
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
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = http.ReadRequest(bufio.NewReader(c))
			_, _ = io.WriteString(c, "SMTP 220 hello\r\n\r\n")
			_ = c.Close()
		}
	})
	second := newCountingBackend(answer("OK", `"second"`))
	c := newLookupClient(t, Options{URLs: []string{"http://" + l.Addr().String() + "/", startHTTPTest(t, second)}})
	_, err = c.Lookup(t.Context(), "virtual", "k")
	if re := asError(t, err); re.Kind != "transport" || re.BeforeResponse {
		t.Fatalf("got %+v", re)
	}
	if second.requests.Load() != 0 {
		t.Fatal("request repeated after a garbage response")
	}
}
