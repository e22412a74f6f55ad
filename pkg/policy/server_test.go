package policy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
)

func start(t *testing.T, h Handler) (*Server, string, <-chan error) {
	t.Helper()
	s := &Server{Handler: h}
	l, done := testutil.Serve(t, "tcp", s.Serve)
	return s, l.Addr().String(), done
}

func readReply(t *testing.T, c net.Conn, br *bufio.Reader) (string, error) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := br.ReadString('\n')
	if err != nil {
		return l, err
	}
	end, err := br.ReadString('\n')
	if end != "\n" {
		t.Fatalf("reply not ended by an empty line: %q %q", l, end)
	}
	return l, err
}

// echoPolicy answers "REJECT <recipient>", "DUNNO" when there is none,
// and an invalid action for recipient "bad".
var echoPolicy = HandlerFunc(func(ctx context.Context, req Request) string {
	switch r := req.Get("recipient"); r {
	case "":
		return "DUNNO"
	case "bad":
		return "REJECT a\nb"
	default:
		return "REJECT " + r
	}
})

func TestServerRequests(t *testing.T) {
	s, addr, done := start(t, echoPolicy)
	c := testutil.Dial(t, "tcp", addr)
	br := bufio.NewReader(c)
	testutil.Exchanges(t, func(req string) string {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		got, err := readReply(t, c, br)
		if err != nil {
			t.Errorf("%q: %v", req, err)
		}
		return got
	}, [][2]string{
		{"request=smtpd_access_policy\nrecipient=a@b\n\n", "action=REJECT a@b\n"},
		{"request=smtpd_access_policy\n\n", "action=DUNNO\n"},
		// Two requests in one write: answered in order.
		{"recipient=x\n\nrecipient=y\n\n", "action=REJECT x\n"},
		{"", "action=REJECT y\n"},
	})
	testutil.Stopped(t, s.Shutdown, done, ErrServerClosed)
}

// TestServerViolationsClose: a protocol violation or an invalid action
// closes the connection without a reply; the server goes on serving.
func TestServerViolationsClose(t *testing.T) {
	s, addr, done := start(t, echoPolicy)
	for _, req := range []string{
		"no equals sign\n\n",
		"n=" + strings.Repeat("v", MaxLine) + "\n\n",
		strings.Repeat("a=b\n", MaxAttributes+1) + "\n",
		"recipient=bad\n\n",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		// A reset (unread input at close) is a disconnect for postfix too.
		if len(b) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
			t.Errorf("%.30q: got %q %v, want a close without reply", req, b, err)
		}
		c.Close()
	}
	c := testutil.Dial(t, "tcp", addr)
	io.WriteString(c, "recipient=ok\n\n")
	if got, _ := readReply(t, c, bufio.NewReader(c)); got != "action=REJECT ok\n" {
		t.Errorf("after violations: %q", got)
	}
	s.Close()
	<-done
}

// TestServerShutdown: an idle connection is closed at once, a request in
// progress is answered first.
func TestServerShutdown(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	s, addr, done := start(t, HandlerFunc(func(ctx context.Context, req Request) string {
		close(started)
		<-release
		return "DUNNO"
	}))
	busy := testutil.Dial(t, "tcp", addr)
	idle := testutil.Dial(t, "tcp", addr)
	io.WriteString(busy, "request=smtpd_access_policy\n\n")
	testutil.ShutdownCheck{
		Shutdown: s.Shutdown, Served: done, Closed: ErrServerClosed,
		Started: started, Release: release,
		IdleClosed: func() { testutil.ExpectEOF(t, idle, "idle connection") },
		Answered: func() {
			if got, err := readReply(t, busy, bufio.NewReader(busy)); got != "action=DUNNO\n" {
				t.Errorf("in-flight reply %q %v", got, err)
			}
		},
	}.Run(t)
}
