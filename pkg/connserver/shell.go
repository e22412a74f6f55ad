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

// Sequential is the stop state of a connection read by one goroutine,
// one request after another. Stop wakes it at once while it waits for a
// request, and lets it answer the request in progress first (Next marks
// it busy, Reply idle again). A protocol conn embeds it and gets Stop and
// Close; NewSequential makes the whole Conn of a strict request-reply
// protocol (socketmap, policy, tcp_table). The pipelined dict reader
// never calls Next, so for it Stop always wakes the reader.
type Sequential struct {
	// NC is the client connection.
	NC net.Conn

	gate Gate

	br *bufio.Reader
	t  Timeouts
	x  Exchange
}

// Timeouts are the deadlines of a sequential connection.
type Timeouts struct {
	Idle  time.Duration // for the next request to begin; <= 0: none
	Read  time.Duration // for the rest of a request once it began
	Write time.Duration // for one reply
}

// Or fills in the defaults of every Server: idle for Idle, 10 s to read
// or to write, where the Server's field is zero or negative.
func (t Timeouts) Or(idle time.Duration) Timeouts {
	return Timeouts{Idle: Or(t.Idle, idle), Read: Or(t.Read, 10*time.Second), Write: Or(t.Write, 10*time.Second)}
}

// An Exchange reads one request from br, has it handled and returns its
// reply appended to out. It reports false to end the connection without
// a reply (EOF, or a stream that cannot be trusted any more, having
// logged why).
type Exchange func(ctx context.Context, br *bufio.Reader, out []byte) ([]byte, bool)

// NewSequential returns the Conn of a protocol that answers one request
// at a time: it waits for each request under t, lets x read and answer
// it, and writes the reply.
func NewSequential(nc net.Conn, br *bufio.Reader, t Timeouts, x Exchange) *Sequential {
	return &Sequential{NC: nc, br: br, t: t, x: x}
}

// Serve implements Conn for a Sequential made by NewSequential.
func (c *Sequential) Serve(ctx context.Context) {
	var out []byte
	for c.Next(c.br, c.t.Idle, c.t.Read) {
		var ok bool
		if out, ok = c.x(ctx, c.br, out[:0]); !ok || !c.Reply(out, c.t.Write) {
			return
		}
		if cap(out) > 64<<10 {
			out = nil // do not pin a huge reply buffer on an idle connection
		}
	}
}

// Stop implements Conn: an idle connection is woken from its read at once
// and ends; a busy one ends after answering.
func (c *Sequential) Stop() { c.gate.Stop(c.NC) }

// Close implements Conn.
func (c *Sequential) Close() error { return c.NC.Close() }

// Stopping reports whether Stop was called.
func (c *Sequential) Stopping() bool { return c.gate.Stopping() }

// ArmRead is Gate.ArmRead on NC.
func (c *Sequential) ArmRead(d time.Duration) bool { return c.gate.ArmRead(c.NC, d) }

// Gate is the stop state of a connection's reader. Its zero value is
// open. A connection keeps one and hands it its net.Conn.
type Gate struct {
	mu       sync.Mutex
	busy     bool // a request is being handled: Stop lets it finish
	stopping bool
}

// Stop marks the connection stopping and wakes its reader from a read in
// progress, unless a request is being handled (the reader then sees the
// stop when it is done).
func (g *Gate) Stop(nc net.Conn) {
	g.mu.Lock()
	g.stopping = true
	if !g.busy {
		_ = nc.SetReadDeadline(time.Now())
	}
	g.mu.Unlock()
}

// Stopping reports whether Stop was called.
func (g *Gate) Stopping() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stopping
}

// ArmRead sets nc's read deadline d from now (none when d <= 0); it
// reports false, arming nothing, when the connection is stopping. The
// lock keeps Stop's wake-up deadline from being overwritten.
func (g *Gate) ArmRead(nc net.Conn, d time.Duration) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopping {
		return false
	}
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	_ = nc.SetReadDeadline(t)
	return true
}

// setBusy records whether a request is in progress; it reports false
// when the connection is stopping and must end.
func (g *Gate) setBusy(b bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.busy = b
	return !g.stopping
}

// Next waits up to idle for the first byte of the next request, then
// gives the rest of it rto and marks the connection busy. It reports false
// when the connection should end: EOF, idle timeout or Stop.
func (c *Sequential) Next(br *bufio.Reader, idle, rto time.Duration) bool {
	if !c.ArmRead(idle) {
		return false
	}
	if _, err := br.Peek(1); err != nil {
		return false // EOF, idle timeout or woken by Stop
	}
	if !c.gate.setBusy(true) {
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
	return c.gate.setBusy(false)
}

// Or returns v, or def when v is zero or negative: the "0 means the
// default" rule of every Server's timeouts and limits.
func Or[T ~int | ~int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
