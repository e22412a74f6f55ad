package tcptable

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
var ErrServerClosed = errors.New("tcptable: Server closed")

// Handler answers one lookup of a decoded key. It must return within a
// bounded time (the backend client's Timeout); ctx is cancelled when the
// server is closed.
type Handler interface {
	ServeTCPTable(ctx context.Context, key []byte) Reply
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, key []byte) Reply

// ServeTCPTable calls f.
func (f HandlerFunc) ServeTCPTable(ctx context.Context, key []byte) Reply { return f(ctx, key) }

// Server serves tcp_table connections, one table per Server (tcp_table
// has no map name: the listening address is the table). Postfix sends one
// request at a time on a connection it keeps for the life of the process,
// so each connection is served sequentially by its own goroutine.
type Server struct {
	Handler Handler
	// IdleTimeout closes a connection that sends nothing for this long.
	// Default 1 hour: dict_tcp.c does not notice a closed connection until
	// its next lookup, which then logs "unexpected EOF" and sleeps one
	// second before reconnecting, so closing idle connections early costs
	// postfix a delay.
	IdleTimeout time.Duration
	// ReadTimeout bounds reading one request once it has started. Default 10 s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one reply. Default 10 s.
	WriteTimeout time.Duration
	// MaxRequestSize bounds a request line. Default MaxRequestLine.
	MaxRequestSize int
	// MaxConns bounds open connections (0: none); see connserver.Core.
	MaxConns int
	// Logger receives connection-level errors; nil discards them.
	Logger *slog.Logger
	// ConnState, when set, is told when a connection opens (+1) or closes (-1).
	ConnState func(delta int)

	shell connserver.Shell
}

// config is what the shell sets its Core up with.
func (s *Server) config() connserver.Config {
	return connserver.Config{ErrClosed: ErrServerClosed, Logger: s.Logger, ConnState: s.ConnState, MaxConns: s.MaxConns}
}

func (s *Server) logger() *slog.Logger { return connserver.Logger(s.Logger) }

// Serve accepts connections on l until Shutdown or Close. It always
// returns a non-nil error; ErrServerClosed after a shutdown. It may run
// for several listeners at once.
func (s *Server) Serve(l net.Listener) error {
	return s.shell.Serve(s.config(), l, func(nc net.Conn) connserver.Conn {
		return &conn{Sequential: connserver.Sequential{NC: nc}, srv: s}
	})
}

// Shutdown stops accepting, closes idle connections at once (postfix
// keeps them open; waiting would never end), lets in-flight lookups
// finish and be answered, then returns. If ctx ends first, the remaining
// connections are closed and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.shell.Shutdown(ctx, s.config())
}

// Close stops the server at once: listeners and connections are closed
// and in-flight handler contexts cancelled.
func (s *Server) Close() error {
	return s.shell.Close(s.config())
}

// conn is one client connection, served one request at a time.
type conn struct {
	connserver.Sequential
	srv *Server
}

// Serve implements connserver.Conn.
func (c *conn) Serve(ctx context.Context) {
	s := c.srv
	idle := connserver.Or(s.IdleTimeout, time.Hour)
	rto := connserver.Or(s.ReadTimeout, 10*time.Second)
	wto := connserver.Or(s.WriteTimeout, 10*time.Second)
	max := connserver.Or(s.MaxRequestSize, MaxRequestLine)
	br := bufio.NewReaderSize(c.NC, 4096)
	var line, key, out []byte
	for {
		if !c.Next(br, idle, rto) {
			return
		}
		l, err := ReadLine(br, line, max)
		var rep Reply
		switch {
		case errors.Is(err, ErrLineTooLong):
			// A 400 makes postfix give up on this lookup at once; a bare
			// disconnect would make it retry ten times, a second apart
			// (DICT_TCP_MAXTRY in dict_tcp.c).
			rep = Reply{Kind: Temp, Text: "request too long"}
		case errors.Is(err, ErrOverrun):
			s.logger().Warn("tcptable: closing connection: request line too long", "remote", c.NC.RemoteAddr().String())
			return
		case err != nil:
			return
		default:
			line = l[:0]
			k, perr := ParseRequest(key, l)
			if perr != nil {
				rep = Reply{Kind: Temp, Text: "malformed request: expected \"get <key>\""}
			} else {
				key = k[:0]
				rep = s.Handler.ServeTCPTable(ctx, k)
			}
		}
		out = AppendReply(out[:0], rep)
		if !c.Reply(out, wto) {
			return
		}
		if cap(line) > 64<<10 {
			line = nil // do not pin a large buffer on an idle connection
		}
		if cap(key) > 64<<10 {
			key = nil
		}
	}
}
