package mailauth

import (
	"context"
	"io"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
)

// TestBytesNetHTTPRefusesStillAnswered: nginx escapes bytes 0x00-0x1F,
// space and '%' in Auth-User and Auth-Pass but sends DEL (0x7F) raw, and
// net/http refuses a raw DEL (or any control byte) in a header value
// with a bare 400. Every such request must still get an Auth-Status:
// the credential reaches the Handler byte for byte (so the backend's
// answer, normally the wrong-password one, is what the client gets), and
// a request that cannot be made sense of gets the temporary answer.
func TestBytesNetHTTPRefusesStillAnswered(t *testing.T) {
	var got atomic.Pointer[Request]
	addr := serve(t, HandlerFunc(func(ctx context.Context, req *Request) (Reply, error) {
		got.Store(req)
		if string(req.Pass) == "p\x7fw" && req.User == "al\x7fice" {
			return Reply{Status: StatusOK, Server: netip.MustParseAddr("10.0.0.5"), Port: 143}, nil
		}
		return Denied(req), nil
	}), nil)
	t.Run("credential with DEL", func(t *testing.T) {
		wire := strings.Replace(strings.Replace(imapWire, "Auth-Pass: p%20w+", "Auth-Pass: p\x7fw", 1), "Auth-User: alice", "Auth-User: al\x7fice", 1)
		resp := parseResponse(t, exchange(t, addr, wire))
		if resp.StatusCode != 200 || resp.Header.Get("Auth-Status") != StatusOK {
			t.Fatalf("got %d %v", resp.StatusCode, resp.Header)
		}
	})
	t.Run("wrong password with DEL", func(t *testing.T) {
		wire := strings.Replace(imapWire, "Auth-Pass: p%20w+", "Auth-Pass: x\x7f\x7f", 1)
		resp := parseResponse(t, exchange(t, addr, wire))
		if resp.StatusCode != 200 || resp.Header.Get("Auth-Status") != "Invalid login or password" {
			t.Fatalf("got %d %v", resp.StatusCode, resp.Header)
		}
		if r := got.Load(); string(r.Pass) != "x\x7f\x7f" {
			t.Fatalf("handler saw %q", string(r.Pass))
		}
	})
	t.Run("information field with control bytes", func(t *testing.T) {
		wire := strings.Replace(imapWire, "Client-IP: 127.0.0.1\r\n", "Client-IP: 127.0.0.1\r\nAuth-SMTP-Helo: he\x7flo\x01\r\n", 1)
		resp := parseResponse(t, exchange(t, addr, wire))
		if resp.Header.Get("Auth-Status") == "" {
			t.Fatalf("no Auth-Status: %d %v", resp.StatusCode, resp.Header)
		}
		if r := got.Load(); r.Fields["Auth-SMTP-Helo"] != "he%7Flo%01" {
			t.Fatalf("handler saw %q", r.Fields["Auth-SMTP-Helo"])
		}
	})
	t.Run("unparsable", func(t *testing.T) {
		wire := strings.Replace(imapWire, "Auth-Method: plain", "Auth-Method: pl\x7fain", 1)
		resp := parseResponse(t, exchange(t, addr, wire))
		if resp.Header.Get("Auth-Status") != StatusTempFail {
			t.Fatalf("got %d %v", resp.StatusCode, resp.Header)
		}
	})
}

// TestTimeoutFuncAppliesPerRequest: a reload that raises Timeout applies
// to the next request, both to the Handler's context and to the write
// deadline of the response.
func TestTimeoutFuncAppliesPerRequest(t *testing.T) {
	var timeout atomic.Int64
	timeout.Store(int64(50 * time.Millisecond))
	h := &HTTPHandler{
		Handler: HandlerFunc(func(ctx context.Context, req *Request) (Reply, error) {
			select {
			case <-time.After(300 * time.Millisecond):
				return Denied(req), nil
			case <-ctx.Done():
				return Reply{}, ctx.Err()
			}
		}),
		TimeoutFunc: func() time.Duration { return time.Duration(timeout.Load()) },
	}
	addr := serveHTTP(t, h)
	if s := parseResponse(t, exchange(t, addr, imapWire)).Header.Get("Auth-Status"); s != StatusTempFail {
		t.Fatalf("with a 50ms Timeout: %q", s)
	}
	timeout.Store(int64(2 * time.Second))
	if s := parseResponse(t, exchange(t, addr, imapWire)).Header.Get("Auth-Status"); s != "Invalid login or password" {
		t.Fatalf("after raising Timeout: %q", s)
	}
}

// TestWriteDeadlineFollowsTimeout: the response's write deadline comes
// from the Handler's current timeout, not from the server's start-up
// value, so a reload that raises Timeout does not cut answers short. In a
// synctest bubble over net.Pipe, so an 11 s backend costs no real time.
func TestWriteDeadlineFollowsTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &HTTPHandler{
			Handler: HandlerFunc(func(ctx context.Context, req *Request) (Reply, error) {
				time.Sleep(11 * time.Second)
				return Denied(req), nil
			}),
			TimeoutFunc: func() time.Duration { return 20 * time.Second },
		}
		// The server was built when Timeout was 1 ms.
		srv := NewServer(h, time.Millisecond, nil)
		l := testutil.NewPipeListener()
		served := make(chan struct{})
		go func() { defer close(served); _ = srv.Serve(l) }()
		c, _, err := l.Dial(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		go func() { _, _ = io.WriteString(c, imapWire) }()
		raw, _ := io.ReadAll(c)
		c.Close()
		srv.Close()
		<-served
		if !strings.Contains(string(raw), "Auth-Status: Invalid login or password") {
			t.Fatalf("answer cut by the start-up write timeout: %q", raw)
		}
	})
}
