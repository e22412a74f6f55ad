//go:build !unix

package connserver

import (
	"net"
	"syscall"
)

// RawConnOf is nil where the raw read loop is not built: connections are
// read the classic way.
func RawConnOf(net.Conn) syscall.RawConn { return nil }

// Read implements io.Reader: NC's own Read.
func (s *RawSource) Read(p []byte) (int, error) { return s.nc.Read(p) }
