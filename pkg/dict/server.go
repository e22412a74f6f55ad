package dict

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/shitenno/shitenno/pkg/connserver"
)

// ErrServerClosed is returned by Serve after Shutdown or Close: the one
// of every protocol Server, connserver.ErrServerClosed.
var ErrServerClosed = connserver.ErrServerClosed

// ReadOnlyReason is the error text sent to a client that tries to commit
// a transaction: this dict never stores anything.
const ReadOnlyReason = "shitenno: read-only dict, writes are not supported"

// Request is one lookup.
type Request struct {
	// Key is the unescaped key, e.g. "shared/passdb/alice@example.org".
	Key string
	// User is the unescaped username sent with the lookup (dovecot 2.3.17
	// and later; empty before, and for lookups without a user).
	User string
	// Dict is the dict name from the connection's hello.
	Dict string
}

// Handler answers one lookup. It must return within a bounded time (the
// backend client's Timeout, below dovecot's 30 s request timeout); ctx is
// cancelled when the server is closed or the client is gone. It is called
// concurrently for lookups pipelined on one connection.
type Handler interface {
	ServeDict(ctx context.Context, req Request) Reply
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req Request) Reply

// ServeDict calls f.
func (f HandlerFunc) ServeDict(ctx context.Context, req Request) Reply { return f(ctx, req) }

// Server serves dict proxy connections. Its zero value is not usable: set
// Handler. Dovecot's auth workers connect, send a hello and one or more
// lookups, read the replies and disconnect. Lookups pipelined on one
// connection are handled concurrently (at most MaxPipeline at a time) and
// answered strictly in request order, because the client matches replies
// to its oldest pending command.
//
// IdleTimeout defaults to 5 minutes; when it closes a connection, replies
// to lookups already received are still written. ReadTimeout bounds the
// rest of a line once its first byte arrived, WriteTimeout the writing of
// replies. Keys, values and users are never logged. Shutdown stops
// reading from every connection (lines already received in full are
// still handled) and lets the lookups in progress finish and their
// replies be written.
type Server struct {
	Handler Handler
	// MaxLineSize bounds a command line, LF excluded. Default MaxLineSize.
	MaxLineSize int
	// MaxPipeline bounds the lookups in progress on one connection; reading
	// pauses while it is reached. Default 16.
	MaxPipeline int
	// Server holds the timeouts, MaxConns, Logger and ConnState, and
	// gives Shutdown and Close.
	connserver.Server
}

// Serve accepts connections on l until Shutdown or Close. It always
// returns a non-nil error; ErrServerClosed after a shutdown. Serve may be
// called for several listeners at once.
func (s *Server) Serve(l net.Listener) error { return s.ServeConns(l, s.newConn) }

func (s *Server) newConn(nc net.Conn) connserver.Conn {
	return &conn{Sequential: connserver.Sequential{NC: nc}, srv: s}
}

// conn is one client connection: a reader that parses commands and
// starts lookups, and the queue that writes their replies in request
// order.
type conn struct {
	// Sequential is the reader's stop state: Stop (Shutdown, or a
	// handler panic) makes it read no more.
	connserver.Sequential
	srv *Server

	q  *replyQueue
	wg sync.WaitGroup // lookups running in their own goroutine
}

func (c *conn) log() *slog.Logger {
	return c.srv.Log().With("remote", c.NC.RemoteAddr().String())
}

// Serve implements connserver.Conn.
func (c *conn) Serve(base context.Context) {
	s := c.srv
	ctx, cancel := context.WithCancel(base)
	defer cancel()
	t := s.Timeouts(5 * time.Minute)
	c.q = newReplyQueue(c.NC, connserver.Or(s.MaxPipeline, 16), t.Write, func(err error) {
		if !errors.Is(err, net.ErrClosed) {
			c.log().Info("dict: closing connection on write error", "err", err)
		}
		cancel() // abandon the lookups still in progress
		c.Stop() // read no more
		// Closed from elsewhere: the writer may be the reader, answering
		// inside ReadRaw, and Close waits for that read to end.
		go c.NC.Close()
	})
	c.readLoop(ctx, t)
	// Each reply is written by whoever completed it or a later one, so
	// once the lookups are done, everything is written.
	c.wg.Wait()
}

// readLoop reads commands until EOF, an error or a stop: the first must
// be a hello, every later one is dispatched. Where the connection has a
// raw descriptor, lines are read by connserver's ReadRaw, which saves a
// read(2) per lookup; a line it cannot finish without waiting is read
// the classic way (read).
func (c *conn) readLoop(ctx context.Context, t connserver.Timeouts) {
	rc := connserver.RawConnOf(c.NC)
	var r io.Reader = c.NC
	var src *connserver.RawSource
	if rc != nil {
		src = connserver.NewRawSource(c.NC)
		r = src
	}
	lr := NewLineReader(r, connserver.Or(c.srv.MaxLineSize, MaxLineSize))
	var hello *Hello
	for {
		if rc != nil && !c.ReadRaw(rc, src, lr.r, t.Idle, lineComplete, func() bool {
			line, err := lr.ReadLine()
			if err != nil {
				c.readError(err)
				return false
			}
			return c.command(ctx, line, lr, &hello)
		}) {
			return
		}
		line, ok := c.read(lr, t.Idle, t.Read)
		if !ok || !c.command(ctx, line, lr, &hello) {
			return
		}
	}
}

