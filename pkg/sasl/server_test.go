package sasl

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
	"github.com/shitenno/shitenno/pkg/connserver"
)

// users is a Handler with fixed passwords: "tmp" fails temporarily,
// "renamed" is accepted under another name, "panic" panics.
var users = HandlerFunc(func(ctx context.Context, r *Request) Result {
	switch r.User {
	case "tmp":
		return Result{Verdict: TempFail}
	case "panic":
		panic("handler bug")
	case "renamed":
		return Result{Verdict: Accept, User: "canonical@example.org"}
	}
	if r.Authzid != "" && r.Authzid != r.User {
		return Result{Verdict: Reject, Reason: "authzid " + r.Authzid}
	}
	if string(r.Password) == "pw-"+r.User {
		return Result{Verdict: Accept}
	}
	return Result{Verdict: Reject}
})

type client struct{ *testutil.LineConn }

func start(t *testing.T, s *Server) string {
	t.Helper()
	return testutil.ServeUntilCleanup(t, "tcp", s.Serve, s.Close, ErrServerClosed)
}

func dial(t *testing.T, addr string) client {
	t.Helper()
	return client{testutil.DialLines(t, "tcp", addr)}
}

// postfix connects as smtpd does: its two lines, then the handshake read
// up to DONE.
func postfix(t *testing.T, addr string) client {
	c := dial(t, addr)
	c.Send("VERSION\t1\t0\nCPID\t4242\n")
	for {
		if c.Line() == "DONE\n" {
			return c
		}
	}
}

