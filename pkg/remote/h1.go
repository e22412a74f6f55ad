package remote

// The client's default transport (issue #21): HTTP/1.1 keep-alive in the
// calling goroutine. net/http's Transport runs two goroutines per
// connection (persistConn's readLoop and writeLoop) and hands every
// request and response across them: two goroutine wake-ups per lookup
// and about 50 allocations. Here the lookup's goroutine writes the request
// (head and body in one write) and reads the reply itself; deadlines on
// the connection stand in for the timers of the net/http path, and a
// context.AfterFunc for its cancellation.
//
// It serves the backend URLs it fully understands (http or https, an
// ASCII host, no query or fragment); any other URL, and an
// Options.Transport, go through net/http as before.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// h1IdleTimeout drops a connection idle this long, as NewTransport's
// IdleConnTimeout.
const h1IdleTimeout = 90 * time.Second

// h1DefaultIdle is how many idle connections a host keeps without
// MaxConnsPerHost (NewTransport's MaxIdleConnsPerHost).
const h1DefaultIdle = 256

// aLongTimeAgo is a deadline that has passed: setting it interrupts any
// read or write in progress.
var aLongTimeAgo = time.Unix(1, 0)

// h1Host is the pool of connections to one scheme and address, shared by
// the backend URLs that name it (net/http keys its pools the same way).
type h1Host struct {
	addr string
	tls  *tls.Config // nil: plain TCP
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	max  int // open connections at most; 0: no bound
	keep int // idle connections at most

	mu      sync.Mutex
	idle    []*h1Conn // least recently used first
	open    int       // connections open or being dialed
	waiters []chan *h1Conn
	sweep   *time.Timer // closes connections idle for h1IdleTimeout
	sweepOn bool
}

// h1Conn is one connection, used by one exchange at a time.
type h1Conn struct {
	h      *h1Host
	nc     net.Conn
	br     *bufio.Reader
	src    readWatch // br reads nc through it
	peek   sockPeek
	head   headReader
	wbuf   []byte
	idleAt time.Time
	reused bool // it carried an exchange before
	// reusable is unset by a response that ends the connection.
	reusable bool
	dl       time.Time // the deadline set on nc
	// canceled is set, and the deadline moved into the past, when the
	// context of the exchange in progress ends; onCancel does that.
	canceled atomic.Bool
	onCancel func()
	stop     func() bool
	// ctx and ctxDL are the exchange's context and its deadline (copies,
	// so that the h1Call stays on its goroutine's stack).
	ctx   context.Context
	ctxDL time.Time

	resp http.Response
	hdr  http.Header
	body h1Body
	gz   h1Gzip
	// raw, on a plain connection, writes each request in the read that
	// waits for its response.
	raw *h1Raw
}

// newH1Host builds the pool for addr; tlsConf (nil for http) must already
// name the server.
func newH1Host(addr string, tlsConf *tls.Config, maxConns int) *h1Host {
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	h := &h1Host{addr: addr, tls: tlsConf, dial: d.DialContext, max: maxConns, keep: maxConns}
	if maxConns <= 0 {
		h.keep = h1DefaultIdle
	}
	return h
}

// h1Endpoint tells whether the in-goroutine transport serves base, and
// with what: the pool key (scheme and address), the dial address and the
// TLS server name (empty for http).
func h1Endpoint(base string) (key, addr, serverName string, ok bool) {
	u, err := url.Parse(base)
	if err != nil || u.Opaque != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Host == "" {
		return "", "", "", false
	}
	for i := 0; i < len(u.Host); i++ {
		if u.Host[i] >= 0x80 {
			return "", "", "", false // net/http would need IDNA here
		}
	}
	port, known := map[string]string{"http": "80", "https": "443"}[u.Scheme]
	if !known {
		return "", "", "", false
	}
	if p := u.Port(); p != "" {
		port = p
	}
	addr = net.JoinHostPort(u.Hostname(), port)
	if u.Scheme == "https" {
		serverName = u.Hostname()
	}
	return u.Scheme + "://" + addr, addr, serverName, true
}

