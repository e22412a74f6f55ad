package tcptable

import (
	"bufio"
	"context"
	"errors"
	"net"
	"time"

	"github.com/shitenno/shitenno/pkg/connserver"
)

// ErrServerClosed is returned by Serve after Shutdown or Close: the one
// of every protocol Server, connserver.ErrServerClosed.
var ErrServerClosed = connserver.ErrServerClosed

// Handler answers one lookup of a decoded key. It must return within a
// bounded time (the backend client's Timeout); ctx is cancelled when the
// server is closed.
type Handler interface {
	ServeTCPTable(ctx context.Context, key []byte) Reply
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, key []byte) Reply

// ServeTCPTable calls f.
func (f HandlerFunc) ServeTCPTable(ctx context.Context, key []byte) Reply { return f(ctx, key) }

// Server serves tcp_table connections, one table per Server (tcp_table
// has no map name: the listening address is the table). Postfix sends one
// request at a time on a connection it keeps for the life of the process,
// so each connection is served sequentially by its own goroutine.
//
// IdleTimeout defaults to 1 hour: dict_tcp.c does not notice a closed
// connection until its next lookup, which then logs "unexpected EOF" and
// sleeps one second before reconnecting, so closing idle connections
// early costs postfix a delay. Shutdown closes idle connections at once
// (postfix keeps them open; waiting would never end) and lets in-flight
// lookups finish and be answered.
type Server struct {
	Handler Handler
	// MaxRequestSize bounds a request line. Default MaxRequestLine.
	MaxRequestSize int
	// Server holds the timeouts, MaxConns, Logger and ConnState, and
	// gives Shutdown and Close.
	connserver.Server
}

// Serve accepts connections on l until Shutdown or Close. It always
// returns a non-nil error; ErrServerClosed after a shutdown. It may run
// for several listeners at once.
func (s *Server) Serve(l net.Listener) error { return s.ServeConns(l, s.newConn) }

// newConn serves one connection a request at a time.
func (s *Server) newConn(nc net.Conn) connserver.Conn {
	max := connserver.Or(s.MaxRequestSize, MaxRequestLine)
	var line, key []byte
	t := s.Timeouts(time.Hour)
	return connserver.NewSequential(nc, bufio.NewReaderSize(nc, 4096), t, complete, func(ctx context.Context, br *bufio.Reader, out []byte) ([]byte, bool) {
		l, err := ReadLine(br, &line, max)
		var rep Reply
		switch {
		case errors.Is(err, ErrLineTooLong):
			// A 400 makes postfix give up on this lookup at once; a bare
			// disconnect would make it retry ten times, a second apart
			// (DICT_TCP_MAXTRY in dict_tcp.c).
			rep = Reply{Kind: Temp, Text: "request too long"}
		case errors.Is(err, ErrOverrun):
			s.Log().Warn("tcptable: closing connection: request line too long", "remote", nc.RemoteAddr().String())
			return nil, false
		case err != nil:
			return nil, false
		default:
			rep = s.lookup(ctx, &key, l)
		}
		if cap(line) > 64<<10 {
			line = nil // do not pin a large buffer on an idle connection
		}
		return AppendReply(out, rep), true
	})
}

// lookup decodes a request line into *key (reused across requests) and
// asks the Handler.
func (s *Server) lookup(ctx context.Context, key *[]byte, line []byte) Reply {
	k, err := ParseRequest(*key, line)
	if err != nil {
		return Reply{Kind: Temp, Text: "malformed request: expected \"get <key>\""}
	}
	*key = k[:0]
	rep := s.Handler.ServeTCPTable(ctx, k)
	if cap(*key) > 64<<10 {
		*key = nil
	}
	return rep
}
