package sasl

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shitenno/shitenno/pkg/connserver"
)

// ErrServerClosed is returned by Serve after Shutdown or Close: the one
// of every protocol Server, connserver.ErrServerClosed.
var ErrServerClosed = connserver.ErrServerClosed

// Credentials are what a PLAIN or LOGIN exchange yields. Password is
// zeroed once the Handler has returned: a Handler must not keep it.
type Credentials struct {
	// Authzid is PLAIN's authorization identity, "" when the client sent
	// none (LOGIN never has one).
	Authzid  string
	User     string
	Password []byte
}

// Request is one login attempt.
type Request struct {
	// Mechanism is the canonical name from Server.Mechanisms.
	Mechanism string
	Credentials
	// Service is the AUTH line's service= ("smtp" from smtpd).
	Service string
	// LocalIP and ClientIP are lip= and rip=, "" when not sent.
	LocalIP, ClientIP string
	// Secured is set when the SMTP session uses TLS.
	Secured bool
}

// Verdict is a Handler's answer.
type Verdict int

// The three answers. TempFail makes the server close the connection
// without a reply: postfix then tells the SMTP client 454 4.7.0 and
// reconnects for its next login (PROTOCOLS.md §8.5).
const (
	TempFail Verdict = iota
	Accept
	Reject
)

// Result is a Handler's answer to one Request.
type Result struct {
	Verdict Verdict
	// User is the name sent as user= with Accept (postfix's
	// sasl_username); "" means Request.User. It must be Printable.
	User string
	// Reason is the FAIL text with Reject; "" means ReasonAuthFailed.
	Reason string
}

// Handler checks one login. It must return within a bounded time, below
// postfix's 10 s AUTH_TIMEOUT; ctx is cancelled when the server is closed.
// It is called concurrently for requests on different connections (and
// for several requests of one connection, which postfix never sends).
type Handler interface {
	Authenticate(ctx context.Context, req *Request) Result
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *Request) Result

// Authenticate calls f.
func (f HandlerFunc) Authenticate(ctx context.Context, req *Request) Result { return f(ctx, req) }

// Defaults of the Server's bounds.
const (
	// DefaultMaxInFlight bounds the AUTH requests one connection may have
	// open, waiting for a CONT or for the Handler (issue #17: 32).
	DefaultMaxInFlight = 32
	// DefaultContTimeout is how long an exchange waits for its next CONT:
	// smtpd waits up to smtpd_timeout (300 s) for the SMTP client's answer
	// to a 334 challenge, so an exchange is forgotten a little after that.
	DefaultContTimeout = 310 * time.Second
)

// Server serves dovecot auth client connections. Its zero value is not
// usable: set Handler. Every smtpd process keeps one connection for its
// whole life and sends one request at a time; connections are handled
// independently, so one slow backend answer delays only its own smtpd.
//
// IdleTimeout 0 means never: postfix keeps its connection for the smtpd
// process's life with no idle limit of its own, and a connection closed
// under an idle smtpd costs one 454 on inet: sockets with postfix 3.7
// (PROTOCOLS.md §8.5). MaxConns bounds what idle clients can hold.
// ReadTimeout bounds the rest of a line once its first byte has arrived.
// Shutdown stops accepting and reading and lets the logins being checked
// finish and be answered; exchanges waiting for a CONT are dropped
// (postfix reconnects).
type Server struct {
	Handler Handler
	// Mechanisms are offered in this order: MechPLAIN and/or MechLOGIN;
	// nil means both.
	Mechanisms []string
	// ContTimeout bounds the wait for an exchange's next CONT; default
	// DefaultContTimeout.
	ContTimeout time.Duration
	// MaxInFlight bounds one connection's open requests; default
	// DefaultMaxInFlight. At the bound, an AUTH makes room by forgetting
	// the exchange that has waited longest for a CONT; it gets FAIL when
	// every open request is a Handler call still running.
	MaxInFlight int
	// Server holds the timeouts, MaxConns, Logger and ConnState, and
	// gives Shutdown and Close.
	connserver.Server

	cuid atomic.Int64
}

// pid is the SPID of the handshake: the process's, which never changes.
var pid = os.Getpid()

func (s *Server) mechanisms() []string {
	if len(s.Mechanisms) == 0 {
		return []string{MechPLAIN, MechLOGIN}
	}
	return s.Mechanisms
}