// closed asserts the server closed the connection without sending more.
func (c client) closed() {
	c.T.Helper()
	rest, err := c.Rest()
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		c.T.Fatalf("read: %v", err)
	}
	if len(rest) != 0 {
		c.T.Fatalf("bytes before close: %q", rest)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

const authPrefix = "\tservice=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.7"

func TestHandshake(t *testing.T) {
	addr := start(t, &Server{Handler: users})
	c := dial(t, addr)
	// The handshake comes before the client says anything.
	var got strings.Builder
	for !strings.HasSuffix(got.String(), "DONE\n") {
		got.WriteString(c.Line())
	}
	re := regexp.MustCompile(`^VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t[0-9]+\nCUID\t[0-9]+\nCOOKIE\t[0-9a-f]{32}\nDONE\n$`)
	if !re.MatchString(got.String()) {
		t.Fatalf("handshake %q", got.String())
	}
	only := start(t, &Server{Handler: users, Mechanisms: []string{MechLOGIN}})
	c = dial(t, only)
	c.Expect("first line", "VERSION\t1\t2\n")
	c.Expect("MECH line", "MECH\tLOGIN\tplaintext\n")
	if l := c.Line(); !strings.HasPrefix(l, "SPID\t") {
		t.Fatalf("after MECH %q", l)
	}
}

func TestExchanges(t *testing.T) {
	addr := start(t, &Server{Handler: users})
	c := postfix(t, addr)
	testutil.Exchanges(t, func(send string) string { c.Send(send); return c.Line() }, [][2]string{
		// PLAIN with an initial response, as swaks --auth PLAIN sends it.
		{"AUTH\t1\tPLAIN" + authPrefix + "\tresp=" + b64("\x00ok1\x00pw-ok1") + "\n", "OK\t1\tuser=ok1\n"},
		// The mechanism as typed; an authzid equal to the user.
		{"AUTH\t2\tplain" + authPrefix + "\tsecured\tresp=" + b64("ok2\x00ok2\x00pw-ok2") + "\n", "OK\t2\tuser=ok2\n"},
		// PLAIN without one: an empty challenge, then the credentials.
		{"AUTH\t3\tPLAIN" + authPrefix + "\n", "CONT\t3\t\n"},
		{"CONT\t3\t" + b64("\x00ok3\x00pw-ok3") + "\n", "OK\t3\tuser=ok3\n"},
		// LOGIN: Username:, Password:.
		{"AUTH\t4\tLOGIN" + authPrefix + "\n", "CONT\t4\tVXNlcm5hbWU6\n"},
		{"CONT\t4\t" + b64("ok4") + "\n", "CONT\t4\tUGFzc3dvcmQ6\n"},
		{"CONT\t4\t" + b64("pw-ok4") + "\n", "OK\t4\tuser=ok4\n"},
		// LOGIN with the user name as initial response: Password: first.
		{"AUTH\t5\tLOGIN" + authPrefix + "\tresp=" + b64("ok5") + "\n", "CONT\t5\tUGFzc3dvcmQ6\n"},
		{"CONT\t5\t" + b64("wrong") + "\n", "FAIL\t5\tuser=ok5\treason=Invalid user name or password\n"},
		// The backend's canonical name becomes sasl_username.
		{"AUTH\t6\tPLAIN" + authPrefix + "\tresp=" + b64("\x00renamed\x00x") + "\n", "OK\t6\tuser=canonical@example.org\n"},
		// A handler's reason; authzid reaches the handler.
		{"AUTH\t7\tPLAIN" + authPrefix + "\tresp=" + b64("bob\x00ok7\x00pw-ok7") + "\n", "FAIL\t7\tuser=ok7\treason=authzid bob\n"},
		// Refused without asking.
		{"AUTH\t8\tCRAM-MD5" + authPrefix + "\n", "FAIL\t8\treason=Unsupported authentication mechanism\n"},
		{"AUTH\t9\tPLAIN" + authPrefix + "\tresp=!!!!\n", "FAIL\t9\treason=Invalid base64 data in response\n"},
		{"AUTH\t10\tPLAIN" + authPrefix + "\tresp=" + b64("no-nul") + "\n", "FAIL\t10\treason=Invalid response\n"},
		{"AUTH\t11\tPLAIN" + authPrefix + "\tresp=\n", "FAIL\t11\treason=Invalid response\n"},
		{"AUTH\t12\tPLAIN" + authPrefix + "\tresp=" + b64("\x00\x00pw") + "\n", "FAIL\t12\treason=Invalid response\n"},
		{"CONT\t99\t" + b64("x") + "\n", "FAIL\t99\treason=Unknown or expired authentication request\n"},
		// A user name that would break the line is not echoed.
		{"AUTH\t13\tPLAIN" + authPrefix + "\tresp=" + b64("\x00a\tb\x00x") + "\n", "FAIL\t13\treason=Invalid user name or password\n"},
		// Ids are not contiguous (postfix skips ids after a failed write).
		{"AUTH\t4000000000\tPLAIN" + authPrefix + "\tresp=" + b64("\x00ok\x00pw-ok") + "\n", "OK\t4000000000\tuser=ok\n"},
	})
}

func TestRequestFields(t *testing.T) {
	got := make(chan Request, 1)
	h := HandlerFunc(func(ctx context.Context, r *Request) Result {
		cp := *r
		cp.Password = append([]byte(nil), r.Password...)
		got <- cp
		return Result{Verdict: Reject}
	})
	addr := start(t, &Server{Handler: h})
	c := postfix(t, addr)
	c.Send("AUTH\t1\tplain\tservice=submission\tnologin\tlip=192.0.2.1\trip=2001:db8::7\tsecured\tsession=abc\tresp=" + b64("zid\x00alice\x00s3cret") + "\n")
	c.Line()
	r := <-got
	want := Request{Mechanism: "PLAIN", Credentials: Credentials{Authzid: "zid", User: "alice", Password: []byte("s3cret")},
		Service: "submission", LocalIP: "192.0.2.1", ClientIP: "2001:db8::7", Secured: true}
	if r.Mechanism != want.Mechanism || r.Authzid != want.Authzid || r.User != want.User || string(r.Password) != "s3cret" ||
		r.Service != want.Service || r.LocalIP != want.LocalIP || r.ClientIP != want.ClientIP || !r.Secured {
		t.Fatalf("request %+v, want %+v", r, want)
	}
}

func TestPasswordZeroed(t *testing.T) {
	kept := make(chan []byte, 1)
	h := HandlerFunc(func(ctx context.Context, r *Request) Result {
		kept <- r.Password
		return Result{Verdict: Accept}
	})
	addr := start(t, &Server{Handler: h})
	c := postfix(t, addr)
	c.Send("AUTH\t1\tPLAIN" + authPrefix + "\tresp=" + b64("\x00u\x00secret") + "\n")
	c.Expect("reply", "OK\t1\tuser=u\n")
	if p := <-kept; string(p) != "\x00\x00\x00\x00\x00\x00" {
		t.Fatalf("password still in memory after the reply: %q", p)
	}
}

func TestTempFailClosesOnlyThatConnection(t *testing.T) {
	addr := start(t, &Server{Handler: users})
	other := postfix(t, addr)
	c := postfix(t, addr)
	c.Send("AUTH\t1\tPLAIN" + authPrefix + "\tresp=" + b64("\x00tmp\x00x") + "\n")
	c.closed()
	other.Send("AUTH\t1\tPLAIN" + authPrefix + "\tresp=" + b64("\x00ok\x00pw-ok") + "\n")
	other.Expect("other connection:", "OK\t1\tuser=ok\n")
	// A new connection is handshaken and served at once (postfix
	// reconnects on its next login).
	again := postfix(t, addr)
	again.Send("AUTH\t2\tLOGIN" + authPrefix + "\tresp=" + b64("ok") + "\n")
	again.Expect("after reconnect:", "CONT\t2\tUGFzc3dvcmQ6\n")
}

func TestHandlerPanic(t *testing.T) {
	addr := start(t, &Server{Handler: users})
	c := postfix(t, addr)
	c.Send("AUTH\t1\tPLAIN" + authPrefix + "\tresp=" + b64("\x00panic\x00x") + "\n")
	c.closed()
	c = postfix(t, addr)
	c.Send("AUTH\t2\tPLAIN" + authPrefix + "\tresp=" + b64("\x00ok\x00pw-ok") + "\n")
	c.Expect("after a panic:", "OK\t2\tuser=ok\n")
}

func TestProtocolErrorsClose(t *testing.T) {
	addr := start(t, &Server{Handler: users})
	for name, in := range map[string]string{
		"no VERSION":     "AUTH\t1\tPLAIN\n",
		"VERSION 2":      "VERSION\t2\t0\n",
		"VERSION bare":   "VERSION\n",
		"NUL":            "VERSION\t1\t0\nCPID\t1\x00\n",
		"line too long":  "VERSION\t1\t0\nAUTH\t1\tPLAIN\tresp=" + strings.Repeat("A", MaxLine) + "\n",
		"bad id":         "VERSION\t1\t0\nAUTH\tx\tPLAIN\n",
		"AUTH no mech":   "VERSION\t1\t0\nAUTH\t1\n",
		"CONT no id":     "VERSION\t1\t0\nCONT\n",
		"duplicate id":   "VERSION\t1\t0\nAUTH\t1\tPLAIN\nAUTH\t1\tPLAIN\n",
		"negative id":    "VERSION\t1\t0\nAUTH\t-1\tPLAIN\n",
		"id overflowing": "VERSION\t1\t0\nAUTH\t99999999999\tPLAIN\n",
	} {
		t.Run(name, func(t *testing.T) {
			c := dial(t, addr)
			c.Send(in)
			for {
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				l, err := c.R.ReadString('\n')
				if err != nil {
					if l != "" || errors.Is(err, io.ErrUnexpectedEOF) {
						t.Fatalf("partial line %q", l)
					}
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Fatal("connection left open")
					}
					return
				}
				// Handshake lines and the first AUTH's CONT are fine.
				if strings.HasPrefix(l, "OK") || strings.HasPrefix(l, "FAIL") {
					t.Fatalf("reply %q", l)
				}
			}
		})
	}
	// A line of exactly MaxLine bytes is accepted.
	c := postfix(t, addr)
	line := "AUTH\t1\tPLAIN\tresp="
	c.Send(line + strings.Repeat("A", MaxLine-len(line)) + "\n")
	if got := c.Line(); !strings.HasPrefix(got, "FAIL\t1\t") {
		t.Fatalf("longest line: %q", got)
	}
}