// setupH1 gives every backend whose URL h1Endpoint accepts a pool (shared
// by the URLs of one host).
func (c *Client) setupH1(tlsConf *tls.Config, maxConns int) {
	pools := map[string]*h1Host{}
	for _, b := range c.backends {
		key, addr, serverName, ok := h1Endpoint(b.base)
		if !ok {
			continue
		}
		h := pools[key]
		if h == nil {
			h = newH1Host(addr, h1TLS(tlsConf, serverName, strings.HasPrefix(key, "https:")), maxConns)
			pools[key] = h
			c.h1 = append(c.h1, h)
		}
		b.h1 = h
	}
}

// h1TLS is the handshake configuration for one host, as net/http derives
// it: a copy, with the URL's host as ServerName unless one is set, and
// HTTP/1.1 only.
func h1TLS(conf *tls.Config, serverName string, https bool) *tls.Config {
	if !https {
		return nil
	}
	if conf == nil {
		conf = &tls.Config{}
	} else {
		conf = conf.Clone()
	}
	if conf.ServerName == "" {
		conf.ServerName = serverName
	}
	if len(conf.NextProtos) > 0 {
		conf.NextProtos = []string{"http/1.1"}
	}
	return conf
}

// h1CloseIdle closes the idle connections of every pool.
func (c *Client) h1CloseIdle() {
	for _, h := range c.h1 {
		h.closeIdle()
	}
}

// h1Head returns the request head for verb up to the Content-Length value,
// or false when the URL made of base and verb is not one the transport
// serves (the request then goes through net/http). Heads are kept per
// verb: building one parses the URL.
func (b *backend) h1Head(verb string) (string, bool) {
	if m := b.heads.Load(); m != nil {
		if h, ok := (*m)[verb]; ok {
			return h, h != ""
		}
	}
	h := b.makeH1Head(verb)
	b.headsMu.Lock()
	defer b.headsMu.Unlock()
	old := b.heads.Load()
	if old == nil || len(*old) < 64 { // verbs come from configuration; bound them anyway
		m := make(map[string]string, 1+lenMap(old))
		if old != nil {
			for k, v := range *old {
				m[k] = v
			}
		}
		m[verb] = h
		b.heads.Store(&m)
	}
	return h, h != ""
}

func lenMap(m *map[string]string) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// makeH1Head builds what net/http would write for the POST of verb, up to
// the Content-Length value: the request target and Host as NewRequest and
// Request.Write derive them from the URL, its User-Agent, the client's
// header fields, and the Accept-Encoding its transport adds.
func (b *backend) makeH1Head(verb string) string {
	u, err := url.Parse(b.base + url.PathEscape(verb))
	if err != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return ""
	}
	if u.Host != b.host {
		return "" // the verb ran into the host ("http://h" + verb)
	}
	host := strings.TrimSuffix(u.Host, ":")
	if i := strings.IndexByte(host, '%'); i >= 0 && strings.HasPrefix(host, "[") {
		// An IPv6 zone is for dialing, not for the Host field
		// (net/http's removeZone).
		if j := strings.LastIndexByte(host, ']'); j > i {
			host = host[:i] + host[j:]
		}
	}
	var s strings.Builder
	s.WriteString("POST " + u.RequestURI() + " HTTP/1.1\r\nHost: " + host + "\r\n")
	s.WriteString("User-Agent: Go-http-client/1.1\r\nAccept: application/json\r\n")
	if b.auth != nil {
		s.WriteString("Authorization: " + b.auth[0] + "\r\n")
	}
	s.WriteString("Content-Type: application/json\r\nAccept-Encoding: gzip\r\nContent-Length: ")
	return s.String()
}

// h1Call is one attempt's state: its context, deadlines and progress.
type h1Call struct {
	ctx        context.Context
	idempotent bool
	ctxDL      time.Time // the context's deadline; zero: none
	start      time.Time
	connDL     time.Time // ConnectTimeout: until a connection is had
	firstDL    time.Time // the attempt's budget: until a response byte
	connected  bool
	sent       bool // a whole request was written
	answered   bool // a response byte arrived
	// why is the cause of the deadline set last: errConnectTimeout,
	// errAttemptTimeout, or nil for the context's own.
	why error
}

