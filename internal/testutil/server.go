package testutil

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// ReadTimeout bounds every read these helpers make on a test connection,
// so that a server that never answers fails the test instead of hanging it.
const ReadTimeout = 5 * time.Second

// Listen opens a listener for a server under test: on network "tcp" a
// free loopback port, on "unix" a socket in the test's temporary folder.
func Listen(t testing.TB, network string) net.Listener {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Serve runs serve (a server's Serve method) in a goroutine on a new
// listener (see Listen). It returns the listener and the channel on which
// serve's result arrives.
func Serve(t testing.TB, network string, serve func(net.Listener) error) (net.Listener, <-chan error) {
	t.Helper()
	l := Listen(t, network)
	done := make(chan error, 1)
	go func() { done <- serve(l) }()
	return l, done
}

// ServeUntilCleanup is Serve until the test ends: then it calls stop (the
// server's Close or Shutdown) and checks that serve returned closed (the
// server's ErrServerClosed, itself and not wrapped). It returns the address to dial.
func ServeUntilCleanup(t testing.TB, network string, serve func(net.Listener) error, stop func() error, closed error) string {
	t.Helper()
	l, done := Serve(t, network, serve)
	t.Cleanup(func() {
		_ = stop()
		if err := <-done; err != closed {
			t.Errorf("Serve returned %v, want %v", err, closed)
		}
	})
	return l.Addr().String()
}

// Stopped checks that shutdown (a server's Shutdown) returns nil and then
// that Serve, whose result arrives on served, returned closed.
func Stopped(t testing.TB, shutdown func(context.Context) error, served <-chan error, closed error) {
	t.Helper()
	if err := shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != closed {
		t.Fatalf("Serve returned %v, want %v", err, closed)
	}
}

// Dial connects to a server under test; the connection is closed when the
// test ends.
func Dial(t testing.TB, network, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// ExpectEOF checks that the server closes c without sending anything
// more: a read gets io.EOF within ReadTimeout. what names c in the failure.
func ExpectEOF(t testing.TB, c net.Conn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(ReadTimeout))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF || n != 0 {
		t.Fatalf("%s: read %d bytes, %v, want EOF", what, n, err)
	}
}

// ShutdownCheck is the graceful Shutdown every stream server must make:
// with one connection idle and one whose request the handler holds, the
// idle one is closed at once, Shutdown waits for the request, whose reply
// still goes out, and then returns nil; Serve returns the server's
// ErrServerClosed.
type ShutdownCheck struct {
	Shutdown func(context.Context) error
	Served   <-chan error // what Serve returned
	Closed   error        // the server's ErrServerClosed
	// Started is readable once the handler holds the request in flight;
	// closing Release lets it answer.
	Started <-chan struct{}
	Release chan struct{}
	// IdleClosed checks that the idle connection was closed; Answered
	// checks the reply to the request in flight.
	IdleClosed, Answered func()
}

// Run makes the check, the request in flight having been sent.
func (s ShutdownCheck) Run(t testing.TB) {
	t.Helper()
	<-s.Started
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	// The idle connection is closed without waiting for the busy one.
	s.IdleClosed()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(s.Release)
	s.Answered()
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-s.Served; err != s.Closed {
		t.Fatalf("Serve returned %v, want %v", err, s.Closed)
	}
}

// RunLines is Run for a line protocol's clients (see LineConn):
// idleClosed checks that the idle one was closed; busy must get the line
// reply, then be closed as busyClosed checks.
func (s ShutdownCheck) RunLines(t testing.TB, idleClosed func(), busy *LineConn, reply string, busyClosed func()) {
	t.Helper()
	s.IdleClosed = idleClosed
	s.Answered = func() {
		busy.Expect("in-flight reply", reply)
		busyClosed()
	}
	s.Run(t)
}

// Retry calls try up to n times, pausing between tries, until it returns
// nil; it returns the last error. For what takes a moment to come up or
// to be free again (a socket a daemon is about to create, a port just
// released).
func Retry(n int, pause time.Duration, try func() error) error {
	var err error
	for i := 0; i < n; i++ {
		if err = try(); err == nil {
			return nil
		}
		time.Sleep(pause)
	}
	return err
}

// RetryValue is Retry for what returns a value (a connection, a
// listener): it returns the first value try makes without an error, and
// fails the test with the last error if none does.
func RetryValue[T any](t testing.TB, n int, pause time.Duration, try func() (T, error)) T {
	t.Helper()
	var v T
	if err := Retry(n, pause, func() (err error) {
		v, err = try()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

// ConnPair returns both ends of a new loopback connection of network
// ("tcp" or "unix"): the dialled one, then the accepted one. Both close
// when the test ends.
func ConnPair(t testing.TB, network string) (client, server net.Conn) {
	t.Helper()
	l := Listen(t, network)
	defer l.Close()
	c, err := net.Dial(network, l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}