// TestMaxInFlight: at the bound, a new AUTH makes room by forgetting the
// oldest exchange that waits for a CONT (its client has most likely given
// up: postfix never tells, PROTOCOLS.md §8.3); only Handler calls still
// running at the bound refuse it.
func TestMaxInFlight(t *testing.T) {
	addr := start(t, &Server{Handler: users, MaxInFlight: 3})
	c := postfix(t, addr)
	for _, id := range []string{"1", "2", "3", "4"} {
		c.Send("AUTH\t" + id + "\tLOGIN" + authPrefix + "\n")
		c.Expect("AUTH "+id+":", "CONT\t"+id+"\tVXNlcm5hbWU6\n")
	}
	c.Send("CONT\t1\t" + b64("ok") + "\n")
	c.Expect("CONT 1, forgotten:", "FAIL\t1\treason=Unknown or expired authentication request\n")
	c.Send("CONT\t2\t" + b64("ok") + "\nCONT\t2\t" + b64("pw-ok") + "\n")
	c.Line()
	c.Expect("CONT 2, kept:", "OK\t2\tuser=ok\n")

	blocking, started, release := blockingHandler()
	addr = start(t, &Server{Handler: blocking, MaxInFlight: 1})
	c = postfix(t, addr)
	c.Send("AUTH\t1\tPLAIN" + authPrefix + "\tresp=" + b64("\x00ok\x00pw-ok") + "\n")
	<-started
	c.Send("AUTH\t2\tLOGIN" + authPrefix + "\n")
	c.Expect("AUTH 2 while 1 runs:", "FAIL\t2\treason=Too many authentication requests in progress\n")
	close(release)
	c.Expect("AUTH 1:", "OK\t1\tuser=ok\n")
}

