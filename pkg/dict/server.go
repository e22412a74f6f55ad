package dict

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/shitenno/shitenno/pkg/connserver"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("dict: Server closed")

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
type Server struct {
	Handler Handler
	// IdleTimeout closes a connection that sends nothing for this long.
	// Default 5 minutes. Replies to lookups already received are still
	// written.
	IdleTimeout time.Duration
	// ReadTimeout bounds reading the rest of a line once its first byte
	// arrived. Default 10 s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing replies. Default 10 s.
	WriteTimeout time.Duration
	// MaxLineSize bounds a command line, LF excluded. Default MaxLineSize.
	MaxLineSize int
	// MaxPipeline bounds the lookups in progress on one connection; reading
	// pauses while it is reached. Default 16.
	MaxPipeline int
	// Logger receives connection-level errors; nil discards them. Keys,
	// values and users are never logged.
	Logger *slog.Logger
	// ConnState, when set, is told when a connection opens (+1) or closes (-1).
	ConnState func(delta int)

	shell connserver.Shell
}

// Serve accepts connections on l until Shutdown or Close. It always
// returns a non-nil error; ErrServerClosed after a shutdown. Serve may be
// called for several listeners at once.
func (s *Server) Serve(l net.Listener) error { return s.shell.Serve(s.config(), l, s.newConn) }

// Shutdown stops accepting and stops reading from every connection (lines
// already received in full are still handled), lets the lookups in
// progress finish and their replies be written, then returns. If ctx ends
// first, the remaining connections are closed and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error { return s.shell.Shutdown(ctx, s.config()) }

// Close stops the server at once: listeners and connections are closed
// and in-flight handler contexts cancelled.
func (s *Server) Close() error { return s.shell.Close(s.config()) }

// config is what the shell sets its Core up with.
func (s *Server) config() connserver.Config {
	return connserver.Config{ErrClosed: ErrServerClosed, Logger: s.Logger, ConnState: s.ConnState}
}

func (s *Server) newConn(nc net.Conn) connserver.Conn {
	return &conn{Sequential: connserver.Sequential{NC: nc}, srv: s}
}

// conn is one client connection: a reader goroutine that parses commands
// and starts lookups, and a writer goroutine that writes replies in
// request order.
type conn struct {
	// Sequential is the reader's stop state: Stop (Shutdown, or a
	// handler panic) makes it read no more.
	connserver.Sequential
	srv *Server
}

// pending is one reply slot in request order. The reader creates it, a
// lookup goroutine (or the reader itself) fills it, the writer empties it.
type pending struct {
	out chan []byte // buffered, receives exactly one reply
}

func (c *conn) log() *slog.Logger {
	return connserver.Logger(c.srv.Logger).With("remote", c.NC.RemoteAddr().String())
}

// Serve implements connserver.Conn.
func (c *conn) Serve(base context.Context) {
	s := c.srv
	pipe := connserver.Or(s.MaxPipeline, 16)
	ctx, cancel := context.WithCancel(base)
	defer cancel()
	queue := make(chan *pending, pipe)
	slots := make(chan struct{}, pipe) // one token per lookup in progress
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop(queue, slots, cancel)
	}()
	c.readLoop(ctx, replies{queue: queue, slots: slots, writerDone: writerDone})
	close(queue)
	<-writerDone
}

// replies is the reader's side of the ordered reply queue.
type replies struct {
	queue      chan<- *pending
	slots      chan struct{} // one token per reply not yet written
	writerDone <-chan struct{}
}

// readLoop reads commands until EOF, an error or a stop: the first must
// be a hello, every later one is dispatched.
func (c *conn) readLoop(ctx context.Context, q replies) {
	s := c.srv
	idle := connserver.Or(s.IdleTimeout, 5*time.Minute)
	rto := connserver.Or(s.ReadTimeout, 10*time.Second)
	max := connserver.Or(s.MaxLineSize, MaxLineSize)
	lr := NewLineReader(c.NC, max)
	var hello *Hello
	for {
		cmd, ok := c.read(lr, idle, rto)
		if !ok {
			return
		}
		if hello == nil {
			h, err := c.hello(cmd)
			if err != nil {
				return
			}
			hello = &h
			continue
		}
		if !c.dispatch(ctx, cmd, hello.Name, lr, q) {
			return
		}
	}
}

