package remote

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
)

// scriptedBackend is a hand-written HTTP/1.1 server over loopback TCP that
// answers every request with reply(request number on the connection), as
// raw bytes: the client's parser sees exactly what a hostile or broken
// backend would send. close ends the connection after that reply (FIN).
type scriptedBackend struct {
	url      string
	conns    *atomic.Int64
	requests atomic.Int64
	// hold delays every reply (a slow backend).
	hold time.Duration
}

func startScripted(t testing.TB, reply func(n int) (raw string, close bool)) *scriptedBackend {
	t.Helper()
	b := &scriptedBackend{}
	a := testutil.AcceptTCP(t, func(c net.Conn) { b.serve(c, reply) })
	b.url, b.conns = "http://"+a.Addr()+"/", &a.Accepted
	return b
}

func (b *scriptedBackend) serve(c net.Conn, reply func(int) (string, bool)) {
	defer c.Close()
	br := bufio.NewReader(c)
	for n := 0; b.next(br) == nil; n++ {
		time.Sleep(b.hold)
		raw, closeAfter := reply(n)
		if _, err := io.WriteString(c, raw); err != nil || closeAfter {
			return
		}
	}
}

// next reads one request, body included.
func (b *scriptedBackend) next(br *bufio.Reader) error {
	req, err := http.ReadRequest(br)
	if err == nil {
		_, err = io.Copy(io.Discard, req.Body)
		b.requests.Add(1)
	}
	return err
}

// always gives the same reply to every request.
func always(raw string) func(int) (string, bool) {
	return func(int) (string, bool) { return raw, false }
}

const okBody = `{"Status":"OK","Data":"x"}`

func okReply(extra string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s", extra, len(okBody), okBody)
}

func chunked(parts ...string) string {
	var s strings.Builder
	for _, p := range parts {
		fmt.Fprintf(&s, "%x\r\n%s\r\n", len(p), p)
	}
	return s.String() + "0\r\n\r\n"
}

// h1ReplyCase is a backend reply and what three lookups against a
// backend giving it to every request come to.
type h1ReplyCase struct {
	name  string
	reply string
	kind  Kind // "" : found
	conns int64
	close bool // the backend closes the connection after its reply
}

