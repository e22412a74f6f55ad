//go:build unix && !aix

package remote

import (
	"crypto/tls"
	"net"
	"syscall"
)

// sockPeek looks into a connection's socket without reading from it. It
// is made once per connection: SyscallConn and a closure per look would
// be two allocations for every request on a reused connection.
type sockPeek struct {
	rc   syscall.RawConn // nil: not looked into yet
	fn   func(fd uintptr) bool
	bad  bool // the socket cannot be looked into
	n    int
	rerr error
	buf  [1]byte
}

// dead reports whether the backend closed nc, or sent something on it
// (unsolicited bytes, a TLS alert), as far as one non-blocking peek at
// the socket tells; a connection it cannot look into counts as alive. One
// recvfrom, no wait.
func (p *sockPeek) dead(nc net.Conn) bool {
	if p.rc == nil && !p.bad {
		if tc, ok := nc.(*tls.Conn); ok {
			nc = tc.NetConn()
		}
		sc, ok := nc.(syscall.Conn)
		if !ok {
			p.bad = true
			return false
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return true
		}
		p.rc = rc
		p.fn = func(fd uintptr) bool {
			p.n, _, p.rerr = syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			return true
		}
	}
	if p.bad {
		return false
	}
	if err := p.rc.Read(p.fn); err != nil {
		return true
	}
	// EOF (n == 0 and no error), bytes waiting, or a socket error: only
	// EAGAIN says the connection is idle and open.
	return p.rerr != syscall.EAGAIN && p.rerr != syscall.EWOULDBLOCK
}
