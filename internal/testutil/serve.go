package testutil

import (
	"net"
	"sync"
	"testing"
)

// ServeConns accepts connections on l until the test ends and runs handle
// on each in its own goroutine; handle need not close its connection. At
// cleanup l and every connection still open are closed, and ServeConns
// waits for the accept loop and every handle to return: a fake server for
// peers and daemons to talk to.
func ServeConns(t testing.TB, l net.Listener, handle func(net.Conn)) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		ended bool // cleanup has run: close what Accept still returns
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if ended {
				mu.Unlock()
				c.Close()
				continue
			}
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		ended = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}
