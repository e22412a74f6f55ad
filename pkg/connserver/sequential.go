package connserver

import (
	"bufio"
	"context"
	"net"
	"sync"
	"syscall"
	"time"
)

// Sequential is the stop state of a connection read by one goroutine,
// one request after another. Stop wakes it at once while it waits for a
// request, and lets it answer the request in progress first (next marks
// it busy, reply idle again). A protocol conn embeds it and gets Stop and
// Close; NewSequential makes the whole Conn of a strict request-reply
// protocol (socketmap, policy, tcp_table). The pipelined dict reader
// is never marked busy, so for it Stop always wakes the reader.
type Sequential struct {
	// NC is the client connection.
	NC net.Conn

	gate Gate
	wdl  Deadline // the write deadline set on NC

	br       *bufio.Reader
	t        Timeouts
	complete func(buffered []byte) bool
	x        Exchange
	src      RawSource // what br reads from once Serve began
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
// it, and writes the reply. complete, when not nil, reports whether the
// bytes buffered hold a whole request; such a request is read without
// arming the read timeout (a deadline is a timer update per request, and
// a buffered request cannot stall).
func NewSequential(nc net.Conn, br *bufio.Reader, t Timeouts, complete func(buffered []byte) bool, x Exchange) *Sequential {
	return &Sequential{NC: nc, br: br, t: t, complete: complete, x: x}
}

// Serve implements Conn for a Sequential made by NewSequential. Where the
// connection has a raw descriptor and the protocol a complete function,
// requests are read by ReadRaw, and a request ReadRaw cannot finish
// without waiting is read the classic way (next), one at a time.
func (c *Sequential) Serve(ctx context.Context) {
	var out []byte
	var rc syscall.RawConn
	if c.complete != nil {
		rc = RawConnOf(c.NC)
	}
	if rc != nil {
		// Nothing was read yet: br loses no buffered byte.
		c.src = RawSource{nc: c.NC}
		c.br.Reset(&c.src)
	}
	for {
		if rc != nil {
			var more bool
			if out, more = c.serveRaw(ctx, rc, out); !more {
				return
			}
		}
		if !c.next(c.br, c.t.Idle, c.t.Read, c.complete) {
			return
		}
		var ok bool
		if out, ok = c.x(ctx, c.br, out[:0]); !ok || !c.reply(out, c.t.Write) {
			return
		}
		if cap(out) > 64<<10 {
			out = nil // do not pin a huge reply buffer on an idle connection
		}
	}
}

// serveRaw answers requests through ReadRaw; see Serve.
func (c *Sequential) serveRaw(ctx context.Context, rc syscall.RawConn, out []byte) ([]byte, bool) {
	more := c.ReadRaw(rc, &c.src, c.br, c.t.Idle, c.complete, func() bool {
		if !c.gate.setBusy(true) {
			return false
		}
		var ok bool
		if out, ok = c.x(ctx, c.br, out[:0]); !ok || !c.reply(out, c.t.Write) {
			return false
		}
		if cap(out) > 64<<10 {
			out = nil
		}
		return true
	})
	return out, more
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

// SetRead is Gate.SetRead on NC.
func (c *Sequential) SetRead(d time.Duration) { c.gate.SetRead(c.NC, d) }

// next waits up to idle for the first byte of the next request, then
// gives the rest of it rto (none when complete says it is all buffered)
// and marks the connection busy. It reports false when the connection
// should end: EOF, idle timeout or Stop.
func (c *Sequential) next(br *bufio.Reader, idle, rto time.Duration, complete func([]byte) bool) bool {
	if !c.ArmRead(idle) {
		return false
	}
	if _, err := br.Peek(1); err != nil {
		return false // EOF, idle timeout or woken by Stop
	}
	if !c.gate.setBusy(true) {
		return false
	}
	if complete != nil {
		if b, _ := br.Peek(br.Buffered()); complete(b) {
			return true
		}
	}
	c.SetRead(rto)
	return true
}

// reply writes a request's reply within wto and marks the connection
// idle again. It reports false when the connection should end: a write
// error, or a Stop that came while the request was in progress.
func (c *Sequential) reply(b []byte, wto time.Duration) bool {
	c.wdl.Write(c.NC, wto)
	if _, err := c.NC.Write(b); err != nil {
		return false
	}
	return c.gate.setBusy(false)
}

// Gate is the stop state of a connection's reader and the read deadline
// it set. Its zero value is open. A connection keeps one and hands it its
// net.Conn.
type Gate struct {
	mu       sync.Mutex
	busy     bool // a request is being handled: Stop lets it finish
	stopping bool
	rdl      Deadline
}

// Stop marks the connection stopping and wakes its reader from a read in
// progress, unless a request is being handled (the reader then sees the
// stop when it is done).
func (g *Gate) Stop(nc net.Conn) {
	g.mu.Lock()
	g.stopping = true
	if !g.busy {
		g.setRead(nc, time.Now())
	}
	g.mu.Unlock()
}

// Stopping reports whether Stop was called.
func (g *Gate) Stopping() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stopping
}

// ArmRead sets nc's read deadline d from now (none when d <= 0), as
// Deadline.Renew does; it reports false, arming nothing, when the
// connection is stopping. The lock keeps Stop's wake-up deadline from
// being overwritten.
func (g *Gate) ArmRead(nc net.Conn, d time.Duration) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopping {
		return false
	}
	g.rdl.Read(nc, d)
	return true
}

// SetRead sets nc's read deadline d from now, stopping or not: the
// deadline for the rest of a request whose first byte has arrived. Only
// the reader calls it, and only while Stop leaves the deadline alone
// (busy) or where a stop only needs to be seen at the next ArmRead.
func (g *Gate) SetRead(nc net.Conn, d time.Duration) {
	g.mu.Lock()
	g.setRead(nc, time.Now().Add(d))
	g.mu.Unlock()
}

// setRead sets and records nc's read deadline; g.mu is held.
func (g *Gate) setRead(nc net.Conn, t time.Time) {
	g.rdl.at = t
	_ = nc.SetReadDeadline(t)
}

// setBusy records whether a request is in progress; it reports false
// when the connection is stopping and must end.
func (g *Gate) setBusy(b bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.busy = b
	return !g.stopping
}
