//go:build unix && !aix

package remote

import (
	"crypto/tls"
	"net"
	"syscall"
)

// connDead reports whether the backend closed an idle connection, or
// sent something on it (unsolicited bytes, a TLS alert), as far as one
// non-blocking peek at the socket tells; a connection it cannot look into
// counts as alive. One recvfrom, no wait.
func connDead(nc net.Conn) bool {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	var buf [1]byte
	var rerr error
	var n int
	if err := rc.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return true
	}
	if rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK {
		return false
	}
	// EOF (n == 0 and no error), bytes waiting, or a socket error.
	_ = n
	return true
}