// Serve accepts connections on l until Shutdown or Close. It always
// returns a non-nil error; ErrServerClosed after a shutdown. It may run
// for several listeners at once.
func (s *Server) Serve(l net.Listener) error { return s.ServeConns(l, s.newConn) }

func (s *Server) newConn(nc net.Conn) connserver.Conn {
	return &conn{srv: s, nc: nc, pending: map[string]*pendingAuth{}, running: map[string]struct{}{}}
}

// pendingAuth is an exchange waiting for a CONT.
type pendingAuth struct {
	x        exchange
	deadline time.Time
}

type conn struct {
	srv *Server
	nc  net.Conn

	// Reader-goroutine state.
	pending map[string]*pendingAuth
	version bool

	gate    connserver.Gate
	mu      sync.Mutex
	running map[string]struct{} // ids with a Handler call in progress
	wmu     sync.Mutex          // serialises writes
	wdl     connserver.Deadline // under wmu
	wg      sync.WaitGroup
}

// Stop implements connserver.Conn: reading stops at once; logins being
// checked are answered before Serve returns.
func (c *conn) Stop() { c.gate.Stop(c.nc) }

// Close implements connserver.Conn.
func (c *conn) Close() error { return c.nc.Close() }

// Serve implements connserver.Conn.
func (c *conn) Serve(ctx context.Context) {
	defer c.wg.Wait()
	s := c.srv
	var cookie [16]byte
	_, _ = rand.Read(cookie[:])
	hs := appendHandshake(nil, s.mechanisms(), pid, int(s.cuid.Add(1)), hex.EncodeToString(cookie[:]))
	// The handshake goes out at once: postfix sends its VERSION and CPID
	// without waiting, then waits for DONE (PROTOCOLS.md §8.6, 1).
	if !c.write(hs) {
		return
	}
	t := s.Timeouts(0) // no idle default: see Server
	br := bufio.NewReaderSize(c.nc, MaxLine+1)
	for {
		if !c.gate.ArmRead(c.nc, t.Idle) {
			return
		}
		if _, err := br.Peek(1); err != nil {
			return // EOF, idle timeout, Stop, or closed after a TempFail
		}
		if !c.gate.ArmRead(c.nc, t.Read) {
			return
		}
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				c.protocolError(ErrLineTooLong)
			}
			return
		}
		if err := c.handle(ctx, line[:len(line)-1]); err != nil {
			c.protocolError(err)
			return
		}
	}
}

// protocolError closes the connection at once: checks still running
// must not answer on a stream that can no longer be trusted (Serve waits
// for them all the same).
func (c *conn) protocolError(err error) {
	c.srv.Log().Warn("sasl: closing connection on protocol error", "err", err, "remote", c.nc.RemoteAddr().String())
	c.nc.Close()
}

// handle processes one client line; an error closes the connection.
func (c *conn) handle(ctx context.Context, raw []byte) error {
	l, err := parseLine(raw)
	if err != nil {
		return err
	}
	if !c.version {
		// Dovecot requires the client's VERSION first; postfix sends it
		// right after connecting.
		if l.cmd != cmdVersion {
			return ErrNoVersion
		}
		if err := checkVersion(l.arg); err != nil {
			return err
		}
		c.version = true
		return nil
	}
	switch l.cmd {
	case cmdAuth:
		return c.auth(ctx, l)
	case cmdCont:
		return c.cont(ctx, l)
	}
	return nil
}

func (c *conn) auth(ctx context.Context, l clientLine) error {
	if _, dup := c.pending[l.id]; dup || c.isRunning(l.id) {
		return ErrDuplicateID
	}
	mech, ok := findMech(c.srv.mechanisms(), l.arg)
	if !ok {
		c.write(appendFail(nil, l.id, "", ReasonUnknownMech))
		return nil
	}
	if c.inFlight() >= c.maxInFlight() && !c.forgetOldestPending() {
		c.write(appendFail(nil, l.id, "", ReasonTooManyAuths))
		return nil
	}
	x := exchange{mech: mech, params: l.params}
	c.advance(ctx, l.id, x, x.begin())
	return nil
}

func (c *conn) cont(ctx context.Context, l clientLine) error {
	p, ok := c.pending[l.id]
	if !ok {
		c.write(appendFail(nil, l.id, "", ReasonUnknownID))
		return nil
	}
	delete(c.pending, l.id)
	if time.Now().After(p.deadline) {
		c.write(appendFail(nil, l.id, p.x.login, ReasonUnknownID))
		return nil
	}
	c.advance(ctx, l.id, p.x, p.x.next(l.arg))
	return nil
}

