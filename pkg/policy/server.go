package policy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/shitenno/shitenno/pkg/connserver"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("policy: Server closed")

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
type Server struct {
	Handler Handler
	// IdleTimeout closes a connection that sends nothing for this long.
	// Default 30 minutes: longer than postfix's own limits (max_idle 300 s,
	// max_ttl 1000 s by default), so postfix is the one closing.
	IdleTimeout time.Duration
	// ReadTimeout bounds reading one request once it has started. Default 10 s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one reply. Default 10 s.
	WriteTimeout time.Duration
	// MaxConns bounds open connections (0: none); see connserver.Core.
	MaxConns int
	// Logger receives connection-level errors; nil discards them.
	Logger *slog.Logger
	// ConnState, when set, is told when a connection opens (+1) or closes (-1).
	ConnState func(delta int)

	shell connserver.Shell
}

// Serve accepts connections on l until Shutdown or Close. It always
// returns a non-nil error; ErrServerClosed after a shutdown. It may run
// for several listeners at once.
func (s *Server) Serve(l net.Listener) error { return s.shell.Serve(s.config(), l, s.newConn) }

// Shutdown stops accepting, closes idle connections at once (postfix
// keeps them open; waiting would never end), lets in-flight requests
// finish and be answered, then returns. If ctx ends first, the remaining
// connections are closed and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error { return s.shell.Shutdown(ctx, s.config()) }

// Close stops the server at once: listeners and connections are closed
// and in-flight handler contexts cancelled.
func (s *Server) Close() error { return s.shell.Close(s.config()) }

// config is what the shell sets its Core up with.
func (s *Server) config() connserver.Config {
	return connserver.Config{ErrClosed: ErrServerClosed, Logger: s.Logger, ConnState: s.ConnState, MaxConns: s.MaxConns}
}

// newConn serves one connection a request at a time.
func (s *Server) newConn(nc net.Conn) connserver.Conn {
	t := connserver.Timeouts{Idle: s.IdleTimeout, Read: s.ReadTimeout, Write: s.WriteTimeout}.Or(30 * time.Minute)
	return connserver.NewSequential(nc, NewReader(nc), t, complete, func(ctx context.Context, br *bufio.Reader, out []byte) ([]byte, bool) {
		req, err := ReadRequest(br)
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
				connserver.Logger(s.Logger).Warn("policy: closing connection on protocol error", "err", err, "remote", nc.RemoteAddr().String())
			}
			return nil, false
		}
		action := s.Handler.ServePolicy(ctx, req)
		if err := CheckAction(action); err != nil {
			// The handler's bug: no reply and a disconnect is what
			// postfix expects from a server in trouble.
			connserver.Logger(s.Logger).Error("policy: handler returned an invalid action; closing connection", "err", err)
			return nil, false
		}
		return AppendReply(out, action), true
	})
}
