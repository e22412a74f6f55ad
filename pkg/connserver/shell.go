package connserver

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Config is what a protocol Server hands its Core: the Core's fields,
// taken once, on the Server's first Serve, Shutdown or Close.
type Config struct {
	ErrClosed error
	Logger    *slog.Logger
	ConnState func(delta int)
	MaxConns  int
}

// Shell is the part every protocol Server shares: a Core set up on first
// use, so that the Server's zero value with its exported fields filled in
// is ready to serve. A protocol Server keeps one as an unexported field
// and forwards Serve, Shutdown and Close to Serve, Shutdown and Close of
// the Shell.
type Shell struct {
	once sync.Once
	core Core
}

// setup fills the Core from cfg the first time only: the fields are read
// once, before any connection exists, as net/http reads its Server's.
func (sh *Shell) setup(cfg Config) *Core {
	sh.once.Do(func() {
		sh.core.ErrClosed = cfg.ErrClosed
		sh.core.Logger = cfg.Logger
		sh.core.ConnState = cfg.ConnState
		sh.core.MaxConns = cfg.MaxConns
	})
	return &sh.core
}

// Serve is Core.Serve after the first-use setup.
func (sh *Shell) Serve(cfg Config, l net.Listener, newConn func(net.Conn) Conn) error {
	return sh.setup(cfg).Serve(l, newConn)
}

// Shutdown is Core.Shutdown after the first-use setup.
func (sh *Shell) Shutdown(ctx context.Context, cfg Config) error {
	return sh.setup(cfg).Shutdown(ctx)
}

// Close is Core.Close after the first-use setup.
func (sh *Shell) Close(cfg Config) error {
	return sh.setup(cfg).Close()
}

// Logger returns l, or a logger that discards everything when l is nil
// (a Server's Logger field is optional).
func Logger(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

// Sequential is the stop state of a connection that handles one request
// at a time (socketmap, policy, tcp_table): Stop wakes it at once while it
// waits for a request, and lets it answer the request in progress first.
// A protocol conn embeds it and gets Stop and Close.
type Sequential struct {
	// NC is the client connection.
	NC net.Conn

	mu      sync.Mutex
	active  bool // a request is being handled
	closing bool
}

// Stop implements Conn: an idle connection is woken from its read at once
// and ends; a busy one ends after answering.
func (c *Sequential) Stop() {
	c.mu.Lock()
	c.closing = true
	if !c.active {
		_ = c.NC.SetReadDeadline(time.Now())
	}
	c.mu.Unlock()
}

// Close implements Conn.
func (c *Sequential) Close() error { return c.NC.Close() }

// armIdle sets the deadline for the next request to arrive, d from now;
// it reports false when the connection is stopping. The lock keeps Stop's
// wake-up deadline from being overwritten.
func (c *Sequential) armIdle(d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	_ = c.NC.SetReadDeadline(time.Now().Add(d))
	return true
}

// setActive records whether a request is in progress; it reports false
// when the connection is stopping and must end.
func (c *Sequential) setActive(a bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active = a
	return !c.closing
}

// Next waits up to idle for the first byte of the next request, then
// gives the rest of it rto and marks the connection busy. It reports false
// when the connection should end: EOF, idle timeout or Stop.
func (c *Sequential) Next(br *bufio.Reader, idle, rto time.Duration) bool {
	if !c.armIdle(idle) {
		return false
	}
	if _, err := br.Peek(1); err != nil {
		return false // EOF, idle timeout or woken by Stop
	}
	if !c.setActive(true) {
		return false
	}
	_ = c.NC.SetReadDeadline(time.Now().Add(rto))
	return true
}

// Reply writes a request's reply within wto and marks the connection
// idle again. It reports false when the connection should end: a write
// error, or a Stop that came while the request was in progress.
func (c *Sequential) Reply(b []byte, wto time.Duration) bool {
	_ = c.NC.SetWriteDeadline(time.Now().Add(wto))
	if _, err := c.NC.Write(b); err != nil {
		return false
	}
	return c.setActive(false)
}

// Or returns v, or def when v is zero or negative: the "0 means the
// default" rule of every Server's timeouts and limits.
func Or[T ~int | ~int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
