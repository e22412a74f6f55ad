package mailauth

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// smuggled is a second request an attacker hides in the first one.
const smuggled = "GET /auth HTTP/1.1\r\nHost: x\r\nAuth-Method: plain\r\nAuth-User: mallory\r\nAuth-Pass: x\r\n" +
	"Auth-Protocol: imap\r\nAuth-Login-Attempt: 1\r\nClient-IP: 127.0.0.1\r\n\r\n"

// imapHead is imapWire's header lines without the request line and the
// empty line.
var imapHead = strings.TrimSuffix(strings.SplitN(imapWire, "\r\n", 2)[1], "\r\n")

// countingOK serves a Handler that lets every login in (to 10.0.0.5:143)
// and counts its calls.
func countingOK(t *testing.T) (addr string, calls *atomic.Int32) {
	t.Helper()
	calls = new(atomic.Int32)
	return serve(t, HandlerFunc(func(ctx context.Context, req *Request) (Reply, error) {
		calls.Add(1)
		return Reply{Status: StatusOK, Server: netip.MustParseAddr("10.0.0.5"), Port: 143}, nil
	}), nil), calls
}

// TestSmugglingRefused: every way of hiding a request inside another, or of
// framing a head differently from nginx, gets one error response and a
// closed connection; the Handler is never asked.
func TestSmugglingRefused(t *testing.T) {
	addr, calls := countingOK(t)
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled)
	get11 := "GET /auth HTTP/1.1\r\n"
	for name, wire := range map[string]string{
		"CL.TE":                get11 + imapHead + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked,
		"TE.CL":                get11 + imapHead + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + smuggled,
		"chunked":              get11 + imapHead + "Transfer-Encoding: chunked\r\n\r\n" + chunked,
		"Content-Length body":  get11 + imapHead + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(smuggled)) + smuggled,
		"double CL":            get11 + imapHead + "Content-Length: 0\r\nContent-Length: 5\r\n\r\nhello" + smuggled,
		"POST with body":       "POST /auth HTTP/1.1\r\n" + imapHead + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(smuggled)) + smuggled,
		"obs-fold":             get11 + imapHead + "X-Note: a\r\n Auth-User: mallory\r\n\r\n",
		"obs-fold tab":         get11 + imapHead + "X-Note: a\r\n\tb\r\n\r\n",
		"space before a head":  get11 + " " + imapHead + "\r\n",
		"bare LF in head":      get11 + strings.Replace(imapHead, "Auth-User: alice\r\n", "X-Note: a\nAuth-User: alice\r\n", 1) + "\r\n",
		"bare LF endings":      strings.ReplaceAll(imapWire, "\r\n", "\n"),
		"bare LF request line": "GET /auth HTTP/1.0\n" + imapHead + "\r\n",
		"bare LF end of head":  "GET /auth HTTP/1.0\r\n" + imapHead + "\n",
		"bare CR":              get11 + imapHead + "X-Note: a\rAuth-User: mallory\r\n\r\n",
		"bare CR end of head":  "GET /auth HTTP/1.0\r\n" + imapHead + "\r\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			before := calls.Load()
			raw := exchange(t, addr, wire) // reads to EOF: the server closed
			resp := parseResponse(t, raw)
			if resp.StatusCode < 400 {
				t.Fatalf("got %q, want an HTTP error", raw)
			}
			if n := strings.Count(raw, "HTTP/1."); n != 1 {
				t.Errorf("%d responses in %q, want 1", n, raw)
			}
			if calls.Load() != before {
				t.Errorf("the Handler was asked")
			}
		})
	}
}

// TestStrictFramingKeepsGoodRequests: what nginx sends passes, whatever
// the read boundaries, and so do keep-alive requests (the
// upstream/proxy_pass form).
func TestStrictFramingKeepsGoodRequests(t *testing.T) {
	addr, _ := countingOK(t)
	t.Run("one byte per write", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		c.(*net.TCPConn).SetNoDelay(true)
		for i := 0; i < len(imapWire); i++ {
			if _, err := c.Write([]byte{imapWire[i]}); err != nil {
				t.Fatal(err)
			}
			if i%16 == 0 {
				time.Sleep(time.Millisecond) // let the server read partial heads
			}
		}
		buf := make([]byte, 4096)
		n, _ := c.Read(buf)
		if resp := parseResponse(t, string(buf[:n])); resp.Header.Get("Auth-Status") != StatusOK {
			t.Fatalf("got %q", buf[:n])
		}
	})
	t.Run("keep-alive", func(t *testing.T) {
		req := "GET /auth HTTP/1.1\r\n" + imapHead + "\r\n"
		last := "GET /auth HTTP/1.1\r\nConnection: close\r\n" + imapHead + "\r\n"
		raw := exchange(t, addr, req+req+last)
		if n := strings.Count(raw, "Auth-Status: OK\r\n"); n != 3 {
			t.Fatalf("%d OK answers in %q, want 3", n, raw)
		}
	})
}

// TestStrictScanSplits checks the scanner's state across every split of a
// stream into two reads.
func TestStrictScanSplits(t *testing.T) {
	good := "\r\n" + imapWire + "GET /x HTTP/1.1\r\nA: b c\r\n\r\n"
	bad := map[string]error{
		"GET / HTTP/1.1\r\nA: b\nC: d\r\n\r\n":  errBareLF,
		"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n":  errObsFold,
		"GET / HTTP/1.1\r\nA: b\rC: d\r\n\r\n":  errBareCR,
		"GET / HTTP/1.1\r\nA: b\r\n\r\n\tGET /": nil, // a request line may not be folded, but that is net/http's to refuse
	}
	for i := 0; i <= len(good); i++ {
		c := &strictConn{requestLine: true}
		if _, err := c.scan([]byte(good[:i])); err != nil {
			t.Fatalf("good stream split at %d: %v", i, err)
		}
		if _, err := c.scan([]byte(good[i:])); err != nil {
			t.Fatalf("good stream split at %d: %v", i, err)
		}
	}
	for s, want := range bad {
		for i := 0; i <= len(s); i++ {
			c := &strictConn{requestLine: true}
			_, err := c.scan([]byte(s[:i]))
			if err == nil {
				_, err = c.scan([]byte(s[i:]))
			}
			if err != want {
				t.Errorf("%q split at %d: %v, want %v", s, i, err, want)
			}
		}
	}
}

// FuzzStrictScan: the scanner never panics, and its verdict does not
// depend on how the stream is split into reads (net/http's reads land
// anywhere).
func FuzzStrictScan(f *testing.F) {
	f.Add([]byte(imapWire), 10)
	f.Add([]byte("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"), 17)
	f.Add([]byte("GET / HTTP/1.1\r\nA: b\nC: d\r\n\r\n"), 20)
	f.Add([]byte("GET / HTTP/1.1\r\nA: b\r\r\n\r\n"), 21)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		whole := &strictConn{requestLine: true}
		wi, werr := whole.scan(b)
		if split < 0 {
			split = -split
		}
		if len(b) > 0 {
			split %= len(b) + 1
		} else {
			split = 0
		}
		parts := &strictConn{requestLine: true}
		pi, perr := parts.scan(b[:split])
		if perr == nil {
			var n int
			n, perr = parts.scan(b[split:])
			pi = split + n
		}
		if werr != perr || wi != pi {
			t.Fatalf("whole: %d %v; split at %d: %d %v", wi, werr, split, pi, perr)
		}
	})
}
