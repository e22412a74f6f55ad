// Package connserver is the connection lifecycle shared by shitenno's
// stream protocol servers (socketmap, policy, tcptable, sasl, dict):
// listeners, the accept loop with back-off, the set of live connections,
// graceful Shutdown and Close, with net/http's semantics. Protocol
// packages supply what one connection does and how it is asked to stop;
// Server is the part of a protocol Server they share (settings, Serve's
// loop, Shutdown, Close), Gate the stop state of a connection's reader,
// and Sequential the whole connection of a protocol answered one request
// at a time, around the protocol's Exchange.
package connserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Conn is a live connection as the lifecycle sees it.
type Conn interface {
	// Serve handles the connection until it ends; ctx is cancelled by Close.
	Serve(ctx context.Context)
	// Stop asks the connection to end gracefully: read no more, finish
	// and answer what is in progress. It must not block.
	Stop()
	// Close ends it at once.
	Close() error
}

// Core runs the lifecycle. Set the fields before the first Serve.
type Core struct {
	// Logger receives accept errors; nil discards them.
	Logger *slog.Logger
	// ConnState, when set, is told when a connection opens (+1) or closes (-1).
	ConnState func(delta int)
	// MaxConns bounds the open connections of this Core; past it a new
	// connection is closed at once (postfix, dovecot and nginx retry) and
	// the ones already open keep working. 0 means no bound.
	MaxConns int
	// Refused, when set, is called for each connection closed because of
	// MaxConns (metrics, a rate-limited warning).
	Refused func()

	once      sync.Once
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[Conn]struct{}
	closed    atomic.Bool
	baseCtx   context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

func (s *Core) init() {
	s.once.Do(func() {
		s.baseCtx, s.cancel = context.WithCancel(context.Background())
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[Conn]struct{}{}
	})
}

// Serve accepts connections on l until Shutdown or Close, wrapping each
// with newConn and serving it in its own goroutine. It always returns a
// non-nil error; ErrServerClosed after a shutdown. It may run for several
// listeners at once.
func (s *Core) Serve(l net.Listener, newConn func(net.Conn) Conn) error {
	s.init()
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
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
				if s.Logger != nil {
					s.Logger.Warn("accept failed, retrying", "err", err, "delay", delay)
				}
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.mu.Lock()
		if s.MaxConns > 0 && len(s.conns) >= s.MaxConns {
			s.mu.Unlock()
			// Counted before the close: whoever sees the close sees the count.
			if s.Refused != nil {
				s.Refused()
			}
			nc.Close()
			continue
		}
		s.mu.Unlock()
		c := newConn(nc)
		s.mu.Lock()
		if s.closed.Load() {
			s.mu.Unlock()
			c.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

func (s *Core) serve(c Conn) {
	defer s.wg.Done()
	if s.ConnState != nil {
		s.ConnState(1)
		defer s.ConnState(-1)
	}
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	// A bug triggered by one client's bytes ends that connection, not the
	// process: the other connections and listeners keep serving.
	defer func() {
		if v := recover(); v != nil {
			s.logger().Error("connection handler panicked; connection closed", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	c.Serve(s.baseCtx)
}

func (s *Core) logger() *slog.Logger { return Logger(s.Logger) }

// retryableAccept reports accept errors worth retrying: running out of
// file descriptors or a client that vanished before accept.
func retryableAccept(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS)
}

// Shutdown stops accepting, asks every connection to stop, waits until
// they have ended, then returns. If ctx ends first, the remaining
// connections are closed and ctx's error is returned.
func (s *Core) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.closed.Store(true)
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Stop()
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

// Close stops at once: listeners and connections are closed and the
// connections' context cancelled.
func (s *Core) Close() error {
	s.init()
	s.mu.Lock()
	s.closed.Store(true)
	s.cancel()
	for l := range s.listeners {
		l.Close()
	}
	conns := make([]Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	// Outside the lock: closing a connection whose reader is handling a
	// request inside RawConn.Read (Sequential.ReadRaw, for the dict server too) waits until the
	// handler, its context cancelled above, returns.
	for _, c := range conns {
		c.Close()
	}
	return nil
}
