package testutil

import (
	"context"
	"net"
	"sync"
)

// PipeListener is a net.Listener of in-memory connections (net.Pipe), for
// a server under test inside a synctest bubble, where real sockets are
// not allowed: Dial makes a connection and Accept hands out its server
// end.
type PipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// NewPipeListener returns a listener that is open until Close.
func NewPipeListener() *PipeListener {
	return &PipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept waits for a Dial, or for Close (then net.ErrClosed).
func (l *PipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept and Dial fail with net.ErrClosed; it may be called
// more than once.
func (l *PipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr is a placeholder: a pipe has no address.
func (l *PipeListener) Addr() net.Addr { return &net.UnixAddr{Name: "pipe", Net: "unix"} }

// Dial waits until Accept takes the server end of a new pipe and returns
// both ends; it fails with net.ErrClosed once the listener is closed, or
// with ctx's error.
func (l *PipeListener) Dial(ctx context.Context) (client, server net.Conn, err error) {
	c, s := net.Pipe()
	select {
	case l.conns <- s:
		return c, s, nil
	case <-l.done:
		err = net.ErrClosed
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.Close()
	s.Close()
	return nil, nil, err
}
