package dict

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
	"github.com/shitenno/shitenno/pkg/connserver"
)

// echo answers every lookup with the key and user it received.
var echo = HandlerFunc(func(_ context.Context, r Request) Reply {
	switch {
	case strings.HasSuffix(r.Key, "/missing"):
		return Reply{Kind: NotFound}
	case strings.HasSuffix(r.Key, "/fail"):
		return Reply{Kind: Failed, Value: "backend timeout"}
	}
	return Reply{Kind: Found, Value: r.Key + "|" + r.User + "|" + r.Dict}
})

// start serves srv on a loopback listener until the test ends.
func start(t *testing.T, srv *Server) (addr string, logs *testutil.SyncBuffer) {
	t.Helper()
	logs = &testutil.SyncBuffer{}
	if srv.Logger == nil {
		srv.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return testutil.ServeUntilCleanup(t, "tcp", srv.Serve, srv.Close, ErrServerClosed), logs
}

type client struct{ *testutil.LineConn }

func dial(t *testing.T, addr string) client {
	t.Helper()
	c := testutil.DialLines(t, "tcp", addr)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return client{c}
}

// closed asserts that the server closed the connection without sending
// anything more.
func (c client) closed() {
	c.T.Helper()
	rest, err := c.Rest()
	if err != nil {
		c.T.Fatalf("read: %v", err)
	}
	if len(rest) != 0 {
		c.T.Fatalf("unexpected bytes before close: %q", rest)
	}
}

const hello23 = "H3\t2\t0\t\tsomewhere\n"

// answeredThenClosed serves srv (see start) and sends hello23 and then
// send on one connection: the replies must come, in order, and then the
// server must close the connection. It returns start's address and log.
func answeredThenClosed(t *testing.T, srv *Server, send string, replies ...string) (string, *testutil.SyncBuffer) {
	t.Helper()
	addr, logs := start(t, srv)
	c := dial(t, addr)
	c.Send(hello23 + send)
	for _, r := range replies {
		c.Expect("reply", r)
	}
	c.closed()
	return addr, logs
}

func TestLookupReplies(t *testing.T) {
	addr, _ := start(t, &Server{Handler: echo})
	c := dial(t, addr)
	c.Send(hello23 + "Lshared/passdb/alice@example.org\talice@example.org\n")
	c.Expect("reply", "Oshared/passdb/alice@example.org|alice@example.org|somewhere\n")
	c.Send("Lshared/passdb/missing\tx\n")
	c.Expect("reply", "N\n")
	c.Send("Lshared/passdb/fail\tx\n")
	c.Expect("reply", "Fbackend timeout\n")
	// Escaped key and user arrive unescaped; the value goes back escaped.
	c.Send("Lshared/passdb/a\x01tb\tu\x01ns\n")
	c.Expect("reply", "Oshared/passdb/a\x01tb|u\x01ns|somewhere\n")
}

func TestHelloVersions(t *testing.T) {
	addr, logs := start(t, &Server{Handler: echo})
	for _, h := range []string{
		"H2\t0\t0\t\tsomewhere\n",      // 2.2.21
		"H2\t2\t0\tvmail\tsomewhere\n", // 2.3.16
		hello23,
		"H4\t0\t0\t\tsomewhere\n", // 2.4
	} {
		c := dial(t, addr)
		// 2.2 lookups carry no user field.
		c.Send(h + "Lshared/userdb/bob\n")
		if got, want := c.Line(), "Oshared/userdb/bob||somewhere\n"; got != want {
			t.Fatalf("%q: reply %q, want %q", h, got, want)
		}
	}
	for _, h := range []string{"H5\t0\t0\t\tx\n", "H1\t0\t0\t\tx\n"} {
		c := dial(t, addr)
		c.Send(h + "Lshared/userdb/bob\n")
		c.closed()
	}
	if !strings.Contains(logs.String(), "unsupported dovecot dict protocol version") || !strings.Contains(logs.String(), "major=5") {
		t.Fatalf("no clear log line for the rejected version:\n%s", logs)
	}
}

func TestNoReplyCommands(t *testing.T) {
	addr, _ := start(t, &Server{Handler: echo})
	c := dial(t, addr)
	// Nothing may answer H, B, S, U, A, T, R, V: the first line back must
	// be the lookup's reply.
	c.Send(hello23 + "B1\tuser\nS1\tshared/k\tv\nU1\tshared/k\nA1\tshared/n\t1\nT1\t0\t0\nV1\t1\nR1\n" +
		"B2\tuser\t60\nLshared/passdb/x\tu\n")
	c.Expect("reply", "Oshared/passdb/x|u|somewhere\n")
}

func TestIterateAndCommit(t *testing.T) {
	addr, _ := start(t, &Server{Handler: echo})
	c := dial(t, addr)
	c.Send(hello23 + "I0\t0\tshared/userdb/\t\n" +
		"B7\tu\nS7\tshared/k\tv\nC7\n" +
		"B8\tu\nU8\tshared/k\nD8\n" +
		"Lshared/passdb/x\tu\n")
	for _, want := range []string{
		"\n",
		"F7\t" + ReadOnlyReason + "\n",
		"AF8\t" + ReadOnlyReason + "\n",
		"Oshared/passdb/x|u|somewhere\n",
	} {
		c.Expect("reply", want)
	}
}

func TestProtocolErrorsClose(t *testing.T) {
	for _, tc := range []struct {
		name, in, log string
	}{
		{"unknown command", hello23 + "Zwhat\n", "unknown command"},
		{"overlong line", hello23 + "L" + strings.Repeat("k", 200) + "\n", "line longer"},
		{"invalid utf8", hello23 + "Lshared/passdb/\xff\n", "not valid UTF-8"},
		{"missing hello", "Lshared/passdb/x\tu\n", "first command is not a hello"},
		{"second hello", hello23 + hello23, "hello sent twice"},
		{"malformed hello", "H3\t2\n", "malformed"},
		{"empty line", hello23 + "\n", "empty command line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, logs := start(t, &Server{Handler: echo, MaxLineSize: 100})
			c := dial(t, addr)
			c.Send(tc.in)
			c.closed()
			if !strings.Contains(logs.String(), tc.log) {
				t.Fatalf("log lacks %q:\n%s", tc.log, logs)
			}
			// The daemon keeps serving others.
			c2 := dial(t, addr)
			c2.Send(hello23 + "Lshared/passdb/y\tu\n")
			c2.Expect("next connection:", "Oshared/passdb/y|u|somewhere\n")
		})
	}
}

