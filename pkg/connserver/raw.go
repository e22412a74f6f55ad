package connserver

import (
	"bufio"
	"errors"
	"net"
	"syscall"
	"time"
)

// RawSource is what a connection's bufio.Reader reads from for ReadRaw:
// inside RawConn.Read, non-blocking reads of the descriptor; the
// connection's own Read, with its deadlines, otherwise. It must be the
// reader's source before anything is read.
type RawSource struct {
	nc  net.Conn
	raw bool
	fd  int
	// drained: the last raw read found no more than it returned, so
	// anything that arrives later wakes the poller.
	drained bool
}

// NewRawSource returns the RawSource of nc.
func NewRawSource(nc net.Conn) *RawSource { return &RawSource{nc: nc} }

// errWouldBlock is a raw read's "nothing to read yet".
var errWouldBlock = errors.New("connserver: read would block")

// ReadRaw calls handle for each request complete in br (whose source is
// src, on the connection of rc), reading from inside one RawConn.Read,
// which saves a read(2) per request: Go's own Read tries the socket
// before it waits, and a client that waits for each reply has never sent
// its next request by then, so that read finds nothing (an EAGAIN, most
// of a microsecond on a virtual machine). Inside one RawConn.Read the
// poller keeps every readiness it reports, so once a read has drained
// the socket, ReadRaw waits without trying again: a byte that arrives
// later, even while a request is handled, wakes the wait. It waits up to
// idle for a request to begin (ArmRead). handle reads the request from
// br, which holds all of it, and reports false to end the connection.
//
// ReadRaw returns true with a request begun that br holds only part of
// (a slow client, or a request longer than br's buffer), for the caller
// to read it the classic way: the connection's Read and its deadlines;
// false when the connection is done (EOF, an error, the idle timeout, a
// Stop, or handle's false). After a Stop, requests already buffered in
// full are still handled, and nothing more is read. While handle runs the connection's Close
// waits for it to return (the runtime closes a descriptor only once
// every read in progress has ended).
func (c *Sequential) ReadRaw(rc syscall.RawConn, src *RawSource, br *bufio.Reader, idle time.Duration, complete func(buffered []byte) bool, handle func() bool) bool {
	src.raw, src.drained = true, false
	more := false
	err := rc.Read(func(fd uintptr) bool {
		src.fd = int(fd)
		for {
			b, _ := br.Peek(br.Buffered())
			if len(b) > 0 && complete(b) {
				if !handle() {
					return true
				}
				continue
			}
			if len(b) > 0 && (src.drained || len(b) == br.Size()) {
				more = true // the rest of a request: the classic way
				return true
			}
			if !src.drained {
				if c.Stopping() {
					return true // read no more, as ArmRead would refuse
				}
				if _, err := br.Peek(len(b) + 1); err == nil || errors.Is(err, errWouldBlock) {
					continue
				}
				// EOF or a socket error: the end, or for a request begun,
				// whatever the classic way makes of it.
				more = len(b) > 0
				return true
			}
			if !c.ArmRead(idle) {
				return true
			}
			src.drained = false // woken: read again
			return false
		}
	})
	src.raw = false
	return err == nil && more
}