func h1ReplyCases() []h1ReplyCase {
	bigHeader := "X-Big: " + strings.Repeat("a", 70<<10) + "\r\n"
	manyFields := strings.Repeat("X-A: b\r\n", 200)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = io.WriteString(zw, okBody)
	_ = zw.Close()
	var bomb bytes.Buffer // 2 MiB of zeros: over MaxReplySize once decoded
	zw = gzip.NewWriter(&bomb)
	_, _ = zw.Write(make([]byte, 2<<20))
	_ = zw.Close()
	return []h1ReplyCase{
		{"content-length", okReply(""), "", 1, false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(`{"Status":`, `"OK","Data":"x"}`), "", 1, false},
		{"chunked with extension and trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n" +
			fmt.Sprintf("%x;ext=1\r\n%s\r\n0\r\nX-T: 1\r\n\r\n", len(okBody), okBody), "", 1, false},
		{"long fields", okReply("Cache-Control: max-age=1, x=\"" + strings.Repeat("a", 10<<10) + "\"\r\nX-B: " + strings.Repeat("b", 20<<10) + "\r\n"), "", 1, false},
		{"bare LF", strings.ReplaceAll(okReply(""), "\r\n", "\n"), "", 1, false},
		{"100 and 103 first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + okReply(""), "", 1, false},
		{"gzip", fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s", gz.Len(), gz.String()), "", 1, false},
		{"connection close", okReply("Connection: close\r\n"), "", 3, false},
		{"HTTP/1.0", strings.Replace(okReply(""), "HTTP/1.1", "HTTP/1.0", 1), "", 3, false},
		{"HTTP/1.0 keep-alive", strings.Replace(okReply("Connection: keep-alive\r\n"), "HTTP/1.1", "HTTP/1.0", 1), "", 1, false},
		{"until close", "HTTP/1.1 200 OK\r\n\r\n" + okBody, "", 3, true},
		{"bytes after the reply", okReply("") + "HTTP/1.1 200 OK\r\n", "", 3, false},
		{"duplicate equal lengths", okReply(fmt.Sprintf("Content-Length: %d\r\n", len(okBody))), "", 1, false},
		{"not HTTP", "SMTP 220 hello\r\n\r\n", KindTransport, 3, false},
		{"HTTP/2.0", strings.Replace(okReply(""), "HTTP/1.1", "HTTP/2.0", 1), KindTransport, 3, false},
		{"status 99", strings.Replace(okReply(""), "200", "099", 1), KindTransport, 3, false},
		{"status 2000", strings.Replace(okReply(""), "200 OK", "2000 OK", 1), KindTransport, 3, false},
		{"101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", KindHTTP, 3, false},
		{"six 1xx", strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 6) + okReply(""), KindTransport, 3, false},
		{"head over 64 KiB", okReply(bigHeader), KindTransport, 3, false},
		{"over 128 fields", okReply(manyFields), KindTransport, 3, false},
		{"folded field", okReply("X-A: b\r\n c\r\n"), KindTransport, 3, false},
		{"space before colon", okReply("X-A : b\r\n"), KindTransport, 3, false},
		{"control byte in value", okReply("X-A: b\x01\r\n"), KindTransport, 3, false},
		{"length and chunked", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(okBody), KindTransport, 3, false},
		{"two lengths", okReply("Content-Length: 3\r\n"), KindTransport, 3, false},
		{"signed length", strings.Replace(okReply(""), "Length: ", "Length: +", 1), KindTransport, 3, false},
		{"gzip transfer coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + chunked(okBody), KindTransport, 3, false},
		{"empty transfer coding on 204", "HTTP/1.1 204 No Content\r\nTransfer-Encoding:\r\n\r\n", KindTransport, 3, false},
		{"gzip transfer coding on 100", "HTTP/1.1 100 Continue\r\nTransfer-Encoding: gzip\r\n\r\n" + okReply(""), KindTransport, 3, false},
		{"two transfer codings on 304", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", KindTransport, 3, false},
		{"chunked in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(okBody), KindTransport, 3, false},
		{"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + okBody + "\r\n0\r\n\r\n", KindBody, 3, false},
		{"chunk without CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\n" + okBody + "XX0\r\n\r\n", KindBody, 3, false},
		{"chunk junk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
			strings.Repeat("1;"+strings.Repeat("e", 4000)+"\r\n{\r\n", 8) + "0\r\n\r\n", KindBody, 3, false},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + okBody, KindBody, 3, true},
		{"too large", "HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n", KindBody, 3, false},
		{"too large chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(strings.Repeat("a", 1<<20+1)), KindBody, 3, false},
		{"gzip over MaxReplySize", fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s", bomb.Len(), bomb.String()), KindBody, 1, false},
		{"bad gzip", "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nnotgz", KindBody, 1, false},
		{"HTTP 500", "HTTP/1.1 500 Oops\r\nContent-Length: 2\r\n\r\nno", KindHTTP, 1, false},
		{"HTTP 204", "HTTP/1.1 204 No Content\r\n\r\n", KindJSON, 1, false},
	}
}

// TestH1Replies: what the in-goroutine client accepts and refuses of a
// backend's reply, and when it keeps the connection.
func TestH1Replies(t *testing.T) {
	for _, tc := range h1ReplyCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := startScripted(t, func(int) (string, bool) { return tc.reply, tc.close })
			c := newLookupClient(t, Options{URLs: []string{b.url}, Timeout: 2 * time.Second})
			if c.backends[0].h1 == nil {
				t.Fatal("not served by the in-goroutine transport")
			}
			for i := range 3 {
				r, err := c.Lookup(t.Context(), "virtual", "k")
				if tc.kind == "" {
					if err != nil || string(r.Data) != `"x"` {
						t.Fatalf("lookup %d: %+v, %v", i, r, err)
					}
					continue
				}
				if re := asError(t, err); re.Kind != tc.kind || re.BeforeResponse {
					t.Fatalf("lookup %d: got %+v, want kind %s after a response", i, re, tc.kind)
				}
			}
			if n := b.conns.Load(); n != tc.conns {
				t.Fatalf("3 lookups took %d connections, want %d", n, tc.conns)
			}
		})
	}
}

// TestH1ServedURLs: the URLs the in-goroutine transport takes, and the
// request line and Host it sends for them, as net/http would.
func TestH1ServedURLs(t *testing.T) {
	for _, tc := range []struct {
		base, verb, line string
	}{
		{"http://u:p@h:8080/api/", "virtual", "POST /api/virtual HTTP/1.1\r\nHost: h:8080\r\n"},
		{"http://h/", "a/b c", "POST /a%2Fb%20c HTTP/1.1\r\nHost: h\r\n"},
		{"https://[fe80::1%25eth0]:443/x/", "v", "POST /x/v HTTP/1.1\r\nHost: [fe80::1]:443\r\n"},
		{"http://h", "v", ""}, // the verb would be part of the host
		{"http://h/?q=", "v", ""},
		{"ftp://h/", "v", ""},
	} {
		c, err := New(Options{URLs: []string{tc.base}})
		if err != nil {
			t.Fatal(err)
		}
		b := c.backends[0]
		var head string
		if b.h1 != nil {
			head, _ = b.h1Head(tc.verb)
		}
		if !strings.HasPrefix(head, tc.line) || (tc.line == "") != (head == "") {
			t.Errorf("%s + %s: head %q, want it to start with %q", tc.base, tc.verb, head, tc.line)
		}
		if strings.Contains(tc.base, "u:p@") && !strings.Contains(head, "Authorization: Basic dTpw\r\n") {
			t.Errorf("%s: no basic auth in %q", tc.base, head)
		}
	}
}

// TestH1MaxConnsPerHost: at most MaxConnsPerHost connections are open;
// lookups beyond wait for one and all succeed on those few connections.
func TestH1MaxConnsPerHost(t *testing.T) {
	b := startScripted(t, always(okReply("")))
	b.hold = 20 * time.Millisecond
	c := newLookupClient(t, Options{URLs: []string{b.url}, MaxConnsPerHost: 2})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if _, err := c.Lookup(t.Context(), "virtual", fmt.Sprint("k", i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := b.conns.Load(); n != 2 {
		t.Fatalf("8 lookups opened %d connections, want 2", n)
	}
	if h := c.backends[0].h1; len(h.idle) != 2 || h.open != 2 || len(h.waiters) != 0 {
		t.Fatalf("pool: %d idle, %d open, %d waiting", len(h.idle), h.open, len(h.waiters))
	}
}

// TestH1WaitCountsAsConnect: a lookup waiting for a connection at
// MaxConnsPerHost gives up at ConnectTimeout, as a connect timeout before
// any response, and leaves the pool as it was.
func TestH1WaitCountsAsConnect(t *testing.T) {
	hole := startBlackHole(t)
	c := newLookupClient(t, Options{URLs: []string{hole.url}, MaxConnsPerHost: 1, Timeout: 3 * time.Second, ConnectTimeout: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() {
		_, err := c.Lookup(ctx, "virtual", "a")
		first <- err
	}()
	for hole.conns.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	_, err := c.Lookup(t.Context(), "virtual", "b")
	if re := asError(t, err); re.Kind != KindTimeout || re.Reason != "backend connect timeout" || !re.BeforeResponse {
		t.Fatalf("got %+v", re)
	}
	cancel()
	if re := asError(t, <-first); re.Kind != KindTimeout {
		t.Fatalf("first lookup: %+v", re)
	}
	if h := c.backends[0].h1; h.open != 0 || len(h.waiters) != 0 {
		t.Fatalf("pool after: %d open, %d waiting", h.open, len(h.waiters))
	}
}

// TestH1NonIdempotentSkipsClosedIdle: a backend that closes a keep-alive
// connection after its idle time does not fail a "sasl" request sent
// after that (which may not be resent once written): the closed
// connection is seen before the request goes out.
func TestH1NonIdempotentSkipsClosedIdle(t *testing.T) {
	b := startScripted(t, func(int) (string, bool) { return okReply(""), true })
	c := newLookupClient(t, Options{URLs: []string{b.url}})
	for i := range 3 {
		if _, err := c.Lookup(t.Context(), "sasl", "k"); err != nil {
			t.Fatalf("sasl %d: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond) // the FIN arrives
	}
	if n, m := b.requests.Load(), b.conns.Load(); n != 3 || m != 3 {
		t.Fatalf("%d requests on %d connections, want 3 on 3", n, m)
	}
}

// TestH1NonIdempotentNotResentOnReusedConn: a "sasl" request written on a
// reused connection that the backend then resets is not sent again
// (net/http's rule for non-replayable requests).
func TestH1NonIdempotentNotResentOnReusedConn(t *testing.T) {
	b := startRawBackend(t, 1)
	c := newLookupClient(t, Options{URLs: []string{b.url}})
	if _, err := c.Lookup(t.Context(), "sasl", "k"); err != nil {
		t.Fatal(err)
	}
	_, err := c.Lookup(t.Context(), "sasl", "k")
	if re := asError(t, err); re.Kind != KindTransport || !re.BeforeResponse || !re.sent {
		t.Fatalf("got %+v", re)
	}
	if n := b.requests.Load(); n != 2 {
		t.Fatalf("backend saw %d requests, want 2", n)
	}
}

// h1PipeClient is a client whose in-goroutine transport dials pn (inside a
// synctest bubble).
func h1PipeClient(t testing.TB, pn *pipeNet, o Options) *Client {
	t.Helper()
	c := newLookupClient(t, o)
	for _, h := range c.h1 {
		h.dial = pn.dial
	}
	return c
}

// The deadline tests below hold the in-goroutine transport to the
// virtual nanosecond, as the net/http path is (TestTimeoutAcrossFailover,
// TestConnectTimeout).
const h1Timeout = 2 * time.Second

var h1URLs = []string{"http://b1:80/", "http://b2:80/"}

func h1Hang(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

// h1Subtest runs f as subtest name in a synctest bubble (virtual time)
// with a pipe network of its own.
func h1Subtest(t *testing.T, name string, f func(t *testing.T, pn *pipeNet)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var pn pipeNet
			f(t, &pn)
		})
	})
}

// TestH1ConnectTimeout: a dial that hangs is given up at ConnectTimeout.
func TestH1ConnectTimeout(t *testing.T) {
	h1Subtest(t, "connect timeout", func(t *testing.T, pn *pipeNet) {
		b1 := pn.serve(t, "b1:80", answer("OK", `"first"`))
		pn.serve(t, "b2:80", answer("OK", `"second"`))
		b1.dialDelay.Store(int64(time.Hour))
		c := h1PipeClient(t, pn, Options{URLs: h1URLs, Timeout: 3 * time.Second, ConnectTimeout: 500 * time.Millisecond, FailoverBackoff: time.Minute})
		start := time.Now()
		if r := mustLookup(t, c, "k"); string(r.Data) != `"second"` || time.Since(start) != 500*time.Millisecond {
			t.Fatalf("got %s after %v", r.Data, time.Since(start))
		}
	})
}

// TestH1AttemptBudget: a silent first URL gets its share of the Timeout.
func TestH1AttemptBudget(t *testing.T) {
	h1Subtest(t, "first hangs", func(t *testing.T, pn *pipeNet) {
		pn.serve(t, "b1:80", newCountingBackend(h1Hang))
		pn.serve(t, "b2:80", answer("OK", `"second"`))
		c := h1PipeClient(t, pn, Options{URLs: h1URLs, Timeout: h1Timeout, FailoverBackoff: time.Minute})
		start := time.Now()
		if r := mustLookup(t, c, "k"); string(r.Data) != `"second"` || time.Since(start) != h1Timeout/2 {
			t.Fatalf("got %s after %v", r.Data, time.Since(start))
		}
		if c.backends[0].available(time.Now()) {
			t.Fatal("silent backend not marked down")
		}
	})
	h1Subtest(t, "both hang", func(t *testing.T, pn *pipeNet) {
		pn.serve(t, "b1:80", newCountingBackend(h1Hang))
		b2 := pn.serve(t, "b2:80", newCountingBackend(h1Hang))
		c := h1PipeClient(t, pn, Options{URLs: h1URLs, Timeout: h1Timeout, FailoverBackoff: time.Minute})
		start := time.Now()
		_, err := c.Lookup(t.Context(), "virtual", "k")
		if re := asError(t, err); re.Kind != KindTimeout || time.Since(start) != h1Timeout || b2.dials.Load() != 1 {
			t.Fatalf("got %+v after %v", re, time.Since(start))
		}
	})
}

// replyBegun sends the start of a reply, then lets rest finish it.
func replyBegun(rest http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		_, _ = io.WriteString(w, `{"Status":`)
		w.(http.Flusher).Flush()
		rest(w, r)
	}
}

// TestH1BodyTimeout: once a response has begun, the rest of the Timeout
// is the backend's, and no more.
func TestH1BodyTimeout(t *testing.T) {
	h1Subtest(t, "slow body keeps the Timeout", func(t *testing.T, pn *pipeNet) {
		pn.serve(t, "b1:80", replyBegun(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(h1Timeout * 3 / 4)
			_, _ = io.WriteString(w, `"OK","Data":"first"}`)
		}))
		pn.serve(t, "b2:80", answer("OK", `"second"`))
		c := h1PipeClient(t, pn, Options{URLs: h1URLs, Timeout: h1Timeout, FailoverBackoff: time.Minute})
		if r := mustLookup(t, c, "k"); string(r.Data) != `"first"` {
			t.Fatalf("got %s", r.Data)
		}
	})
	h1Subtest(t, "body cut by the Timeout", func(t *testing.T, pn *pipeNet) {
		pn.serve(t, "b1:80", replyBegun(h1Hang))
		c := h1PipeClient(t, pn, Options{URLs: h1URLs[:1], Timeout: h1Timeout})
		start := time.Now()
		_, err := c.Lookup(t.Context(), "virtual", "k")
		if re := asError(t, err); re.Kind != KindTimeout || re.BeforeResponse || time.Since(start) != h1Timeout {
			t.Fatalf("got %+v after %v", re, time.Since(start))
		}
	})
}

// TestH1CallerGivesUp: a lookup whose caller goes away ends at once and
// leaves no connection behind.
func TestH1CallerGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var pn pipeNet
		pn.serve(t, "b1:80", newCountingBackend(h1Hang))
		c := h1PipeClient(t, &pn, Options{URLs: h1URLs[:1], Timeout: h1Timeout})
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		start := time.Now()
		_, err := c.Lookup(ctx, "virtual", "k")
		if re := asError(t, err); re.Kind != KindTimeout || !errors.Is(err, context.Canceled) || time.Since(start) != time.Second {
			t.Fatalf("got %+v after %v", re, time.Since(start))
		}
		if h := c.h1[0]; h.open != 0 {
			t.Fatalf("%d connections left open", h.open)
		}
	})
}

// TestH1IdleConnectionsDropped: a connection idle for 90 s is closed, and
// the next lookup dials anew; one used in between is kept.
func TestH1IdleConnectionsDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var pn pipeNet
		b1 := pn.serve(t, "b1:80", answer("OK", `"first"`))
		c := h1PipeClient(t, &pn, Options{URLs: []string{"http://b1:80/"}})
		mustLookup(t, c, "a")
		time.Sleep(80 * time.Second)
		mustLookup(t, c, "b")
		time.Sleep(80 * time.Second) // 160 s after the first use, 80 s after the last
		mustLookup(t, c, "c")
		if n := b1.dials.Load(); n != 1 {
			t.Fatalf("%d dials, want 1 (kept while in use)", n)
		}
		time.Sleep(91 * time.Second)
		synctest.Wait()
		if h := c.h1[0]; len(h.idle) != 0 || h.open != 0 {
			t.Fatalf("after 91 s idle: %d idle, %d open", len(h.idle), h.open)
		}
		mustLookup(t, c, "d")
		if n := b1.dials.Load(); n != 2 {
			t.Fatalf("%d dials, want 2", n)
		}
	})
}