// deadline is the deadline in force and its cause: the context's, and
// until a connection is had ConnectTimeout's, and until a response byte
// the attempt budget's, whichever comes first.
func (x *h1Call) deadline() (time.Time, error) {
	d, why := x.ctxDL, error(nil)
	if !x.connected && !x.connDL.IsZero() && (d.IsZero() || x.connDL.Before(d)) {
		d, why = x.connDL, errConnectTimeout
	}
	if !x.answered && !x.firstDL.IsZero() && (d.IsZero() || x.firstDL.Before(d)) {
		d, why = x.firstDL, errAttemptTimeout
	}
	return d, why
}

// h1RoundTrip is roundTrip over the in-goroutine transport, with the same
// deadlines (the context's, ConnectTimeout, the attempt's budget until
// the first response byte), the same classification of failures, and the
// same reply checks (readReply).
func (c *Client) h1RoundTrip(ctx context.Context, b *backend, head, verb string, body []byte, budget time.Duration) (Result, cachePolicy, error) {
	x := h1Call{ctx: ctx, idempotent: !c.unsafe[verb]}
	now := time.Now()
	x.start = now
	x.ctxDL, _ = ctx.Deadline()
	x.connDL = now.Add(c.connect)
	if budget > 0 {
		x.firstDL = now.Add(budget)
	}
	pc, err := x.exchange(b.h1, head, body)
	if err != nil {
		return Result{}, cachePolicy{}, c.h1Failure(&x, b, verb, err)
	}
	defer pc.resp.Body.Close()
	return c.readReply(ctx, &pc.resp)
}

// h1Failure is transportError for the in-goroutine transport: the error
// wrapped as http.Client would (`Post "<url>": …`, password hidden), and
// classified by what ended the attempt.
func (c *Client) h1Failure(x *h1Call, b *backend, verb string, err error) *Error {
	u, perr := url.Parse(b.base + url.PathEscape(verb))
	name := redactedBase(b.base) + url.PathEscape(verb)
	if perr == nil {
		name = urlWithoutPassword(u)
	}
	werr := &url.Error{Op: "Post", URL: name, Err: err}
	e := c.failure(x.cause(err), werr, !x.answered)
	e.sent = x.sent
	return e
}

// redactedBase is base with any password hidden, for an error about a
// URL that does not parse (it did when the client was made, so this is
// only a safeguard).
func redactedBase(base string) string {
	if u, err := url.Parse(base); err == nil {
		return urlWithoutPassword(u)
	}
	return "backend URL"
}

// cause is why the attempt was given up, nil when it was not: the
// context's cause once it ended, else the cause of the deadline in force
// when err is a timeout.
func (x *h1Call) cause(err error) error {
	if x.ctx.Err() != nil {
		return context.Cause(x.ctx)
	}
	if !isTimeout(err) {
		return nil
	}
	if x.why != nil {
		return x.why
	}
	settle(x.ctx, x.ctxDL)
	if x.ctx.Err() != nil {
		return context.Cause(x.ctx)
	}
	return context.DeadlineExceeded
}

