package socketmap

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
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

	core connserver.Core
	once sync.Once
}

func (s *Server) init() {
	s.once.Do(func() {
		s.core.ErrClosed = ErrServerClosed
		s.core.Logger = s.Logger
		s.core.ConnState = s.ConnState
	})
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Serve accepts connections on l until Shutdown or Close. It always
// returns a non-nil error; ErrServerClosed after a shutdown. It may run
// for several listeners at once.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	return s.core.Serve(l, func(nc net.Conn) connserver.Conn { return &conn{srv: s, nc: nc} })
}

// Shutdown stops accepting, closes idle connections at once (postfix keeps
// idle ones open; waiting for them would never end), lets in-flight
// requests finish and be answered, then returns. If ctx ends first, the
// remaining connections are closed and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	return s.core.Shutdown(ctx)
}

// Close stops the server at once: listeners and connections are closed
// and in-flight handler contexts cancelled.
func (s *Server) Close() error {
	s.init()
	return s.core.Close()
}

type conn struct {
	srv     *Server
	nc      net.Conn
	mu      sync.Mutex
	active  bool // a request is being handled
	closing bool
}

// Stop implements connserver.Conn: an idle connection is woken from its
// read at once and ends; a busy one ends after answering.
func (c *conn) Stop() {
	c.mu.Lock()
	c.closing = true
	if !c.active {
		_ = c.nc.SetReadDeadline(time.Now())
	}
	c.mu.Unlock()
}

// Close implements connserver.Conn.
func (c *conn) Close() error { return c.nc.Close() }

// Serve implements connserver.Conn: requests are read and answered one at
// a time, as postfix sends them.
func (c *conn) Serve(ctx context.Context) {
	s := c.srv
	idle, rto, wto, max := s.IdleTimeout, s.ReadTimeout, s.WriteTimeout, s.MaxRequestSize
	if idle <= 0 {
		idle = 5 * time.Minute
	}
	if rto <= 0 {
		rto = 10 * time.Second
	}
	if wto <= 0 {
		wto = 10 * time.Second
	}
	if max <= 0 {
		max = MaxPayload
	}
	br := bufio.NewReaderSize(c.nc, 4096)
	var buf, out []byte
	for {
		if !c.armIdle(idle) {
			return
		}
		if _, err := br.Peek(1); err != nil {
			return // EOF, idle timeout or closed by Shutdown
		}
		if !c.setActive(true) {
			return
		}
		_ = c.nc.SetReadDeadline(time.Now().Add(rto))
		p, err := ReadNetstring(br, buf, max)
		if err != nil {
			// A framing error cannot be resynchronised: say why, once, and
			// close. Postfix would only see a disconnect anyway.
			s.logger().Warn("socketmap: closing connection on protocol error", "err", err, "remote", c.nc.RemoteAddr().String())
			return
		}
		buf = p[:0]
		var rep Reply
		if req, err := ParseRequest(p); err != nil {
			rep = Reply{Kind: Perm, Text: "malformed request: expected \"name key\""}
		} else {
			rep = s.Handler.ServeSocketmap(ctx, req)
		}
		out = AppendReply(out[:0], rep)
		_ = c.nc.SetWriteDeadline(time.Now().Add(wto))
		if _, err := c.nc.Write(out); err != nil {
			return
		}
		if !c.setActive(false) {
			return
		}
		if cap(out) > 64<<10 {
			out = nil // do not pin a huge reply buffer on an idle connection
		}
		if cap(buf) > 64<<10 {
			buf = nil
		}
	}
}

// armIdle sets the idle deadline unless a shutdown already began; done
// under the lock so Stop's wake-up deadline cannot be overwritten.
func (c *conn) armIdle(d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	return true
}

// setActive records whether a request is in progress; it reports false when
// the connection is being shut down and must stop.
func (c *conn) setActive(a bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active = a
	return !c.closing
}
