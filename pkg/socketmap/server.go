package socketmap

import (
	"bufio"
	"context"
	"net"
	"time"

	"github.com/shitenno/shitenno/pkg/connserver"
)

// ErrServerClosed is returned by Serve after Shutdown or Close: the one
// of every protocol Server, connserver.ErrServerClosed.
var ErrServerClosed = connserver.ErrServerClosed

// Handler answers one lookup. It must return within a bounded time (the
// backend client's Timeout); ctx is cancelled when the server is closed.
type Handler interface {
	ServeSocketmap(ctx context.Context, req Request) Reply
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req Request) Reply

// ServeSocketmap calls f.
func (f HandlerFunc) ServeSocketmap(ctx context.Context, req Request) Reply { return f(ctx, req) }

// Server serves socketmap connections. Its zero value is not usable: set
// Handler. Postfix keeps connections open and sends one request at a time
// on each (no pipelining), so each connection is served sequentially by its
// own goroutine and concurrency comes from connections.
//
// IdleTimeout defaults to 5 minutes (postfix itself closes after 10 s
// idle). Shutdown closes idle connections at once and lets in-flight
// requests finish and be answered.
type Server struct {
	Handler Handler
	// MaxRequestSize bounds a request payload. Default MaxPayload.
	MaxRequestSize int
	// Server holds the timeouts, MaxConns, Logger and ConnState, and
	// gives Shutdown and Close.
	connserver.Server
}

// Serve accepts connections on l until Shutdown or Close. It always
// returns a non-nil error; ErrServerClosed after a shutdown. It may run
// for several listeners at once.
func (s *Server) Serve(l net.Listener) error { return s.ServeConns(l, s.newConn) }

// newConn serves one connection a request at a time, as postfix sends
// them.
func (s *Server) newConn(nc net.Conn) connserver.Conn {
	max := connserver.Or(s.MaxRequestSize, MaxPayload)
	var buf []byte
	t := s.Timeouts(5 * time.Minute)
	return connserver.NewSequential(nc, bufio.NewReaderSize(nc, 4096), t, complete, func(ctx context.Context, br *bufio.Reader, out []byte) ([]byte, bool) {
		p, err := ReadNetstring(br, buf, max)
		if err != nil {
			// A framing error cannot be resynchronised: say why, once, and
			// close. Postfix would only see a disconnect anyway.
			s.Log().Warn("socketmap: closing connection on protocol error", "err", err, "remote", nc.RemoteAddr().String())
			return nil, false
		}
		var rep Reply
		if req, err := ParseRequest(p); err != nil {
			rep = Reply{Kind: Perm, Text: "malformed request: expected \"name key\""}
		} else {
			rep = s.Handler.ServeSocketmap(ctx, req)
		}
		buf = p[:0]
		if cap(buf) > 64<<10 {
			buf = nil // do not pin a huge request buffer on an idle connection
		}
		return AppendReply(out, rep), true
	})
}