// TestAbandonedExchangesMakeRoom: SMTP clients that answer "*" to a 334,
// or hang up, as many times as the bound, do not make the next login
// through the same smtpd fail (a FAIL is a permanent 535).
func TestAbandonedExchangesMakeRoom(t *testing.T) {
	addr := start(t, &Server{Handler: users})
	c := postfix(t, addr)
	for i := 1; i <= DefaultMaxInFlight+5; i++ {
		id := strconv.Itoa(i)
		c.Send("AUTH\t" + id + "\tLOGIN" + authPrefix + "\n")
		c.Expect("AUTH "+id+":", "CONT\t"+id+"\tVXNlcm5hbWU6\n")
	}
	c.Send("AUTH\t99\tPLAIN" + authPrefix + "\tresp=" + b64("\x00ok\x00pw-ok") + "\n")
	c.Expect("login after abandoned ones:", "OK\t99\tuser=ok\n")
}

func TestContTimeout(t *testing.T) {
	addr := start(t, &Server{Handler: users, ContTimeout: 50 * time.Millisecond, MaxInFlight: 1})
	c := postfix(t, addr)
	c.Send("AUTH\t1\tLOGIN" + authPrefix + "\n")
	c.Line()
	time.Sleep(100 * time.Millisecond)
	c.Send("CONT\t1\t" + b64("ok") + "\n")
	c.Expect("late CONT:", "FAIL\t1\treason=Unknown or expired authentication request\n")
	// An expired exchange no longer counts against MaxInFlight.
	c.Send("AUTH\t2\tLOGIN" + authPrefix + "\n")
	c.Line()
	time.Sleep(100 * time.Millisecond)
	c.Send("AUTH\t3\tPLAIN" + authPrefix + "\tresp=" + b64("\x00ok\x00pw-ok") + "\n")
	c.Expect("after expiry:", "OK\t3\tuser=ok\n")
}

