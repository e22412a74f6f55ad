package socketmap

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
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
	// Alive, when set, is called at every accepted connection and handled
	// request: a watchdog heartbeat from the serving path.
	Alive func()

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closed    atomic.Bool
	baseCtx   context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

type conn struct {
	nc      net.Conn
	mu      sync.Mutex
	active  bool // a request is being handled
	closing bool
}

func (s *Server) init() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.baseCtx == nil {
		s.baseCtx, s.cancel = context.WithCancel(context.Background())
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Serve accepts connections on l until Shutdown or Close. It always
// returns a non-nil error; ErrServerClosed after a shutdown.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	if s.closed.Load() {
		return ErrServerClosed
	}
	s.mu.Lock()
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.closed.Load() {
				return ErrServerClosed
			}
			if retryableAccept(err) {
				// EMFILE and friends: back off instead of spinning.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger().Warn("accept failed, retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := &conn{nc: nc}
		s.mu.Lock()
		if s.closed.Load() {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		if s.Alive != nil {
			s.Alive()
		}
		go s.serveConn(c)
	}
}

// retryableAccept reports accept errors worth retrying: running out of
// file descriptors or a client that vanished before accept.
func retryableAccept(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS)
}

func (s *Server) serveConn(c *conn) {
	defer s.wg.Done()
	if s.ConnState != nil {
		s.ConnState(1)
		defer s.ConnState(-1)
	}
	defer func() {
		c.nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
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
			rep = s.Handler.ServeSocketmap(s.baseCtx, req)
		}
		out = AppendReply(out[:0], rep)
		_ = c.nc.SetWriteDeadline(time.Now().Add(wto))
		if _, err := c.nc.Write(out); err != nil {
			return
		}
		if s.Alive != nil {
			s.Alive()
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
// under the lock so Shutdown's wake-up deadline cannot be overwritten.
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

// Shutdown stops accepting, closes idle connections at once (postfix keeps
// idle ones open; waiting for them would never end), lets in-flight
// requests finish and be answered, then returns. If ctx ends first, the
// remaining connections are closed and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.closed.Store(true)
	s.mu.Lock()
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.mu.Lock()
		c.closing = true
		if !c.active {
			// Wake the goroutine blocked in Peek; it sees closing and exits.
			_ = c.nc.SetReadDeadline(time.Now())
		}
		c.mu.Unlock()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close stops the server at once: listeners and connections are closed
// and in-flight handler contexts cancelled.
func (s *Server) Close() error {
	s.init()
	s.closed.Store(true)
	s.cancel()
	s.mu.Lock()
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	return nil
}
