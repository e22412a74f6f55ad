package connserver

import (
	"context"
	"log/slog"
	"net"
	"sync"
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

// Or returns v, or def when v is zero or negative: the "0 means the
// default" rule of every Server's timeouts and limits.
func Or[T ~int | ~int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
