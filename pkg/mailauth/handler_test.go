package mailauth

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shitenno/shitenno/internal/testutil"
)

func TestMain(m *testing.M) {
	// After a 431, net/http lingers 500 ms before closing (rstAvoidanceDelay)
	// in a goroutine http.Server.Close does not wait for.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("net/http.(*conn).closeWriteAndWait"))
}

// serve runs h behind NewHTTPServer on a loopback listener, as the daemon
// does, and returns its address.
func serve(t *testing.T, h Handler, logw io.Writer) string {
	t.Helper()
	var log *slog.Logger
	if logw != nil {
		log = slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return serveServer(t, NewServer(&HTTPHandler{Handler: h, Logger: log, Timeout: 2 * time.Second}, time.Second, log))
}

// exchange sends raw bytes like nginx does and returns the whole response.
func exchange(t *testing.T, addr, wire string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, wire); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil && len(b) == 0 {
		t.Fatal(err)
	}
	return string(b)
}

func parseResponse(t *testing.T, raw string) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("bad response %q: %v", raw, err)
	}
	return resp
}

const imapWire = "GET /auth HTTP/1.0\r\nHost: localhost\r\nAuth-Method: plain\r\nAuth-User: alice\r\nAuth-Pass: p%20w+\r\nAuth-Protocol: imap\r\nAuth-Login-Attempt: 1\r\nClient-IP: 127.0.0.1\r\n\r\n"

func TestHandlerOK(t *testing.T) {
	var got *Request
	addr := serve(t, HandlerFunc(func(ctx context.Context, req *Request) (Reply, error) {
		got = req
		return Reply{Status: StatusOK, Server: netip.MustParseAddr("10.0.0.5"), Port: 143}, nil
	}), nil)
	raw := exchange(t, addr, imapWire)
	if !strings.Contains(raw, "\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.5\r\nAuth-Port: 143\r\n") &&
		!strings.Contains(raw, "\r\nAuth-Port: 143\r\n") {
		t.Fatalf("response %q", raw)
	}
	resp := parseResponse(t, raw)
	if resp.Header.Get("Auth-Status") != "OK" || resp.Header.Get("Auth-Server") != "10.0.0.5" || resp.Header.Get("Auth-Port") != "143" {
		t.Fatalf("headers %v", resp.Header)
	}
	if resp.Header.Get("Date") != "" {
		t.Errorf("Date header wastes nginx's buffer: %q", raw)
	}
	if got == nil || got.User != "alice" || string(got.Pass) != "p w+" || got.Attempt != 1 {
		t.Fatalf("handler saw %+v", got)
	}
}

// TestHandlerLargestReplyFitsNginx pins the whole response, status line
// and net/http's own headers included, within nginx's 1024-byte buffer.
func TestHandlerLargestReplyFitsNginx(t *testing.T) {
	ip := netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")
	base, _ := Reply{Status: StatusOK, Server: ip, Port: 65535, User: "u"}.fields(nil)
	used := 0
	for _, f := range base {
		used += len(f.name) + len(f.value) + 4
	}
	pass := Secret(strings.Repeat("p", MaxReplyBytes-used-len("Auth-Pass: \r\n")))
	rep := Reply{Status: StatusOK, Server: ip, Port: 65535, User: "u", Pass: pass}
	if _, err := rep.fields(nil); err != nil {
		t.Fatalf("largest reply refused: %v", err)
	}
	addr := serve(t, HandlerFunc(func(context.Context, *Request) (Reply, error) { return rep, nil }), nil)
	for _, wire := range []string{imapWire, strings.Replace(imapWire, "HTTP/1.0", "HTTP/1.1", 1)} {
		raw := exchange(t, addr, strings.Replace(wire, "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1))
		if len(raw) > 1024 {
			t.Fatalf("response is %d bytes, nginx reads 1024: %q", len(raw), raw)
		}
		if parseResponse(t, raw).Header.Get("Auth-Pass") != string(pass) {
			t.Fatalf("pass not sent: %q", raw)
		}
	}
}

func TestHandlerFailures(t *testing.T) {
	var mu sync.Mutex
	var logs strings.Builder
	lw := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) })
	addr := serve(t, HandlerFunc(func(ctx context.Context, req *Request) (Reply, error) {
		switch req.User {
		case "down":
			return Reply{}, errors.New("backend unreachable")
		case "inject":
			return Reply{Status: "no\r\nAuth-Status: OK"}, nil
		case "panic":
			panic("boom")
		case "slow":
			<-ctx.Done()
			return Reply{}, ctx.Err()
		}
		return Denied(req), nil
	}), lw)
	smtp := strings.Replace(imapWire, "imap", "smtp", 1)
	for _, tc := range []struct {
		name, wire       string
		code             int
		status, wait, ec string
	}{
		{"denied", imapWire, 200, StatusDenied, "3", ""},
		{"denied smtp", smtp, 200, StatusDenied, "3", CodeDenied},
		{"backend down", strings.Replace(imapWire, "alice", "down", 1), 200, StatusTempFail, "3", ""},
		{"backend down smtp", strings.Replace(smtp, "alice", "down", 1), 200, StatusTempFail, "3", CodeTempFail},
		{"injection refused", strings.Replace(imapWire, "alice", "inject", 1), 200, StatusTempFail, "3", ""},
		{"handler panic", strings.Replace(imapWire, "alice", "panic", 1), 200, StatusTempFail, "3", ""},
		{"handler timeout", strings.Replace(imapWire, "alice", "slow", 1), 200, StatusTempFail, "3", ""},
		{"malformed", "GET /auth HTTP/1.0\r\nAuth-Method: plain\r\n\r\n", 400, StatusTempFail, "", ""},
		{"bad escape", strings.Replace(imapWire, "p%20w+", "p%2", 1), 400, StatusTempFail, "", ""},
		{"post", strings.Replace(imapWire, "GET", "POST", 1), 405, StatusTempFail, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			resp := parseResponse(t, exchange(t, addr, tc.wire))
			if time.Since(start) > 4*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
			if resp.StatusCode != tc.code || resp.Header.Get("Auth-Status") != tc.status ||
				resp.Header.Get("Auth-Wait") != tc.wait || resp.Header.Get("Auth-Error-Code") != tc.ec {
				t.Fatalf("got %d %v", resp.StatusCode, resp.Header)
			}
			if _, ok := resp.Header["Auth-Server"]; ok {
				t.Fatalf("Auth-Server on failure: %v", resp.Header)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logs.String(), "p w+") || strings.Contains(logs.String(), "p%20w+") {
		t.Fatalf("password in logs:\n%s", logs.String())
	}
	// The per-request line (outcome=…) is the Handler's recorder's:
	// cmd/shitenno-nginx TestOneDebugLinePerRequest.
	for _, want := range []string{"handler panic", "malformed request"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs.String())
		}
	}
}

