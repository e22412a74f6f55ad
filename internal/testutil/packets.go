package testutil

import (
	"net"
	"sync"
	"testing"
)

// ReadPackets sends every packet that c receives to out, as a string of
// at most size bytes, until c is closed. The stop it returns closes c and
// waits for the reader; it runs when the test ends if not called before.
func ReadPackets(t testing.TB, c net.PacketConn, size int, out chan<- string) (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := make([]byte, size)
		for {
			n, _, err := c.ReadFrom(b)
			if err != nil {
				return
			}
			out <- string(b[:n])
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { _ = c.Close(); <-done }) }
	t.Cleanup(stop)
	return stop
}
