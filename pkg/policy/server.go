package policy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"time"

	"github.com/shitenno/shitenno/pkg/connserver"
)

// ErrServerClosed is returned by Serve after Shutdown or Close: the one
// of every protocol Server, connserver.ErrServerClosed.
var ErrServerClosed = connserver.ErrServerClosed

// Handler answers one policy request with an action (the value of the
// reply's action attribute, see CheckAction). It must return within a
// bounded time (the backend client's Timeout); ctx is cancelled when the
// server is closed.
type Handler interface {
	ServePolicy(ctx context.Context, req Request) string
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req Request) string

// ServePolicy calls f.
func (f HandlerFunc) ServePolicy(ctx context.Context, req Request) string { return f(ctx, req) }

// Server serves policy connections. Postfix sends one request at a time
// on a connection it reuses (up to smtpd_policy_service_max_idle idle,
// smtpd_policy_service_max_ttl in all), so each connection is served
// sequentially by its own goroutine and concurrency comes from
// connections.
//
// IdleTimeout defaults to 30 minutes: longer than postfix's own limits
// (max_idle 300 s, max_ttl 1000 s by default), so postfix is the one
// closing. Shutdown closes idle connections at once (postfix keeps them
// open; waiting would never end) and lets in-flight requests finish and
// be answered.
type Server struct {
	Handler Handler
	// Server holds the timeouts, MaxConns, Logger and ConnState, and
	// gives Shutdown and Close.
	connserver.Server
}

// Serve accepts connections on l until Shutdown or Close. It always
// returns a non-nil error; ErrServerClosed after a shutdown. It may run
// for several listeners at once.
func (s *Server) Serve(l net.Listener) error { return s.ServeConns(l, s.newConn) }

// newConn serves one connection a request at a time.
func (s *Server) newConn(nc net.Conn) connserver.Conn {
	t := s.Timeouts(30 * time.Minute)
	return connserver.NewSequential(nc, NewReader(nc), t, complete, func(ctx context.Context, br *bufio.Reader, out []byte) ([]byte, bool) {
		req, err := ReadRequest(br)
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
				s.Log().Warn("policy: closing connection on protocol error", "err", err, "remote", nc.RemoteAddr().String())
			}
			return nil, false
		}
		action := s.Handler.ServePolicy(ctx, req)
		if err := CheckAction(action); err != nil {
			// The handler's bug: no reply and a disconnect is what
			// postfix expects from a server in trouble.
			s.Log().Error("policy: handler returned an invalid action; closing connection", "err", err)
			return nil, false
		}
		return AppendReply(out, action), true
	})
}
