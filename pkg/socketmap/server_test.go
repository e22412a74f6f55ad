package socketmap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
	"github.com/shitenno/shitenno/pkg/connserver"
)

// echoHandler answers "OK <name>:<key>"; key "block" waits for release.
type echoHandler struct {
	release chan struct{}
	started chan struct{}
	calls   atomic.Int64
}

func (h *echoHandler) ServeSocketmap(ctx context.Context, r Request) Reply {
	h.calls.Add(1)
	if string(r.Key) == "block" {
		h.started <- struct{}{}
		<-h.release
	}
	if string(r.Key) == "missing" {
		return Reply{Kind: NotFound}
	}
	return Reply{Kind: OK, Text: string(r.Name) + ":" + string(r.Key)}
}

func serve(t *testing.T, h Handler) (*Server, string, <-chan error) {
	t.Helper()
	s := &Server{Handler: h, Server: connserver.Server{IdleTimeout: time.Minute}}
	l, done := testutil.Serve(t, "unix", s.Serve)
	return s, l.Addr().String(), done
}

// readReply reads one netstring reply.
func readReply(br *bufio.Reader) (string, error) {
	p, err := ReadNetstring(br, nil, MaxPayload)
	return string(p), err
}

func TestServerManyRequestsPerConnection(t *testing.T) {
	h := &echoHandler{}
	s, sock, done := serve(t, h)
	c, br := testutil.DialExchanges(t, "unix", sock, readReply, [][2]string{
		{"8:verb1 ok,", "OK verb1:ok"},
		{"13:verb1 missing,", "NOTFOUND "},
		{"25:verb1 Foo Bar@Example.COM,", "OK verb1:Foo Bar@Example.COM"},
		{"7:noSPACE,", "PERM malformed request: expected \"name key\""},
		{"6:verb1 ,", "OK verb1:"},
	})
	// Two requests written at once are answered in order.
	if _, err := io.WriteString(c, "3:a b,3:c d,"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"OK a:b", "OK c:d"} {
		p, err := ReadNetstring(br, nil, MaxPayload)
		if err != nil || string(p) != want {
			t.Fatalf("pipelined: got %q %v, want %q", p, err, want)
		}
	}
	c.Close()
	testutil.Stopped(t, s.Shutdown, done, ErrServerClosed)
}

// TestServerProtocolErrorClosesOnlyThatConnection: a garbled frame closes
// its connection; another connection keeps working.
func TestServerProtocolErrorClosesOnlyThatConnection(t *testing.T) {
	s, sock, done := serve(t, &echoHandler{})
	good := testutil.Dial(t, "unix", sock)
	gbr := bufio.NewReader(good)
	for _, junk := range []string{"999999999:", "5:abcde;", "x", "-1:", "\x00\xff\xfe"} {
		bad := testutil.Dial(t, "unix", sock)
		io.WriteString(bad, junk)
		if tcp, ok := bad.(*net.UnixConn); ok && junk == "x" {
			tcp.CloseWrite() // a frame cut short by EOF
		}
		_ = bad.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := bad.Read(make([]byte, 10))
		if err != io.EOF || n != 0 {
			t.Errorf("%q: connection not closed: n=%d err=%v", junk, n, err)
		}
		bad.Close()
		if got := testutil.Exchange(t, good, gbr, "8:verb1 ok,", readReply); got != "OK verb1:ok" {
			t.Errorf("after %q the other connection got %q", junk, got)
		}
	}
	s.Close()
	<-done
}

// TestServerShutdown: idle connections are closed at once, an in-flight
// request is answered before its connection closes.
func TestServerShutdown(t *testing.T) {
	h := &echoHandler{release: make(chan struct{}), started: make(chan struct{}, 1)}
	s, sock, done := serve(t, h)
	idle := testutil.Dial(t, "unix", sock)
	busy := testutil.Dial(t, "unix", sock)
	io.WriteString(busy, "11:verb1 block,")
	testutil.ShutdownCheck{
		Shutdown: s.Shutdown, Served: done, Closed: ErrServerClosed,
		Started: h.started, Release: h.release,
		IdleClosed: func() { testutil.ExpectEOF(t, idle, "idle connection") },
		Answered: func() {
			br := bufio.NewReader(busy)
			_ = busy.SetReadDeadline(time.Now().Add(testutil.ReadTimeout))
			p, err := ReadNetstring(br, nil, MaxPayload)
			if err != nil || string(p) != "OK verb1:block" {
				t.Fatalf("in-flight reply: %q %v", p, err)
			}
		},
	}.Run(t)
	// New connections are refused.
	if c, err := net.Dial("unix", sock); err == nil {
		c.Close()
		t.Fatal("still accepting after Shutdown")
	}
}

// TestServerShutdownDeadline: Shutdown gives up when ctx ends and closes
// what is left.
func TestServerShutdownDeadline(t *testing.T) {
	h := &echoHandler{release: make(chan struct{}), started: make(chan struct{}, 1)}
	s, sock, done := serve(t, h)
	c := testutil.Dial(t, "unix", sock)
	io.WriteString(c, "11:verb1 block,")
	<-h.started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	go func() { time.Sleep(100 * time.Millisecond); close(h.release) }()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	<-done
}

// TestServerIdleTimeout closes connections that stay silent.
func TestServerIdleTimeout(t *testing.T) {
	s := &Server{Handler: &echoHandler{}, Server: connserver.Server{IdleTimeout: 50 * time.Millisecond, ReadTimeout: 50 * time.Millisecond}}
	sock := testutil.ServeUntilCleanup(t, "unix", s.Serve, s.Close, ErrServerClosed)
	for _, first := range []string{"", "5:ab"} { // silent, and a slowloris half frame
		c := testutil.Dial(t, "unix", sock)
		io.WriteString(c, first)
		testutil.ExpectEOF(t, c, fmt.Sprintf("%q (the idle/read timeout)", first))
		c.Close()
	}
}