// TestH1LongFieldLine: a field line longer than the read buffer (several
// times over) is read whole.
func TestH1LongFieldLine(t *testing.T) {
	val := "max-age=1, x=\"" + strings.Repeat("0123456789", 1500) + "\""
	raw := okReply("Cache-Control: " + val + "\r\n")
	r := headReader{br: bufio.NewReaderSize(strings.NewReader(raw), 4096), budget: h1MaxHead}
	h, err := readHead(&r, http.Header{})
	if err != nil {
		t.Fatal(err)
	}
	if got := h.header["Cache-Control"]; len(got) != 1 || got[0] != val {
		t.Fatalf("Cache-Control read as %d values, first %d bytes", len(got), len(got[0]))
	}
}

// TestH1PoolUnderCancellation: lookups that give up at every stage (in
// the wait for a connection, while the backend thinks) leave the pool
// consistent: no slot lost, no waiter left, every open connection idle
// once all is done, and never more than MaxConnsPerHost open.
func TestH1PoolUnderCancellation(t *testing.T) {
	b := startScripted(t, always(okReply("")))
	b.hold = 2 * time.Millisecond
	c := newLookupClient(t, Options{URLs: []string{b.url}, MaxConnsPerHost: 3})
	h := c.backends[0].h1
	var live, most atomic.Int64
	dial := h.dial
	h.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		n := live.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		return &countedConn{Conn: nc, live: &live}, nil
	}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			for j := range 10 {
				ctx, cancel := context.WithTimeout(t.Context(), time.Duration(1+(i*7+j)%6)*time.Millisecond)
				_, _ = c.Lookup(ctx, "virtual", fmt.Sprint("k", i, "-", j))
				cancel()
			}
		})
	}
	wg.Wait()
	h.mu.Lock()
	idle, open, waiting := len(h.idle), h.open, len(h.waiters)
	h.mu.Unlock()
	if open != idle || waiting != 0 || int64(open) != live.Load() || most.Load() > 3 {
		t.Fatalf("pool: %d open (%d not closed), %d idle, %d waiting; %d open at once", open, live.Load(), idle, waiting, most.Load())
	}
	if _, err := c.Lookup(t.Context(), "virtual", "after"); err != nil {
		t.Fatalf("lookup after the storm: %v", err)
	}
}

