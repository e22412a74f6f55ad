package daemon

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// connLimit is one endpoint's bound on open client connections, shared
// by all of its listeners (a unix socket and a TCP port count together).
// Each endpoint has its own, so a flood on one listener never takes the
// connections another needs.
type connLimit struct {
	name string
	max  atomic.Int64 // 0: no bound; a reload may change it
	open atomic.Int64
	// refused counts a connection closed for the bound (metrics).
	refused func(listener string)
	log     *slog.Logger
	now     func() time.Time
	// lastWarn is the Unix nanosecond time of the last warning, so a
	// flood logs one line per warnEvery rather than one per connection.
	lastWarn atomic.Int64
	dropped  atomic.Int64 // refusals since the last warning
}

// warnEvery spaces the "connection limit reached" warnings.
const warnEvery = 10 * time.Second

func newConnLimit(name string, max int, refused func(string), log *slog.Logger) *connLimit {
	l := &connLimit{name: name, refused: refused, log: log, now: time.Now}
	l.max.Store(int64(max))
	return l
}

// acquire takes a slot, or reports that the bound is reached.
func (l *connLimit) acquire() bool {
	n := l.open.Add(1)
	if m := l.max.Load(); m > 0 && n > m {
		l.open.Add(-1)
		return false
	}
	return true
}

func (l *connLimit) release() { l.open.Add(-1) }

// refuse accounts for one connection closed at the bound.
func (l *connLimit) refuse() {
	if l.refused != nil {
		l.refused(l.name)
	}
	n := l.dropped.Add(1)
	now := l.now().UnixNano()
	last := l.lastWarn.Load()
	if now-last < int64(warnEvery) || !l.lastWarn.CompareAndSwap(last, now) {
		return
	}
	l.dropped.Add(-n)
	l.log.Warn("connection limit reached: new connections are closed at once", "listener", l.name,
		"max_connections", l.max.Load(), "refused", n)
}

// limitListener closes, right after accept, a connection past the
// endpoint's bound: the peer sees EOF and retries (postfix and dovecot
// reconnect on their next lookup, nginx answers that login with a
// temporary error), while the open connections keep working. Closing
// rather than leaving it in the backlog keeps a flood from turning into
// timeouts for everyone.
type limitListener struct {
	net.Listener
	lim *connLimit
}

// Accept implements net.Listener.
func (l limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.lim.acquire() {
			return &limitConn{Conn: c, lim: l.lim}, nil
		}
		// Counted before the close: whoever sees the close sees the count.
		l.lim.refuse()
		c.Close()
	}
}

// limitConn gives its slot back on the first Close.
type limitConn struct {
	net.Conn
	lim  *connLimit
	once sync.Once
}

// Close implements net.Conn.
func (c *limitConn) Close() error {
	// The slot is free before the peer sees the close, so a peer that
	// reconnects at once is not refused for a connection already gone.
	c.once.Do(c.lim.release)
	return c.Conn.Close()
}

// SyscallConn implements syscall.Conn for the connection it wraps, so
// that a server can read it raw (connserver.Sequential).
func (c *limitConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("connection has no raw descriptor")
	}
	return sc.SyscallConn()
}