// advance acts on an exchange's next step: a FAIL, a CONT challenge (the
// exchange waits), or a Handler call in its own goroutine.
func (c *conn) advance(ctx context.Context, id string, x exchange, st step) {
	switch {
	case st.fail != "":
		c.write(appendFail(nil, id, x.login, st.fail))
	case !st.done:
		c.pending[id] = &pendingAuth{x: x, deadline: time.Now().Add(connserver.Or(c.srv.ContTimeout, DefaultContTimeout))}
		c.write(appendCont(nil, id, st.challenge))
	default:
		req := &Request{
			Mechanism:   x.mech,
			Credentials: st.creds,
			Service:     x.params.service,
			LocalIP:     x.params.localIP,
			ClientIP:    x.params.clientIP,
			Secured:     x.params.secured,
		}
		c.mu.Lock()
		c.running[id] = struct{}{}
		c.mu.Unlock()
		c.wg.Add(1)
		go c.check(ctx, id, req)
	}
}

// check asks the Handler and answers; a TempFail closes the connection.
func (c *conn) check(ctx context.Context, id string, req *Request) {
	defer c.wg.Done()
	res := c.callHandler(ctx, req)
	clear(req.Password)
	// The id is free before its answer goes out: a client that has read
	// the answer may reuse it, or count on the room it made (MaxInFlight).
	c.mu.Lock()
	delete(c.running, id)
	c.mu.Unlock()
	switch res.Verdict {
	case Accept:
		user := res.User
		if user == "" {
			user = req.User
		}
		if Printable(user) {
			c.write(appendOK(nil, id, user))
			return
		}
		c.srv.Log().Error("sasl: handler accepted a login with an unprintable user name; closing connection")
	case Reject:
		reason := res.Reason
		if reason == "" || !Printable(reason) {
			reason = ReasonAuthFailed
		}
		c.write(appendFail(nil, id, req.User, reason))
		return
	}
	// TempFail: no reply. Postfix answers 454 4.7.0 for a connection lost
	// while it waits, and any FAIL would be a permanent 535.
	c.nc.Close()
}

// callHandler runs the Handler; a panic is a TempFail for this login, not
// the end of the process.
func (c *conn) callHandler(ctx context.Context, req *Request) (res Result) {
	defer func() {
		if v := recover(); v != nil {
			c.srv.Log().Error("sasl: handler panicked; closing connection", "panic", v)
			res = Result{Verdict: TempFail}
		}
	}()
	return c.srv.Handler.Authenticate(ctx, req)
}

func (c *conn) isRunning(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.running[id]
	return ok
}

// inFlight counts open requests after dropping expired exchanges.
func (c *conn) inFlight() int {
	now := time.Now()
	for id, p := range c.pending {
		if now.After(p.deadline) {
			delete(c.pending, id)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending) + len(c.running)
}

// forgetOldestPending drops the exchange that has waited longest for a
// CONT, to make room for a new AUTH; false when none waits (every open
// request is a running Handler call). Postfix never says that an SMTP
// client gave up on an exchange ("*" to a 334, a hang-up: PROTOCOLS.md
// §8.3) and sends one request at a time, so a waiting exchange is most
// likely abandoned; refusing the new AUTH instead would be a permanent
// 535 for whoever logs in next through that smtpd.
func (c *conn) forgetOldestPending() bool {
	var oldest string
	var at time.Time
	found := false
	for id, p := range c.pending {
		if !found || p.deadline.Before(at) {
			oldest, at, found = id, p.deadline, true
		}
	}
	if !found {
		return false
	}
	delete(c.pending, oldest)
	return true
}

func (c *conn) maxInFlight() int {
	if c.srv.MaxInFlight > 0 {
		return c.srv.MaxInFlight
	}
	return DefaultMaxInFlight
}

// write sends b whole; on failure the connection is closed, which ends
// the reader too.
func (c *conn) write(b []byte) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wdl.Write(c.nc, c.srv.Timeouts(0).Write)
	if _, err := c.nc.Write(b); err != nil {
		if !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
			c.srv.Log().Debug("sasl: write failed", "err", err)
		}
		c.nc.Close()
		return false
	}
	return true
}