func TestIdleTimeout(t *testing.T) {
	addr := start(t, &Server{Handler: users, Server: connserver.Server{IdleTimeout: 50 * time.Millisecond}})
	c := postfix(t, addr)
	c.closed()
}

func TestPartialLineTimeout(t *testing.T) {
	addr := start(t, &Server{Handler: users, Server: connserver.Server{ReadTimeout: 50 * time.Millisecond}})
	c := postfix(t, addr)
	c.Send("AUTH\t1\tPL")
	c.closed()
}

func TestShutdownAnswersInFlight(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, r *Request) Result {
		if r.User == "slow" {
			close(started)
			<-release
		}
		return Result{Verdict: Accept}
	})
	s := &Server{Handler: h}
	l, served := testutil.Serve(t, "tcp", s.Serve)
	addr := l.Addr().String()
	idle := postfix(t, addr)
	// One answered login proves the server read everything idle sent.
	idle.Send("AUTH\t1\tPLAIN" + authPrefix + "\tresp=" + b64("\x00fast\x00x") + "\n")
	idle.Line()
	busy := postfix(t, addr)
	busy.Send("AUTH\t1\tPLAIN" + authPrefix + "\tresp=" + b64("\x00slow\x00x") + "\n")
	testutil.ShutdownCheck{
		Shutdown: s.Shutdown, Served: served, Closed: ErrServerClosed,
		Started: started, Release: release,
	}.RunLines(t, idle.closed, busy.LineConn, "OK\t1\tuser=slow\n", busy.closed)
}

// A reply to one connection's login never waits for another's.
func TestConnectionsIndependent(t *testing.T) {
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, r *Request) Result {
		if r.User == "slow" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return Result{Verdict: Accept}
	})
	addr := start(t, &Server{Handler: h})
	defer close(release)
	slow := postfix(t, addr)
	slow.Send("AUTH\t1\tPLAIN" + authPrefix + "\tresp=" + b64("\x00slow\x00x") + "\n")
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			c := postfix(t, addr)
			c.Send("AUTH\t7\tPLAIN" + authPrefix + "\tresp=" + b64("\x00fast\x00x") + "\n")
			if got := c.Line(); got != "OK\t7\tuser=fast\n" {
				t.Errorf("reply %q", got)
			}
		})
	}
	wg.Wait()
}

// TestProtocolErrorClosesAtOnce: a protocol error closes the connection
// at once, not when the checks still running on it end: the stream can
// no longer be trusted, and their answers would go out on it.
func TestProtocolErrorClosesAtOnce(t *testing.T) {
	blocking, started, release := blockingHandler()
	defer close(release)
	addr := start(t, &Server{Handler: blocking})
	c := postfix(t, addr)
	c.Send("AUTH\t1\tPLAIN" + authPrefix + "\tresp=" + b64("\x00ok\x00pw-ok") + "\n")
	<-started
	c.Send("AUTH\tx\tPLAIN\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := c.R.ReadString('\n')
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection left open while a check runs")
	}
	if err == nil {
		t.Fatalf("reply %q after a protocol error", l)
	}
}

// blockingHandler accepts every login once release is closed, and tells
// started each time a call begins.
func blockingHandler() (h Handler, started chan struct{}, release chan struct{}) {
	release = make(chan struct{})
	started = make(chan struct{}, 1)
	h = HandlerFunc(func(ctx context.Context, r *Request) Result {
		started <- struct{}{}
		<-release
		return Result{Verdict: Accept}
	})
	return h, started, release
}