// lineComplete reports whether the bytes buffered hold a whole line.
func lineComplete(b []byte) bool { return bytes.IndexByte(b, '\n') >= 0 }

// command handles one line: the hello first, then lookups and the other
// commands. It reports false when the connection is done.
func (c *conn) command(ctx context.Context, line []byte, lr *LineReader, hello **Hello) bool {
	if *hello != nil && len(line) > 0 && line[0] == CmdLookup {
		if req, ok := parseLookup(line); ok {
			req.Dict = (*hello).Name
			c.lookup(ctx, req, lr)
			return true
		}
	}
	cmd, err := ParseCommand(line)
	if err != nil {
		c.log().Warn("dict: closing connection on protocol error", "err", err,
			"command", strconv.QuoteToASCII(string(line[:min(1, len(line))])))
		return false
	}
	if *hello == nil {
		h, err := c.hello(cmd)
		if err != nil {
			return false
		}
		*hello = &h
		return true
	}
	return c.dispatch(cmd)
}

// read waits up to idle for the next line, then up to rto for the rest
// of it. It reports false (having logged why, unless it is the normal
// end) when the connection is done.
func (c *conn) read(lr *LineReader, idle, rto time.Duration) ([]byte, bool) {
	if !lr.LineBuffered() {
		if !c.ArmRead(idle) {
			return nil, false
		}
		if _, err := lr.r.Peek(1); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) || c.Stopping() {
				return nil, false // EOF (the normal end), stop, or gone
			}
			c.log().Info("dict: closing idle connection", "idle", idle)
			return nil, false
		}
		if !lr.LineBuffered() {
			c.SetRead(rto) // a whole line buffered cannot stall: no timer update
		}
	}
	line, err := lr.ReadLine()
	if err != nil {
		c.readError(err)
		return nil, false
	}
	return line, true
}

// readError logs why reading a line failed, unless the connection was
// closed or stopped.
func (c *conn) readError(err error) {
	if !errors.Is(err, net.ErrClosed) && !c.Stopping() {
		c.log().Warn("dict: closing connection on read error", "err", err)
	}
}

// dispatch answers a command other than a lookup after the hello: the
// reply-bearing ones at once, the rest not at all. It reports false when
// the connection is done.
func (c *conn) dispatch(cmd Command) bool {
	switch cmd.Op {
	case CmdLookup:
		// Only a lookup parseLookup refused comes here, and ParseCommand
		// refuses the same lines.
		return false
	case CmdIterate:
		// A read-only proxy for passdb/userdb has nothing to list;
		// an empty iteration keeps doveadm user -A from hanging.
		i, out, _ := c.q.take()
		c.q.done(i, AppendIterEnd(out))
	case CmdCommit, CmdCommitAsync:
		i, out, _ := c.q.take()
		c.q.done(i, AppendCommitFailed(out, cmd.Op == CmdCommitAsync, cmd.Args[0], ReadOnlyReason))
	case CmdHello:
		c.log().Warn("dict: closing connection on protocol error", "err", ErrDuplicateHello)
		return false
	default:
		// B, S, U, A, T, R, V expect no reply: any line sent here would
		// be taken as the answer to the next lookup.
	}
	return true
}

// lookup has req answered in its place in the reply order.
func (c *conn) lookup(ctx context.Context, req Request, lr *LineReader) {
	i, out, alone := c.q.take()
	if alone && !lr.LineBuffered() {
		// Nothing else in flight and nothing more to read: dovecot's
		// auth worker waits for each reply before the next lookup, so
		// answer here and save a goroutine per lookup. A lookup
		// pipelined later waits for this one, as it would for its reply
		// anyway.
		c.answer(ctx, req, i, out)
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.answer(ctx, req, i, out)
	}()
}

// answer asks the Handler and queues its reply in place i.
func (c *conn) answer(ctx context.Context, req Request, i int, out []byte) {
	defer func() {
		if v := recover(); v != nil {
			c.log().Error("dict: handler panic, closing connection", "panic", v, "stack", string(debug.Stack()))
			c.q.done(i, AppendReply(out, Reply{Kind: Failed, Value: "internal error"}))
			c.Stop()
		}
	}()
	c.q.done(i, AppendReply(out, c.srv.Handler.ServeDict(ctx, req)))
}

// hello checks the first command of a connection; errors are logged.
func (c *conn) hello(cmd Command) (Hello, error) {
	if cmd.Op != CmdHello {
		c.log().Warn("dict: closing connection on protocol error", "err", ErrMissingHello,
			"command", strconv.QuoteToASCII(string(cmd.Op)))
		return Hello{}, ErrMissingHello
	}
	h, err := ParseHello(cmd)
	if err != nil {
		if errors.Is(err, ErrUnsupported) {
			c.log().Warn("dict: closing connection: unsupported dovecot dict protocol version (supported majors: 2, 3, 4)",
				"major", h.Major, "minor", h.Minor)
		} else {
			c.log().Warn("dict: closing connection on protocol error", "err", err)
		}
		return h, err
	}
	c.log().Debug("dict: hello", "major", h.Major, "minor", h.Minor, "dict", h.Name)
	return h, nil
}
