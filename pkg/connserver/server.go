package connserver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// ErrServerClosed is returned by Serve after Shutdown or Close, for every
// protocol Server: each protocol package names it its own ErrServerClosed.
var ErrServerClosed = errors.New("connserver: Server closed")

// Server is the part every protocol Server shares: the settings of its
// connections and a Core set up on first use, so that the Server's zero
// value with its exported fields filled in is ready to serve. A protocol
// Server embeds it, gets Shutdown and Close, and has its own Serve call
// ServeConns with what one of its connections does. The fields are read
// once, on the first ServeConns, Shutdown or Close, as net/http reads
// its Server's.
type Server struct {
	// IdleTimeout closes a connection that sends nothing for this long.
	// 0 means the protocol's default; see the protocol's Server doc.
	IdleTimeout time.Duration
	// ReadTimeout bounds reading the rest of a request once its first
	// byte has arrived. 0 means 10 s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one reply. 0 means 10 s.
	WriteTimeout time.Duration
	// MaxConns bounds the open connections; past it a new connection is
	// closed at once (see Core). 0 means no bound.
	MaxConns int
	// Logger receives connection-level errors; nil discards them.
	Logger *slog.Logger
	// ConnState, when set, is told when a connection opens (+1) or closes (-1).
	ConnState func(delta int)

	once sync.Once
	core Core
}

// setup fills the Core from the settings the first time only: they are
// read before any connection exists.
func (s *Server) setup() *Core {
	s.once.Do(func() {
		s.core.Logger = s.Logger
		s.core.ConnState = s.ConnState
		s.core.MaxConns = s.MaxConns
	})
	return &s.core
}

// ServeConns accepts connections on l until Shutdown or Close, serving
// each as newConn makes it (see Core.Serve): what a protocol Server's
// Serve calls. It always returns a non-nil error; ErrServerClosed after
// a shutdown. It may run for several listeners at once.
func (s *Server) ServeConns(l net.Listener, newConn func(net.Conn) Conn) error {
	return s.setup().Serve(l, newConn)
}

// Shutdown stops accepting, asks every connection to stop (an idle one
// is closed at once: postfix and dovecot keep theirs open, so waiting
// for them would never end), lets the requests in progress finish and be
// answered, then returns. If ctx ends first, the remaining connections
// are closed and ctx's error is returned. The protocol's Server doc says
// what "in progress" means for it.
func (s *Server) Shutdown(ctx context.Context) error { return s.setup().Shutdown(ctx) }

// Close stops the server at once: listeners and connections are closed
// and in-flight handler contexts cancelled.
func (s *Server) Close() error { return s.setup().Close() }

// Timeouts returns the connection timeouts the settings ask for, idle
// being the protocol's default IdleTimeout (see Timeouts.Or).
func (s *Server) Timeouts(idle time.Duration) Timeouts {
	return Timeouts{Idle: s.IdleTimeout, Read: s.ReadTimeout, Write: s.WriteTimeout}.Or(idle)
}

// Log returns Logger, or a logger that discards everything when it is nil.
func (s *Server) Log() *slog.Logger { return Logger(s.Logger) }

// Logger returns l, or a logger that discards everything when l is nil
// (a Server's Logger field is optional).
func Logger(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

// Or returns v, or def when v is zero or negative: the "0 means the
// default" rule of every Server's timeouts and limits.
func Or[T ~int | ~int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
