//go:build unix

package remote

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/shitenno/shitenno/internal/rawconn"
)

// h1Raw writes a request and reads the first bytes of its response in
// one RawConn.Read on a plain connection, which saves a read(2) per
// request: Go's Read tries the socket before it waits, and right after
// the request went out the response is never there yet (an EAGAIN, most
// of a microsecond on a virtual machine). The poller's readiness is
// armed before the write, so a response arriving after it wakes the
// wait. It sits between readWatch and the connection; with no request
// pending it is the connection's own Read.
type h1Raw struct {
	nc  net.Conn
	rc  syscall.RawConn
	req []byte // to write before the next read; nil: none
	fn  func(fd uintptr) bool

	// Of the last request: how much of it was written, and why not all.
	wrote int
	werr  error

	// The read in progress: its buffer, what it got, and whether fn ran.
	p    []byte
	n    int
	rerr error
	ran  bool
}

// newH1Raw returns nc's h1Raw, or nil for a connection without a raw
// descriptor or under TLS (whose records crypto/tls must read).
func newH1Raw(nc net.Conn) *h1Raw {
	if _, ok := nc.(*tls.Conn); ok {
		return nil
	}
	rc := rawconn.Of(nc)
	if rc == nil {
		return nil
	}
	r := &h1Raw{nc: nc, rc: rc}
	r.fn = r.step // once per connection: a closure per request would be an allocation
	return r
}

// send arms r to write req before its next read.
func (r *h1Raw) send(req []byte) { r.req, r.wrote, r.werr = req, 0, nil }

// Read implements io.Reader.
func (r *h1Raw) Read(p []byte) (int, error) {
	if r.req == nil {
		return r.nc.Read(p)
	}
	r.p, r.n, r.rerr, r.ran = p, 0, nil, false
	err := r.rc.Read(r.fn)
	req := r.req
	r.req, r.p = nil, nil
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = r.opError(oe.Err) // "raw-read" to the read it stands for
		}
		if !r.ran || r.wrote < len(req) {
			r.werr = err
		}
		return 0, err
	}
	if r.werr != nil {
		return 0, r.opError(r.werr)
	}
	if r.wrote < len(req) {
		w, err := r.nc.Write(req[r.wrote:])
		r.wrote += w
		if err != nil {
			r.werr = err
			return 0, err
		}
		return r.nc.Read(p)
	}
	return r.n, r.rerr
}

// step is the RawConn.Read function: the request first, then the read.
func (r *h1Raw) step(fd uintptr) bool {
	r.ran = true
	if r.wrote < len(r.req) {
		w, err := syscall.Write(int(fd), r.req[r.wrote:])
		for err == syscall.EINTR {
			w, err = syscall.Write(int(fd), r.req[r.wrote:])
		}
		if err != nil {
			if err != syscall.EAGAIN && err != syscall.EWOULDBLOCK {
				r.werr = os.NewSyscallError("write", err)
			}
			return true // a failure, or the rest to write the classic way
		}
		r.wrote += w
		return r.wrote < len(r.req) // all written: wait, the response cannot be here yet
	}
	n, err := syscall.Read(int(fd), r.p)
	for err == syscall.EINTR {
		n, err = syscall.Read(int(fd), r.p)
	}
	switch {
	case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
		return false
	case err != nil:
		r.rerr = r.opError(os.NewSyscallError("read", err))
	case n == 0 && len(r.p) > 0:
		r.rerr = io.EOF
	default:
		r.n = n
	}
	return true
}

// opError wraps err as the connection's own Read or Write reports it.
func (r *h1Raw) opError(err error) error {
	if _, ok := err.(*net.OpError); ok {
		return err
	}
	op := "read"
	if se, ok := err.(*os.SyscallError); ok && se.Syscall == "write" {
		op = "write"
	}
	return &net.OpError{Op: op, Net: r.nc.LocalAddr().Network(), Source: r.nc.LocalAddr(), Addr: r.nc.RemoteAddr(), Err: err}
}