func TestProtocolErrorAnswersEarlierLookups(t *testing.T) {
	answeredThenClosed(t, &Server{Handler: echo}, "Lshared/passdb/x\tu\nZwhat\n", "Oshared/passdb/x|u|somewhere\n")
}

func TestPipelineOrderAndConcurrency(t *testing.T) {
	// The first lookup only returns after the last one has started, so the
	// test deadlocks (and times out) unless lookups run concurrently, and
	// the replies come out of order unless the server reorders them.
	lastStarted := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, r Request) Reply {
		switch r.Key {
		case "k1":
			select {
			case <-lastStarted:
			case <-time.After(5 * time.Second):
				return Reply{Kind: Failed, Value: "not concurrent"}
			}
		case "k3":
			close(lastStarted)
		}
		return Reply{Kind: Found, Value: r.Key}
	})
	addr, _ := start(t, &Server{Handler: h})
	c := dial(t, addr)
	c.Send(hello23 + "Lk1\tu\nLk2\tu\nI0\t0\tshared/\t\nLk3\tu\n")
	for _, want := range []string{"Ok1\n", "Ok2\n", "\n", "Ok3\n"} {
		c.Expect("reply", want)
	}
}

func TestPipelineBound(t *testing.T) {
	var cur, peak atomic.Int32
	h := HandlerFunc(func(ctx context.Context, r Request) Reply {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		cur.Add(-1)
		return Reply{Kind: Found, Value: r.Key}
	})
	addr, _ := start(t, &Server{Handler: h, MaxPipeline: 3})
	c := dial(t, addr)
	var b strings.Builder
	b.WriteString(hello23)
	for i := range 40 {
		b.WriteString("Lk" + string(rune('A'+i)) + "\tu\n")
	}
	c.Send(b.String())
	for i := range 40 {
		if got, want := c.Line(), "Ok"+string(rune('A'+i))+"\n"; got != want {
			t.Fatalf("reply %d = %q, want %q", i, got, want)
		}
	}
	if p := peak.Load(); p > 3 || p < 2 {
		t.Fatalf("peak concurrency %d, want 2..3 with MaxPipeline 3", p)
	}
}

func TestIdleTimeout(t *testing.T) {
	answeredThenClosed(t, &Server{Handler: echo, Server: connserver.Server{IdleTimeout: 50 * time.Millisecond}}, "")
}

func TestIdleTimeoutStillAnswers(t *testing.T) {
	// A lookup slower than the idle timeout is still answered.
	h := HandlerFunc(func(ctx context.Context, r Request) Reply {
		time.Sleep(200 * time.Millisecond)
		return Reply{Kind: Found, Value: "late"}
	})
	answeredThenClosed(t, &Server{Handler: h, Server: connserver.Server{IdleTimeout: 20 * time.Millisecond}}, "Lk\tu\n", "Olate\n")
}

func TestShutdownFinishesInFlight(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, r Request) Reply {
		if r.Key == "w" {
			return Reply{Kind: Found, Value: "warm"}
		}
		close(started)
		<-release
		return Reply{Kind: Found, Value: "done"}
	})
	srv := &Server{Handler: h}
	l, served := testutil.Serve(t, "tcp", srv.Serve)
	c := dial(t, l.Addr().String())
	idle := dial(t, l.Addr().String())
	// One answered lookup proves the server has read everything the idle
	// client sent: closing a socket with unread input sends RST, not FIN.
	idle.Send(hello23 + "Lw\tu\n")
	idle.Expect("warm-up reply", "Owarm\n")
	c.Send(hello23 + "Lk\tu\n")
	testutil.ShutdownCheck{
		Shutdown: srv.Shutdown, Served: served, Closed: ErrServerClosed,
		Started: started, Release: release,
	}.RunLines(t, idle.closed, c.LineConn, "Odone\n", c.closed)
	if err := srv.Serve(l); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