// read waits up to idle for the next command, then up to rto for the
// rest of its line, and parses it. It reports false (having logged why,
// unless it is the normal end) when the connection is done.
func (c *conn) read(lr *LineReader, idle, rto time.Duration) (Command, bool) {
	if !lr.LineBuffered() {
		if !c.ArmRead(idle) {
			return Command{}, false
		}
		if _, err := lr.r.Peek(1); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) || c.Stopping() {
				return Command{}, false // EOF (the normal end), stop, or gone
			}
			c.log().Info("dict: closing idle connection", "idle", idle)
			return Command{}, false
		}
		if !lr.LineBuffered() {
			c.SetRead(rto) // a whole line buffered cannot stall: no timer update
		}
	}
	line, err := lr.ReadLine()
	if err != nil {
		if !errors.Is(err, net.ErrClosed) && !c.Stopping() {
			c.log().Warn("dict: closing connection on read error", "err", err)
		}
		return Command{}, false
	}
	cmd, err := ParseCommand(line)
	if err != nil {
		c.log().Warn("dict: closing connection on protocol error", "err", err,
			"command", strconv.QuoteToASCII(string(line[:min(1, len(line))])))
		return Command{}, false
	}
	return cmd, true
}

// dispatch handles one command after the hello: a lookup goes to the
// handler, the other reply-bearing commands are answered at once, the
// rest get no reply. It reports false when the connection is done.
func (c *conn) dispatch(ctx context.Context, cmd Command, dict string, lr *LineReader, q replies) bool {
	var rep []byte
	switch cmd.Op {
	case CmdLookup:
		p := &pending{out: make(chan []byte, 1)}
		if !c.enqueue(q, p) {
			return false
		}
		req := Request{Key: cmd.Args[0], User: cmd.Arg(1), Dict: dict}
		if len(q.slots) == 1 && !lr.LineBuffered() {
			// Nothing else in flight and nothing more to read: dovecot's
			// auth worker waits for each reply before the next lookup,
			// so answer here and save a goroutine per lookup. A lookup
			// pipelined later waits for this one, as it would for its
			// reply anyway.
			c.lookup(ctx, req, p)
		} else {
			go c.lookup(ctx, req, p)
		}
		return true
	case CmdIterate:
		// A read-only proxy for passdb/userdb has nothing to list;
		// an empty iteration keeps doveadm user -A from hanging.
		rep = AppendIterEnd(nil)
	case CmdCommit, CmdCommitAsync:
		rep = AppendCommitFailed(nil, cmd.Op == CmdCommitAsync, cmd.Args[0], ReadOnlyReason)
	case CmdHello:
		c.log().Warn("dict: closing connection on protocol error", "err", ErrDuplicateHello)
		return false
	default:
		// B, S, U, A, T, R, V expect no reply: any line sent here would
		// be taken as the answer to the next lookup.
		return true
	}
	return c.reply(q, rep)
}

// reply queues a reply that is ready now, behind the lookups before it.
func (c *conn) reply(q replies, rep []byte) bool {
	p := &pending{out: make(chan []byte, 1)}
	p.out <- rep
	return c.enqueue(q, p)
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

// enqueue takes a pipeline slot (waiting while MaxPipeline lookups are in
// progress) and queues p for the writer. It reports false when the writer
// has given up.
func (c *conn) enqueue(q replies, p *pending) bool {
	select {
	case q.slots <- struct{}{}:
	case <-q.writerDone:
		return false
	}
	q.queue <- p // never blocks: queue has as many places as there are slots
	return true
}

func (c *conn) lookup(ctx context.Context, req Request, p *pending) {
	defer func() {
		if v := recover(); v != nil {
			c.log().Error("dict: handler panic, closing connection", "panic", v, "stack", string(debug.Stack()))
			p.out <- AppendReply(nil, Reply{Kind: Failed, Value: "internal error"})
			c.Stop()
		}
	}()
	p.out <- AppendReply(nil, c.srv.Handler.ServeDict(ctx, req))
}

// writeLoop writes the replies in queue order, each once it is ready. It
// flushes whenever it would otherwise wait, so a ready reply is never held
// back behind a slow one. After a write error it keeps draining the queue
// (releasing slots) without writing, so the reader is never stuck.
func (c *conn) writeLoop(queue <-chan *pending, slots <-chan struct{}, cancel context.CancelFunc) {
	s := c.srv
	wto := connserver.Or(s.WriteTimeout, 10*time.Second)
	var buf []byte
	failed := false
	flush := func() {
		if len(buf) == 0 || failed {
			buf = buf[:0]
			return
		}
		_ = c.NC.SetWriteDeadline(time.Now().Add(wto))
		if _, err := c.NC.Write(buf); err != nil {
			failed = true
			if !errors.Is(err, net.ErrClosed) {
				c.log().Info("dict: closing connection on write error", "err", err)
			}
			cancel()     // abandon the lookups still in progress
			c.NC.Close() // and wake the reader
		}
		buf = buf[:0]
	}
	for {
		var p *pending
		var ok bool
		select {
		case p, ok = <-queue:
		default:
			flush()
			p, ok = <-queue
		}
		if !ok {
			break
		}
		var out []byte
		select {
		case out = <-p.out:
		default:
			flush()
			out = <-p.out
		}
		buf = append(buf, out...)
		<-slots
		if len(buf) >= 4096 {
			flush()
		}
	}
	flush()
}
