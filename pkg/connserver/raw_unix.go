//go:build unix

package connserver

import (
	"io"
	"net"
	"syscall"

	"github.com/shitenno/shitenno/internal/rawconn"
)

// RawConnOf returns nc's raw connection, or nil when it has none (a pipe,
// a TLS connection, a wrapper that hides it).
func RawConnOf(nc net.Conn) syscall.RawConn { return rawconn.Of(nc) }

// Read implements io.Reader: a non-blocking read(2) on the socket while
// raw (inside RawConn.Read, which passes the descriptor), errWouldBlock
// when nothing is there; NC's own Read otherwise.
func (s *RawSource) Read(p []byte) (int, error) {
	if !s.raw {
		return s.nc.Read(p)
	}
	for {
		n, err := syscall.Read(s.fd, p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			s.drained = true
			return 0, errWouldBlock
		case err != nil:
			return 0, &net.OpError{Op: "read", Net: s.nc.LocalAddr().Network(), Addr: s.nc.LocalAddr(), Err: err}
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		s.drained = n < len(p)
		return n, nil
	}
}