func TestHandlerHeaderLimit(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	addr := serve(t, HandlerFunc(func(context.Context, *Request) (Reply, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		return Reply{Status: "no"}, nil
	}), nil)
	pad := func(n int) string {
		return strings.Replace(imapWire, "\r\n\r\n", "\r\nX-Pad: "+strings.Repeat("a", n)+"\r\n\r\n", 1)
	}
	// A large client certificate just under the bound is served.
	under := pad(MaxHeaderBytes - len(imapWire) - 100)
	if resp := parseResponse(t, exchange(t, addr, under)); resp.Header.Get("Auth-Status") != "no" {
		t.Fatalf("%d-byte request refused: %d %v", len(under), resp.StatusCode, resp.Header)
	}
	for _, n := range []int{MaxHeaderBytes, 4 * MaxHeaderBytes} {
		raw := exchange(t, addr, pad(n))
		if raw == "" {
			continue // closed: acceptable
		}
		if resp := parseResponse(t, raw); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("%d-byte header: status %d", n, resp.StatusCode)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Fatalf("handler called %d times, want 1", calls)
	}
}

func TestHandlerDirectHeaderCheck(t *testing.T) {
	// The handler's own bound applies even behind a server without
	// MaxHeaderBytes (e.g. a test harness).
	hr, err := http.NewRequest(http.MethodGet, "/auth", nil)
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Auth-Method", "plain")
	hr.Header.Set("Auth-Protocol", "imap")
	hr.Header.Set("X-Pad", strings.Repeat("a", MaxHeaderBytes))
	rec := &recorder{h: http.Header{}}
	(&HTTPHandler{Handler: HandlerFunc(func(context.Context, *Request) (Reply, error) {
		t.Fatal("handler called")
		return Reply{}, nil
	})}).ServeHTTP(rec, hr)
	if rec.code != http.StatusRequestHeaderFieldsTooLarge || rec.h.Get("Auth-Status") != StatusTempFail {
		t.Fatalf("got %d %v", rec.code, rec.h)
	}
}

type recorder struct {
	h    http.Header
	code int
}

func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) Write(p []byte) (int, error) { return len(p), nil }
func (r *recorder) WriteHeader(c int)           { r.code = c }

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func BenchmarkHandler(b *testing.B) {
	h := &HTTPHandler{Handler: HandlerFunc(func(ctx context.Context, req *Request) (Reply, error) {
		return Reply{Status: StatusOK, Server: netip.MustParseAddr("10.0.0.5"), Port: 143}, nil
	})}
	hr, err := http.ReadRequest(bufio.NewReader(strings.NewReader(imapWire)))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		rec := &recorder{h: http.Header{}}
		h.ServeHTTP(rec, hr)
	}
}

// serveHTTP runs h in a NewServer on a loopback listener.
func serveHTTP(t *testing.T, h *HTTPHandler) string {
	t.Helper()
	return serveServer(t, NewServer(h, time.Second, nil))
}

// serveServer runs srv on a loopback listener and returns its address.
func serveServer(t *testing.T, srv *Server) string {
	t.Helper()
	return testutil.ServeUntilCleanup(t, "tcp", srv.Serve, srv.Close, http.ErrServerClosed)
}
