package testutil

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Acceptor is a hand-written server for a test: it gives each connection
// its listener accepts to a handler in a goroutine of its own, and keeps
// the connection open after the handler returns unless the handler closed
// it.
type Acceptor struct {
	// Accepted counts the connections accepted so far.
	Accepted atomic.Int64

	l    net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	open []net.Conn
	done bool // Stop has closed what was open
	once sync.Once
}

// Accept starts an Acceptor on l; it stops when the test ends, if Stop has
// not been called before.
func Accept(t testing.TB, l net.Listener, handle func(net.Conn)) *Acceptor {
	a := &Acceptor{l: l}
	a.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			a.Accepted.Add(1)
			a.mu.Lock()
			a.open = append(a.open, c)
			if a.done {
				_ = c.Close()
			}
			a.mu.Unlock()
			a.wg.Go(func() { handle(c) })
		}
	})
	t.Cleanup(a.Stop)
	return a
}

// AcceptTCP is Accept on a new loopback port.
func AcceptTCP(t testing.TB, handle func(net.Conn)) *Acceptor {
	t.Helper()
	return Accept(t, Listen(t, "tcp"), handle)
}

// Addr is the listener's address.
func (a *Acceptor) Addr() string { return a.l.Addr().String() }

// Stop closes the listener and every connection accepted, then waits for
// the handlers to return.
func (a *Acceptor) Stop() {
	a.once.Do(func() {
		_ = a.l.Close()
		a.mu.Lock()
		a.done = true
		for _, c := range a.open {
			_ = c.Close()
		}
		a.mu.Unlock()
		a.wg.Wait()
	})
}