func TestShutdownDeadlineCancels(t *testing.T) {
	started := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, r Request) Reply {
		close(started)
		<-ctx.Done()
		return Reply{Kind: Failed, Value: "cancelled"}
	})
	srv := &Server{Handler: h}
	l, served := testutil.Serve(t, "tcp", srv.Serve)
	c := dial(t, l.Addr().String())
	c.Send(hello23 + "Lk\tu\n")
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
}

func TestHandlerPanicClosesConnection(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, r Request) Reply {
		if r.Key == "boom" {
			panic("boom")
		}
		return Reply{Kind: Found, Value: r.Key}
	})
	addr, logs := answeredThenClosed(t, &Server{Handler: h}, "Lboom\tu\n", "Finternal error\n")
	if !strings.Contains(logs.String(), "handler panic") {
		t.Fatalf("log:\n%s", logs)
	}
	c2 := dial(t, addr)
	c2.Send(hello23 + "Lok\tu\n")
	c2.Expect("reply", "Ook\n")
}

func TestClientGoneCancelsNothingElse(t *testing.T) {
	// A client that sends lookups and vanishes must not leak goroutines
	// (goleak checks at exit) nor disturb others.
	h := HandlerFunc(func(ctx context.Context, r Request) Reply {
		time.Sleep(20 * time.Millisecond)
		return Reply{Kind: Found, Value: strings.Repeat("v", 10000)}
	})
	addr, _ := start(t, &Server{Handler: h, MaxPipeline: 2})
	for range 5 {
		c := dial(t, addr)
		c.Send(hello23 + strings.Repeat("Lk\tu\n", 20))
		c.Close()
	}
	c := dial(t, addr)
	c.Send(hello23 + "Lk\tu\n")
	if got := c.Line(); len(got) != 10002 {
		t.Fatalf("reply of %d bytes", len(got))
	}
}

// TestWriteErrorEndsConnection: a client that sends lookups and never
// reads their replies gets its connection closed once a write times out,
// also when the reader itself is the one writing (a lookup answered in
// place, from inside connserver's ReadRaw), and the server shuts down
// at once after.
func TestWriteErrorEndsConnection(t *testing.T) {
	big := strings.Repeat("v", 30000)
	srv := &Server{Handler: HandlerFunc(func(ctx context.Context, r Request) Reply {
		return Reply{Kind: Found, Value: big}
	})}
	srv.WriteTimeout = 50 * time.Millisecond
	addr, logs := start(t, srv)
	c := dial(t, addr)
	c.Send(hello23)
	// One lookup at a time, each answered before the next arrives: the
	// reader answers in place, and is the writer whose write times out.
	for i := range 2000 {
		if _, err := fmt.Fprintf(c, "Lshared/passdb/u%d@example.org\tu\n", i); err != nil {
			break // closed: what is wanted
		}
		if strings.Contains(logs.String(), "closing connection on write error") {
			break
		}
		time.Sleep(time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "closing connection on write error") {
		if time.Now().After(deadline) {
			t.Fatalf("no write error logged: %s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v (the connection did not end)", err)
	}
}

// TestWriteErrorStopsReading: lookups pipelined behind a write that timed
// out are not read any more (their replies could never be written): the
// client's write of them fails, and the handler sees only the lookups
// read before the error and those already buffered.
func TestWriteErrorStopsReading(t *testing.T) {
	big := strings.Repeat("v", 30000)
	var handled atomic.Int64
	srv := &Server{Handler: HandlerFunc(func(ctx context.Context, r Request) Reply {
		handled.Add(1)
		return Reply{Kind: Found, Value: big}
	})}
	srv.WriteTimeout = 50 * time.Millisecond
	addr, logs := start(t, srv)
	c := dial(t, addr)
	const n = 200000
	var wire strings.Builder
	wire.WriteString(hello23)
	for i := range n {
		fmt.Fprintf(&wire, "Lshared/passdb/u%d@example.org\tu\n", i)
	}
	_ = c.SetWriteDeadline(time.Now().Add(8 * time.Second))
	_, err := c.Write([]byte(wire.String()))
	if err == nil {
		t.Errorf("all %d lookups were read by a server that could not answer them", n)
	}
	if !strings.Contains(logs.String(), "closing connection on write error") {
		t.Errorf("no write error logged: %s", logs.String())
	}
	// The sockets hold a few hundred 30 kB replies before the write times
	// out (about 240 here); a server that went on reading handled 5600.
	if h := handled.Load(); h > 2000 {
		t.Errorf("%d lookups handled after the write error stopped the replies", h)
	}
}