// settle waits for ctx to end when its deadline dl has passed: the
// connection's deadline and the context's timer fire at the same instant
// in either order, and the callers (readReply, fetch, the flight group)
// must see the context ended, as on the net/http path where the context
// alone ends the exchange.
func settle(ctx context.Context, dl time.Time) {
	if dl.IsZero() || time.Now().Before(dl) {
		return
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// bodyError is a body read's error, once the context's end is seen when
// that is what cut the read.
func (pc *h1Conn) bodyError(err error) error {
	if pc.ctx != nil && isTimeout(err) {
		settle(pc.ctx, pc.ctxDL)
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// h1WriteError is a failed request write and how much of it went out.
type h1WriteError struct {
	n   int
	err error
}

func (e *h1WriteError) Error() string { return e.err.Error() }
func (e *h1WriteError) Unwrap() error { return e.err }

// exchange gets a connection, writes the request and reads the response
// head, with one retry on a fresh connection as net/http makes one
// (transport.go, persistConn.shouldRetryRequest; see mayRetry).
func (x *h1Call) exchange(h *h1Host, head string, body []byte) (*h1Conn, error) {
	pc, err := h.get(x)
	if err != nil {
		return nil, err
	}
	for retried := false; ; retried = true {
		err = pc.do(x, head, body)
		if err == nil {
			return pc, nil
		}
		if retried || !x.mayRetry(pc, err) {
			pc.discard()
			return nil, err
		}
		// The slot the stale connection held goes to its replacement.
		// Nothing sent yet, the request is still getting a connection,
		// which ConnectTimeout bounds (on the net/http path its timer
		// stops at the first connection, whatever happens on it next).
		pc.drop()
		x.connected = x.sent
		if pc, err = h.dialIn(x); err != nil {
			return nil, err
		}
	}
}

// mayRetry applies net/http's rules for resending a request that failed
// on a reused connection before any response byte (transport.go,
// shouldRetryRequest): always when nothing of it was written (the body
// is a byte slice, so "rewindable"); when part or all of it was, only an
// idempotent request (Request.isReplayable: what the X-Idempotency-Key
// marker says on the net/http path), and only after a read failure (not
// a failed write, net/http's "conservatively"). Never once the context
// or a deadline ended the attempt.
func (x *h1Call) mayRetry(pc *h1Conn, err error) bool {
	if !pc.reused || x.answered || x.ctx.Err() != nil || pc.canceled.Load() || isTimeout(err) {
		return false
	}
	var we *h1WriteError
	if errors.As(err, &we) {
		return we.n == 0
	}
	return x.idempotent
}

// do is one request on pc: the deadline and cancellation armed, the
// request written in one write, the response head read.
func (pc *h1Conn) do(x *h1Call, head string, body []byte) error {
	pc.ctx, pc.ctxDL = x.ctx, x.ctxDL
	x.connected = true
	if x.ctx.Done() != nil {
		pc.stop = context.AfterFunc(x.ctx, pc.onCancel)
	}
	if pc.reused && pc.dead() {
		// A request goes only on a connection the backend has neither
		// closed nor sent anything on since the last response, which
		// net/http's readLoop would have noticed. Bytes past a response
		// answer nothing: taken for the next response, they would hand
		// every later lookup on the connection the answer of the one
		// before. Nothing was sent, so the request goes on another.
		return &h1WriteError{err: errors.New("idle connection closed by the backend, or bytes past its last response")}
	}
	pc.setDeadline(x)
	buf := append(pc.wbuf[:0], head...)
	buf = strconv.AppendInt(buf, int64(len(body)), 10)
	buf = append(buf, "\r\n\r\n"...)
	buf = append(buf, body...)
	if cap(buf) <= 16<<10 { // a larger request is rare: no need to keep its buffer
		pc.wbuf = buf
	}
	if pc.raw != nil && pc.br.Buffered() == 0 {
		// The first read of the response writes the request (h1Raw).
		pc.raw.send(buf)
		err := pc.readResponse(x)
		if pc.raw.werr != nil {
			return &h1WriteError{n: pc.raw.wrote, err: pc.raw.werr}
		}
		x.sent = true
		return err
	}
	n, err := pc.nc.Write(buf)
	if err != nil {
		return &h1WriteError{n: n, err: err}
	}
	x.sent = true
	return pc.readResponse(x)
}

// dead reports whether the backend ended pc, or sent something on it,
// while it was idle. Over TLS the socket may show nothing though a
// close_notify arrived: TLS 1.3 encrypts a record's type, so crypto/tls
// cannot tell an alert that came with the last reply from data, and keeps
// it buffered. A read under a deadline already passed handles a buffered
// record and reads nothing from the socket. It leaves pc's deadline to be
// set again.
func (pc *h1Conn) dead() bool {
	if pc.peek.dead(pc.nc) {
		return true
	}
	if _, ok := pc.nc.(*tls.Conn); !ok {
		return false
	}
	pc.dl = aLongTimeAgo
	_ = pc.nc.SetReadDeadline(aLongTimeAgo)
	if _, err := pc.br.Peek(1); !isTimeout(err) {
		return true
	}
	pc.src.err = nil // the timeout was this look's own
	return false
}

// readResponse reads the response head: the first byte (which ends the
// attempt's budget), then the head, and prepares pc.resp.
func (pc *h1Conn) readResponse(x *h1Call) error {
	if _, err := pc.br.Peek(1); err != nil {
		return err
	}
	x.answered = true
	if !x.firstDL.IsZero() {
		pc.setDeadline(x)
	}
	pc.head.budget = h1MaxHead
	h, err := readHead(&pc.head, pc.hdr)
	if cap(pc.head.scratch) > 8<<10 {
		pc.head.scratch = nil // a long field line was an exception: 256 idle connections need not keep one each
	}
	if err != nil {
		return err
	}
	pc.body.reset(&h)
	pc.reusable = !h.close
	r := &pc.resp
	r.StatusCode, r.ProtoMajor, r.ProtoMinor, r.Header = h.status, 1, h.minor, h.header
	r.ContentLength = -1
	if h.framing == bodyLength {
		r.ContentLength = h.length
	} else if h.framing == bodyNone {
		r.ContentLength = 0
	}
	r.Body = &pc.body
	if h.gzip && h.framing != bodyNone {
		pc.gz = h1Gzip{body: &pc.body}
		r.Body, r.ContentLength = &pc.gz, -1
	}
	return nil
}

// setDeadline sets the deadline in force on the connection, unless it
// is already set.
func (pc *h1Conn) setDeadline(x *h1Call) {
	d, why := x.deadline()
	x.why = why
	if d.Equal(pc.dl) {
		return
	}
	pc.dl = d
	_ = pc.nc.SetDeadline(d)
	if pc.canceled.Load() {
		// onCancel ran in between: its deadline must win.
		_ = pc.nc.SetDeadline(aLongTimeAgo)
	}
}

// release ends the exchange on pc: back to the pool when the response was
// read to its end and the connection may carry another request, closed
// otherwise.
func (pc *h1Conn) release(complete bool) {
	stopped := pc.stop == nil || pc.stop()
	pc.stop, pc.ctx = nil, nil
	if !complete || !stopped || !pc.reusable || pc.canceled.Load() || pc.br.Buffered() > 0 || pc.src.err != nil {
		// Bytes after the response are not an answer to anything: net/http
		// drops such a connection too. An error already met by a read is
		// the end of the connection, though nothing shows it on the
		// socket: crypto/tls reads a close_notify that came with the last
		// bytes of a reply along with them, and returns it as EOF.
		pc.h.discard(pc)
		return
	}
	pc.reused = true
	pc.h.put(pc)
}

// discard closes pc after a failed exchange and frees its slot.
func (pc *h1Conn) discard() {
	if pc.stop != nil {
		pc.stop()
		pc.stop = nil
	}
	pc.h.discard(pc)
}

// drop closes pc and keeps its slot for a replacement.
func (pc *h1Conn) drop() {
	if pc.stop != nil {
		pc.stop()
		pc.stop = nil
	}
	_ = pc.nc.Close()
}

func (h *h1Host) newConn(nc net.Conn) *h1Conn {
	pc := &h1Conn{h: h, nc: nc, src: readWatch{r: nc}, hdr: http.Header{}, raw: newH1Raw(nc)}
	if pc.raw != nil {
		pc.src.r = pc.raw
	}
	pc.br = bufio.NewReaderSize(&pc.src, 4096)
	pc.head.br = pc.br
	pc.body.pc = pc
	pc.onCancel = func() {
		pc.canceled.Store(true)
		_ = pc.nc.SetDeadline(aLongTimeAgo)
	}
	return pc
}

// readWatch keeps the first error its reader returned; bufio.Reader keeps
// one too but tells it only to a read that would otherwise block.
type readWatch struct {
	r   io.Reader
	err error
}

func (w *readWatch) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}
