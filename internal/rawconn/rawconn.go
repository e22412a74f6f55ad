// Package rawconn hands a connection's descriptor to code that reads or
// writes it with system calls of its own (connserver's raw read loop,
// the backend client's request write), which cuts the read(2) that Go's
// Read makes before it waits.
package rawconn

import (
	"net"
	"syscall"
)

// Of returns nc's raw connection, or nil when it has none: a pipe, or a
// wrapper that does not pass SyscallConn on. A TLS connection has one
// only underneath: its caller decides whether the bytes may be read raw.
func Of(nc net.Conn) syscall.RawConn {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