// countedConn counts the connections not yet closed.
type countedConn struct {
	net.Conn
	live *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.live.Add(-1) })
	return c.Conn.Close()
}

// TestH1FallbackToNetHTTP: a URL the in-goroutine transport does not
// serve (here a query, which the verb completes) still works, through
// net/http, next to one it serves.
func TestH1FallbackToNetHTTP(t *testing.T) {
	var got []string
	var mu sync.Mutex
	be := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.RequestURI())
		mu.Unlock()
		answer("OK", `"x"`)(w, r)
	})
	base := startHTTPTest(t, be)
	c := newLookupClient(t, Options{URLs: []string{base + "?verb=", base}})
	if c.backends[0].h1 != nil || c.backends[1].h1 == nil {
		t.Fatal("a URL with a query served by the in-goroutine transport, or a plain one not")
	}
	mustLookup(t, c, "k")
	if len(got) != 1 || got[0] != "/?verb=virtual" {
		t.Fatalf("backend saw %q", got)
	}
}

// h1Reply is a raw 200 response carrying body.
func h1Reply(body string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// TestH1UnsolicitedBytes: bytes a backend sends past a response are no
// answer to the next request. The connection carrying them must not be
// used again, or every later lookup on it would get the reply of the one
// before (net/http's readLoop drops such a connection as soon as they
// come). The bytes may come in the same write as a reply longer than the
// read buffer (read past it straight from the socket, they stay in the
// kernel), or a little later, while the connection is idle.
func TestH1UnsolicitedBytes(t *testing.T) {
	stale := h1Reply(`{"Status":"KO","Data":"stale"}`)
	big := `{"Status":"OK","Data":"` + strings.Repeat("a", 20000) + `"}`
	cases := []struct {
		name  string
		first func(c net.Conn, obj string)
	}{
		{"in the same write", func(c net.Conn, obj string) {
			_, _ = io.WriteString(c, h1Reply(big)+stale)
		}},
		{"later", func(c net.Conn, obj string) {
			_, _ = io.WriteString(c, h1Reply(`{"Status":"OK","Data":`+obj+`}`))
			time.Sleep(5 * time.Millisecond)
			_, _ = io.WriteString(c, stale)
		}},
	}
	for _, tc := range cases {
		for _, viaNetHTTP := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/nethttp=%v", tc.name, viaNetHTTP), func(t *testing.T) {
				var requests atomic.Int64
				a := testutil.AcceptTCP(t, func(c net.Conn) {
					defer c.Close()
					serveEach(bufio.NewReader(c), func(obj string) bool {
						if requests.Add(1) == 1 {
							tc.first(c, obj)
							return true
						}
						_, _ = io.WriteString(c, h1Reply(`{"Status":"OK","Data":`+obj+`}`))
						return true
					})
				})
				o := Options{URLs: []string{"http://" + a.Addr() + "/"}}
				if viaNetHTTP {
					o.Transport = NewTransport(nil, 0)
				}
				c := newLookupClient(t, o)
				checkLookupsAnswered(t, c)
			})
		}
	}
}

// checkLookupsAnswered looks up five keys, idle for a moment before each
// (for late bytes to come), and fails unless each but the first got its
// own reply: the backend answers a key with the key.
func checkLookupsAnswered(t *testing.T, c *Client) {
	t.Helper()
	for i, u := range []string{"alice", "bob", "carol", "dave", "erin"} {
		time.Sleep(20 * time.Millisecond)
		r, err := c.Lookup(t.Context(), "virtual", u)
		if err != nil {
			t.Fatalf("lookup %s: %v", u, err)
		}
		if i > 0 && (r.Status != Found || string(r.Data) != `"`+u+`"`) {
			t.Fatalf("lookup %s answered %v %.40s", u, r.Status, r.Data)
		}
	}
}

// serveEach reads HTTP requests from br until it fails, calling reply
// with each one's Object as JSON text (the tests' requests end with it);
// reply returns whether to go on.
func serveEach(br *bufio.Reader, reply func(obj string) bool) {
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		_, obj, _ := strings.Cut(strings.TrimSuffix(string(body), "}"), `"Object":`)
		if !reply(obj) {
			return
		}
	}
}
