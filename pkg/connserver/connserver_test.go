package connserver

import (
	"bufio"
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
)

// echoConn answers each line with the same line; the line "panic" panics.
type echoConn struct {
	nc      net.Conn
	stopped atomic.Bool
}

func (c *echoConn) Serve(ctx context.Context) {
	r := bufio.NewReader(c.nc)
	for !c.stopped.Load() {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if line == "panic\n" {
			panic("boom")
		}
		if _, err := io.WriteString(c.nc, line); err != nil {
			return
		}
	}
}

func (c *echoConn) Stop() {
	c.stopped.Store(true)
	_ = c.nc.SetReadDeadline(time.Now())
}

func (c *echoConn) Close() error { return c.nc.Close() }

func start(t *testing.T, core *Core) string {
	t.Helper()
	serve := func(l net.Listener) error {
		return core.Serve(l, func(nc net.Conn) Conn { return &echoConn{nc: nc} })
	}
	return testutil.ServeUntilCleanup(t, "tcp", serve, core.Close, ErrServerClosed)
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := testutil.Dial(t, "tcp", addr)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return c, bufio.NewReader(c)
}

func echo(t *testing.T, c net.Conn, r *bufio.Reader, s string) error {
	t.Helper()
	if _, err := io.WriteString(c, s+"\n"); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if got != s+"\n" {
		t.Fatalf("echo %q: got %q", s, got)
	}
	return nil
}

// TestPanicEndsOnlyThatConnection: a handler panic closes its own
// connection; another open connection and new ones keep being served.
func TestPanicEndsOnlyThatConnection(t *testing.T) {
	addr := start(t, &Core{})
	c1, r1 := dial(t, addr)
	c2, r2 := dial(t, addr)
	if err := echo(t, c1, r1, "hello"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c2, "panic\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := r2.ReadString('\n'); err == nil {
		t.Fatal("panicking connection was not closed")
	}
	if err := echo(t, c1, r1, "still here"); err != nil {
		t.Fatalf("other connection after a panic: %v", err)
	}
	c3, r3 := dial(t, addr)
	if err := echo(t, c3, r3, "new"); err != nil {
		t.Fatalf("new connection after a panic: %v", err)
	}
}

// TestMaxConns: past the bound a new connection is closed at once and
// counted; the open ones keep working; a freed slot is usable again.
func TestMaxConns(t *testing.T) {
	var refused atomic.Int32
	core := &Core{MaxConns: 2, Refused: func() { refused.Add(1) }}
	addr := start(t, core)
	c1, r1 := dial(t, addr)
	c2, r2 := dial(t, addr)
	// Make sure both are registered before the third arrives.
	if err := echo(t, c1, r1, "a"); err != nil {
		t.Fatal(err)
	}
	if err := echo(t, c2, r2, "b"); err != nil {
		t.Fatal(err)
	}
	c3, r3 := dial(t, addr)
	if err := echo(t, c3, r3, "c"); err == nil {
		t.Fatal("third connection served past MaxConns = 2")
	}
	if refused.Load() != 1 {
		t.Fatalf("Refused called %d times, want 1", refused.Load())
	}
	if err := echo(t, c1, r1, "a again"); err != nil {
		t.Fatalf("open connection after a refusal: %v", err)
	}
	c2.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c4, r4 := dial(t, addr)
		if echo(t, c4, r4, "d") == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("freed slot never became usable")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestShutdownWaitsForConnections: Shutdown asks connections to stop and
// returns once they have; Serve then returns ErrServerClosed.
func TestShutdownWaitsForConnections(t *testing.T) {
	core := &Core{}
	addr := start(t, core)
	c, r := dial(t, addr)
	if err := echo(t, c, r, "x"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := core.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("connection still open after Shutdown")
	}
}
