//go:build !unix

package connserver

import (
	"net"
	"syscall"
)

// rawConn is nil where the raw read loop is not built: connections are
// read the classic way.
func rawConn(net.Conn) syscall.RawConn { return nil }

// Read implements io.Reader: NC's own Read.
func (s *rawSource) Read(p []byte) (int, error) { return s.nc.Read(p) }
