package policy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
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

	core connserver.Core
	once sync.Once
}

func (s *Server) init() {
	s.once.Do(func() {
		s.core.ErrClosed = ErrServerClosed
		s.core.Logger = s.Logger
		s.core.ConnState = s.ConnState
		s.core.MaxConns = s.MaxConns
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

// Shutdown stops accepting, closes idle connections at once (postfix
// keeps them open; waiting would never end), lets in-flight requests
// finish and be answered, then returns. If ctx ends first, the remaining
// connections are closed and ctx's error is returned.
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

// Serve implements connserver.Conn.
func (c *conn) Serve(ctx context.Context) {
	s := c.srv
	idle, rto, wto := s.IdleTimeout, s.ReadTimeout, s.WriteTimeout
	if idle <= 0 {
		idle = 30 * time.Minute
	}
	if rto <= 0 {
		rto = 10 * time.Second
	}
	if wto <= 0 {
		wto = 10 * time.Second
	}
	br := NewReader(c.nc)
	var out []byte
	for {
		if !c.armIdle(idle) {
			return
		}
		if _, err := br.Peek(1); err != nil {
			return // EOF, idle timeout or woken by Shutdown
		}
		if !c.setActive(true) {
			return
		}
		_ = c.nc.SetReadDeadline(time.Now().Add(rto))
		req, err := ReadRequest(br)
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
				s.logger().Warn("policy: closing connection on protocol error", "err", err, "remote", c.nc.RemoteAddr().String())
			}
			return
		}
		action := s.Handler.ServePolicy(ctx, req)
		if err := CheckAction(action); err != nil {
			// The handler's bug: no reply and a disconnect is what
			// postfix expects from a server in trouble.
			s.logger().Error("policy: handler returned an invalid action; closing connection", "err", err)
			return
		}
		out = AppendReply(out[:0], action)
		_ = c.nc.SetWriteDeadline(time.Now().Add(wto))
		if _, err := c.nc.Write(out); err != nil {
			return
		}
		if !c.setActive(false) {
			return
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

// setActive records whether a request is in progress; it reports false
// when the connection is being shut down and must stop.
func (c *conn) setActive(a bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active = a
	return !c.closing
}
