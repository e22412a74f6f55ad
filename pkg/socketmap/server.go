package socketmap

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/shitenno/shitenno/pkg/connserver"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("socketmap: Server closed")

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
type Server struct {
	Handler Handler
	// IdleTimeout closes a connection that sends nothing for this long
	// (postfix itself closes after 10 s idle). Default 5 minutes.
	IdleTimeout time.Duration
	// ReadTimeout bounds reading one request once it has started. Default 10 s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one reply. Default 10 s.
	WriteTimeout time.Duration
	// MaxRequestSize bounds a request payload. Default MaxPayload.
	MaxRequestSize int
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

// Shutdown stops accepting, closes idle connections at once (postfix keeps
// idle ones open; waiting for them would never end), lets in-flight
// requests finish and be answered, then returns. If ctx ends first, the
// remaining connections are closed and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error { return s.shell.Shutdown(ctx, s.config()) }

// Close stops the server at once: listeners and connections are closed
// and in-flight handler contexts cancelled.
func (s *Server) Close() error { return s.shell.Close(s.config()) }

// config is what the shell sets its Core up with.
func (s *Server) config() connserver.Config {
	return connserver.Config{ErrClosed: ErrServerClosed, Logger: s.Logger, ConnState: s.ConnState}
}

// newConn serves one connection a request at a time, as postfix sends
// them.
func (s *Server) newConn(nc net.Conn) connserver.Conn {
	max := connserver.Or(s.MaxRequestSize, MaxPayload)
	var buf []byte
	t := connserver.Timeouts{Idle: s.IdleTimeout, Read: s.ReadTimeout, Write: s.WriteTimeout}.Or(5 * time.Minute)
	return connserver.NewSequential(nc, bufio.NewReaderSize(nc, 4096), t, complete, func(ctx context.Context, br *bufio.Reader, out []byte) ([]byte, bool) {
		p, err := ReadNetstring(br, buf, max)
		if err != nil {
			// A framing error cannot be resynchronised: say why, once, and
			// close. Postfix would only see a disconnect anyway.
			connserver.Logger(s.Logger).Warn("socketmap: closing connection on protocol error", "err", err, "remote", nc.RemoteAddr().String())
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
