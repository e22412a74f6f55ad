// Package remote is shitenno's backend client: it POSTs
// {"Verb":…,"Object":…} to RemoteURL+Verb and classifies the answer as
// found (Status OK), not found (Status KO) or failed (anything else).
//
// It knows nothing of postfix, dovecot or nginx. A failure is always an
// error, never a "not found": the callers turn it into their protocol's
// temporary failure.
package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/shitenno/shitenno/internal/redact"
)

// Status is a definitive backend answer.
type Status int

// The two definitive answers. A failure is an error instead.
const (
	NotFound Status = iota // Status "KO"
	Found                  // Status "OK"
)

func (s Status) String() string {
	if s == Found {
		return "found"
	}
	return "not_found"
}

// Result is a definitive backend answer.
type Result struct {
	Status Status
	// Data is the reply's raw Data member (may be nil or "null").
	Data json.RawMessage
	// Stale is set when the result came from the cache after a backend
	// failure (stale-if-error).
	Stale bool

	memo *memo // set on results served from the cache
}

// memo holds what a caller derived from a cached reply's Data.
type memo struct {
	once sync.Once
	v    any
}

// Derive returns fn(r.Data), computed once per cached reply rather than
// on every cache hit: a caller that validates or re-encodes Data (the
// postfix and dovecot bridges) pays for it once per backend reply. fn
// must depend on Data alone. The first fn to derive from a reply sets
// its value, so a caller that may share replies with another kind of
// caller checks the value's type and, when it is not its own, calls fn
// itself.
func (r Result) Derive(fn func(json.RawMessage) any) any {
	if r.memo == nil {
		return fn(r.Data)
	}
	r.memo.once.Do(func() { r.memo.v = fn(r.Data) })
	return r.memo.v
}

// Kind classifies a backend failure. A Kind is also an error value, so
// errors.Is(err, remote.KindTimeout) tells what failed through any
// wrapping; KindOf returns it.
type Kind string

// The kinds of backend failure.
const (
	KindTransport Kind = "transport" // no connection, reset, or garbage instead of HTTP
	KindTimeout   Kind = "timeout"   // no (complete) answer in time
	KindTLS       Kind = "tls"       // handshake refused (trust, name, pins, OCSP)
	KindHTTP      Kind = "http"      // an HTTP status other than 2xx
	KindBody      Kind = "body"      // reply too large or cut short
	KindJSON      Kind = "json"      // reply is not JSON
	KindStatus    Kind = "status"    // Status missing or neither OK nor KO
	KindData      Kind = "data"      // Data unusable for the protocol
)

// Error makes a Kind usable as an errors.Is target.
func (k Kind) Error() string { return "backend failure: " + string(k) }

// Temporary reports whether a failure of this kind is the link's or the
// backend's state (unreachable, slow, refused TLS, an HTTP error status),
// which asking again later may not meet, rather than an answer the
// backend gave and would give again (bad body, JSON, Status or Data).
// Every failure is a temporary failure for the peers either way: the
// distinction is for operators and retry decisions.
func (k Kind) Temporary() bool {
	switch k {
	case KindTransport, KindTimeout, KindTLS, KindHTTP:
		return true
	}
	return false
}

// Error is a backend failure. Reason is short and safe to show to a peer
// (it never contains reply data).
type Error struct {
	Kind   Kind
	Reason string
	Err    error // underlying cause, may be nil
	// BeforeResponse is set when no byte of a response was received, so
	// the request may be retried on another backend (a non-idempotent
	// verb only if it was not fully sent).
	BeforeResponse bool
	// sent is set when the whole request was written.
	sent bool
}

// Error gives the reason and, for operators' logs, the underlying cause.
// Neither contains reply data.
func (e *Error) Error() string {
	if e.Err != nil {
		return e.Reason + ": " + e.Err.Error()
	}
	return e.Reason
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Is matches the failure's Kind: errors.Is(err, KindTimeout).
func (e *Error) Is(target error) bool {
	k, ok := target.(Kind)
	return ok && k == e.Kind
}

// Temporary reports whether the failure's Kind is Temporary.
func (e *Error) Temporary() bool { return e.Kind.Temporary() }

// KindOf returns the Kind of the backend failure in err's chain, or ""
// when err is nil or not a backend failure.
func KindOf(err error) Kind {
	var re *Error
	if errors.As(err, &re) {
		return re.Kind
	}
	return ""
}

// Reason returns the short, peer-safe text of the backend failure in
// err's chain, or "backend failure" for any other error (whose text may
// say more than a peer should see).
func Reason(err error) string {
	var re *Error
	if errors.As(err, &re) {
		return re.Reason
	}
	return "backend failure"
}

// Temporary reports whether err holds a backend failure of a Temporary
// kind (see Kind.Temporary); false for any other error.
func Temporary(err error) bool { return KindOf(err).Temporary() }

// Failf builds a data-kind failure: callers use it when Data has the wrong
// shape for their protocol.
func Failf(format string, args ...any) *Error {
	return &Error{Kind: KindData, Reason: fmt.Sprintf(format, args...)}
}

// Observer receives events for metrics. All methods must be cheap and safe
// for concurrent use.
type Observer interface {
	// BackendDone reports one HTTP exchange with a backend.
	BackendDone(verb string, d time.Duration, err error)
	// CacheEvent reports "hit", "miss" or "stale".
	CacheEvent(kind string)
	// TLSFailure reports a refused TLS handshake by cause.
	TLSFailure(cause string)
}

type nopObserver struct{}

func (nopObserver) BackendDone(string, time.Duration, error) {}
func (nopObserver) CacheEvent(string)                        {}
func (nopObserver) TLSFailure(string)                        {}

// maxReplyLimit caps Options.MaxReplySize (a reply is held in memory).
const maxReplyLimit = 1 << 30

// DefaultConnectTimeout is Options.ConnectTimeout's default: on a
// loopback or LAN link a connection takes well under a millisecond, so a
// dial or TLS handshake still pending after a second is a dropped SYN or a
// hung peer, and waiting longer only eats the next URL's share of Timeout.
const DefaultConnectTimeout = time.Second

// DefaultNonIdempotentVerbs are the verbs never resent to another URL once
// the request was fully sent (Options.NonIdempotentVerbs): a login attempt
// and a policy request may count something at the backend (failed logins,
// rates), so sending one twice could count it twice.
var DefaultNonIdempotentVerbs = []string{"sasl", "policy"}

// Options configures a Client.
type Options struct {
	// URLs are backend base URLs, tried in order.
	URLs []string
	// Timeout bounds one whole lookup (all retries included).
	Timeout time.Duration
	// ConnectTimeout bounds getting a connection to one backend URL (dial
	// and TLS handshake); 0 means DefaultConnectTimeout. It holds for
	// every verb: a request that never left may always go elsewhere.
	ConnectTimeout time.Duration
	// AttemptTimeout bounds the wait for the first response byte from one
	// URL when another URL is left to try, for idempotent verbs. 0 shares
	// what is left of Timeout evenly among the URLs left to try (the last
	// one gets all of it), so a silent first URL of two leaves half the
	// Timeout to the second. Once a response has begun, the rest of
	// Timeout is the backend's.
	AttemptTimeout time.Duration
	// NonIdempotentVerbs are the verbs whose requests are never sent
	// again once fully written (no second URL after a silent first one,
	// no per-attempt budget). nil means DefaultNonIdempotentVerbs; an
	// empty, non-nil slice means none.
	NonIdempotentVerbs []string
	// MaxReplySize bounds a reply body; 0 means 1 MiB, and more than
	// 1 GiB counts as 1 GiB.
	MaxReplySize int64
	// FailoverBackoff is how long a failing URL is skipped.
	FailoverBackoff time.Duration
	// TLS is the client TLS configuration (nil: Go defaults).
	TLS *tls.Config
	// MaxConnsPerHost bounds concurrent connections to one backend
	// (0: unlimited); idle keep-alive connections are kept up to this.
	MaxConnsPerHost int
	// Cache, when non-nil, caches replies.
	Cache *Cache
	// Observer receives metrics events (nil: none).
	Observer Observer
	// Transport overrides the HTTP transport (tests, benchmarks). nil
	// means the in-goroutine HTTP/1.1 client of h1.go, for the URLs it
	// serves, and NewTransport's for the others; NewTransport(TLS,
	// MaxConnsPerHost) here gives net/http's for all.
	Transport http.RoundTripper
}

// Client talks to the backend. It is safe for concurrent use.
type Client struct {
	opts      Options
	http      *http.Client
	transport http.RoundTripper
	obs       Observer
	flight    flightGroup
	backends  []*backend
	maxReply  int64
	connect   time.Duration
	// unsafe holds the non-idempotent verbs.
	unsafe map[string]bool
	// h1 are the in-goroutine transport's pools (h1.go).
	h1 []*h1Host
}

// New builds a client.
func New(o Options) (*Client, error) {
	if len(o.URLs) == 0 {
		return nil, errors.New("remote: no backend URL")
	}
	c := &Client{opts: o, obs: o.Observer, maxReply: o.MaxReplySize}
	if c.obs == nil {
		c.obs = nopObserver{}
	}
	if c.maxReply <= 0 {
		c.maxReply = 1 << 20
	}
	// The body is read up to maxReply+1 bytes to tell "exactly the bound"
	// from "over it": that +1 must not overflow. The configuration refuses
	// more than 1 GiB anyway; this keeps the client safe on its own.
	c.maxReply = min(c.maxReply, maxReplyLimit)
	c.connect = o.ConnectTimeout
	if c.connect <= 0 {
		c.connect = DefaultConnectTimeout
	}
	verbs := o.NonIdempotentVerbs
	if verbs == nil {
		verbs = DefaultNonIdempotentVerbs
	}
	c.unsafe = make(map[string]bool, len(verbs))
	for _, v := range verbs {
		c.unsafe[v] = true
	}
	for _, u := range o.URLs {
		p, err := url.Parse(u)
		if err != nil {
			return nil, fmt.Errorf("remote: bad URL %q", redact.URL(u))
		}
		b := &backend{base: u, host: p.Host}
		if p.User != nil {
			pw, _ := p.User.Password()
			b.auth = []string{"Basic " + base64.StdEncoding.EncodeToString([]byte(p.User.Username()+":"+pw))}
		}
		c.backends = append(c.backends, b)
	}
	c.transport = o.Transport
	if c.transport == nil {
		c.transport = NewTransport(o.TLS, o.MaxConnsPerHost)
		c.setupH1(o.TLS, o.MaxConnsPerHost)
	}
	c.http = &http.Client{
		Transport: c.transport,
		// A redirect is a failure, never followed into a "found".
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// NewTransport builds net/http's keep-alive transport as shitenno sets it
// up: the client's for the URLs its own HTTP/1.1 client (h1.go) does not
// serve, and for all of them when given as Options.Transport.
func NewTransport(tlsConf *tls.Config, maxConns int) *http.Transport {
	idle := maxConns
	if idle <= 0 {
		idle = 256
	}
	return &http.Transport{
		Proxy: nil, // the backend link is direct; *_proxy variables are ignored
		// The client gives up on a connection after its ConnectTimeout
		// (per request); these bound a dial that net/http carries on in
		// the background for its pool after that.
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   5 * time.Second,
		MaxIdleConns:          idle,
		MaxIdleConnsPerHost:   idle,
		MaxConnsPerHost:       maxConns,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0, // bounded by the request context
		// HTTP/1.1 keep-alive: with the lookups' small bodies, Go's HTTP/2
		// costs about 1.6× per request here (BenchmarkLookupHTTPS), and a
		// pool of connections gives the concurrency multiplexing would.
		ForceAttemptHTTP2: false,
	}
}

// CloseIdle closes idle backend connections (after a TLS reload, say).
func (c *Client) CloseIdle() {
	c.http.CloseIdleConnections()
	c.h1CloseIdle()
}

// Lookup asks the backend about object under verb. The object is encoded
// as JSON. A failure is returned as a *Error.
func (c *Client) Lookup(ctx context.Context, verb string, object any) (Result, error) {
	obj, err := json.Marshal(object)
	if err != nil {
		return Result{}, &Error{Kind: KindData, Reason: "cannot encode request", Err: err}
	}
	return c.LookupRaw(ctx, verb, obj)
}

// LookupRaw is Lookup with the object already encoded as JSON.
func (c *Client) LookupRaw(ctx context.Context, verb string, object json.RawMessage) (Result, error) {
	return c.LookupRawAt(ctx, time.Time{}, verb, object)
}

// LookupRawAt is LookupRaw for a caller that has just read the clock
// (to time the lookup): the cache's freshness check takes now instead of
// reading it again (time.Now is 47 ns on the benchmark machine, an
// eighth of BenchmarkDovecotRemoteCached); a zero now: the clock is read.
func (c *Client) LookupRawAt(ctx context.Context, now time.Time, verb string, object json.RawMessage) (Result, error) {
	// The body is built on the stack: a cache hit needs it only for its
	// digest. What a miss keeps (the flight key, the request) is a copy.
	var stack [256]byte
	body := EncodeRequest(stack[:0], verb, object)
	if IsUncached(ctx) {
		return c.lookupUncached(ctx, verb, slices.Clone(body))
	}
	if c.opts.Cache == nil {
		return c.lookupFill(ctx, "", verb, slices.Clone(body))
	}
	digest := cacheDigest(body)
	if r, ok := c.cacheHit(&digest, now); ok {
		return r, nil
	}
	return c.lookupFill(ctx, string(digest[:]), verb, slices.Clone(body))
}

// LookupObject is LookupRaw for an object of strings: a cache hit is
// found from a digest of verb and the strings (objectDigest), and the
// request's JSON is built only when the backend is asked. A lookup made
// through both LookupObject and LookupRaw is two cache entries.
func (c *Client) LookupObject(ctx context.Context, verb string, o Object) (Result, error) {
	return c.LookupObjectAt(ctx, time.Time{}, verb, o)
}

// LookupObjectAt is LookupObject at now, as LookupRawAt.
func (c *Client) LookupObjectAt(ctx context.Context, now time.Time, verb string, o Object) (Result, error) {
	uncached := IsUncached(ctx)
	var key string
	if c.opts.Cache != nil && !uncached {
		digest := objectDigest(verb, o)
		if r, ok := c.cacheHit(&digest, now); ok {
			return r, nil
		}
		key = string(digest[:])
	}
	body := make([]byte, 0, len(verb)+len(o.v[0])+len(o.v[1])+64)
	body = append(o.AppendJSON(appendRequestHead(body, verb)), '}')
	if uncached {
		return c.lookupUncached(ctx, verb, body)
	}
	return c.lookupFill(ctx, key, verb, body)
}

// cacheHit looks digest up in the cache, at now (zero: the clock is
// read), and counts the hit or miss.
func (c *Client) cacheHit(digest *[sha256.Size]byte, now time.Time) (Result, bool) {
	// A hit reads the map through a conversion the compiler keeps off the
	// heap: the key string is made only on a miss, to be kept.
	if now.IsZero() {
		now = time.Now()
	}
	if r, ok := c.opts.Cache.get(string(digest[:]), now); ok {
		c.obs.CacheEvent("hit")
		return r, true
	}
	c.obs.CacheEvent("miss")
	return Result{}, false
}

// lookupFill asks the backend for body, which it keeps, once for every
// identical lookup in flight, and caches the answer under key ("": no
// cache), or answers from a stale entry when the backend fails.
func (c *Client) lookupFill(ctx context.Context, key, verb string, body []byte) (Result, error) {
	// Timeout is applied by the flight group, after the cache: a hit needs
	// no timer (creating one cost 40% of a hit, BenchmarkLookupCached), and
	// a leader needs only the one on the request's own context.
	res, pol, err := c.flight.do(ctx, c.opts.Timeout, string(body), func(ctx context.Context) (Result, cachePolicy, error) {
		return c.fetch(ctx, verb, body)
	})
	if c.opts.Cache != nil {
		now := time.Now()
		if err != nil {
			if r, ok := c.opts.Cache.stale(key, now); ok {
				c.obs.CacheEvent("stale")
				r.Stale = true
				return r, nil
			}
			return Result{}, err
		}
		c.opts.Cache.put(key, res, pol, now)
	}
	return res, err
}

// EncodeRequest appends {"Verb":verb,"Object":object} to dst.
func EncodeRequest(dst []byte, verb string, object json.RawMessage) []byte {
	return append(append(appendRequestHead(dst, verb), object...), '}')
}

// appendRequestHead appends a request up to its object.
func appendRequestHead(dst []byte, verb string) []byte {
	dst = append(dst, `{"Verb":`...)
	dst = AppendJSONString(dst, verb)
	return append(dst, `,"Object":`...)
}

// AppendJSONString appends s as a JSON string, byte for byte as
// encoding/json's Marshal writes it (FuzzAppendJSONString): invalid UTF-8
// becomes U+FFFD, <, > and & are escaped.
//
// Complexity: encoding/json's escaping rules, one case each, on every
// request's hot path.
func AppendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		// Runs of bytes that need no escaping (a whole key, usually) are
		// copied at once.
		j := i
		for j < len(s) && jsonSafe[s[j]] {
			j++
		}
		dst = append(dst, s[i:j]...)
		if i = j; i == len(s) {
			break
		}
		b := s[i]
		if b < utf8.RuneSelf {
			switch {
			case b == '"' || b == '\\':
				dst = append(dst, '\\', b)
			case b == '\n':
				dst = append(dst, '\\', 'n')
			case b == '\r':
				dst = append(dst, '\\', 'r')
			case b == '\t':
				dst = append(dst, '\\', 't')
			case b == '\b':
				dst = append(dst, '\\', 'b')
			case b == '\f':
				dst = append(dst, '\\', 'f')
			case b < 0x20 || b == '<' || b == '>' || b == '&':
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
			default:
				dst = append(dst, b)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// JSONPlain reports whether AppendJSONString copies b as it is: ASCII
// other than controls, '"', '\\' and encoding/json's HTML escapes. A
// caller that checked every byte of a string with it may copy the string
// between quotes instead of encoding it.
func JSONPlain(b byte) bool { return jsonSafe[b] }

// jsonSafe is JSONPlain's table.
var jsonSafe = func() (t [256]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
	}
	return t
}()

// backend is one RemoteURL with its failover state.
type backend struct {
	base string
	host string
	// auth is the Authorization header of a URL with user:password, as
	// http.Client would send it (requests go to the transport directly).
	auth []string

	// h1 is the in-goroutine transport's pool for this URL (nil: none,
	// net/http serves it); heads are its request heads by verb.
	h1      *h1Host
	heads   atomic.Pointer[map[string]string]
	headsMu sync.Mutex

	mu        sync.Mutex
	downUntil time.Time
}

func (b *backend) available(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !now.Before(b.downUntil)
}

func (b *backend) markDown(until time.Time) {
	b.mu.Lock()
	b.downUntil = until
	b.mu.Unlock()
}

// fetch tries the backends in order. A request moves on to the next backend
// only when no byte of a response was received and, for a non-idempotent
// verb, the request was not fully sent.
func (c *Client) fetch(ctx context.Context, verb string, body []byte) (Result, cachePolicy, error) {
	now := time.Now()
	order := make([]*backend, 0, len(c.backends))
	var resting []*backend
	for _, b := range c.backends {
		if b.available(now) {
			order = append(order, b)
		} else {
			resting = append(resting, b)
		}
	}
	avail := len(order)
	// Backends backing off come last, in order: when every other one fails
	// before answering, trying one that may have recovered beats failing
	// the lookup untried.
	order = append(order, resting...)
	idempotent := !c.unsafe[verb]
	var lastErr error
	for i, b := range order {
		var budget time.Duration
		if idempotent && i < len(order)-1 {
			budget = c.attemptBudget(ctx, avail-i, len(order)-i)
		}
		res, pol, err := c.exchange(ctx, b, verb, body, budget)
		if err == nil {
			b.markDown(time.Time{})
			return res, pol, nil
		}
		lastErr = err
		var re *Error
		if !errors.As(err, &re) || !re.BeforeResponse {
			return Result{}, cachePolicy{}, err
		}
		// No byte of a response: refused, reset, or silent until a
		// deadline. Skip the URL for a while, unless the lookup itself was
		// given up by its callers (that says nothing about the backend;
		// flightGroup keeps a deadline as the cause when they ran out of
		// time).
		if len(c.backends) > 1 && !errors.Is(context.Cause(ctx), context.Canceled) {
			b.markDown(time.Now().Add(c.opts.FailoverBackoff))
		}
		if ctx.Err() != nil || (re.sent && !idempotent) {
			return Result{}, cachePolicy{}, err
		}
	}
	return Result{}, cachePolicy{}, lastErr
}

// attemptBudget is how long one attempt may wait for a response when
// other URLs are left: AttemptTimeout, or an even share of what is left
// of the lookup's deadline among the available URLs left (all URLs left
// when none is available). 0 means no bound of its own.
func (c *Client) attemptBudget(ctx context.Context, availLeft, left int) time.Duration {
	if c.opts.AttemptTimeout > 0 {
		return c.opts.AttemptTimeout
	}
	dl, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	n := availLeft
	if n <= 0 {
		n = left
	}
	if n <= 1 {
		return 0
	}
	return max(time.Until(dl)/time.Duration(n), time.Millisecond)
}

// reply is the backend's JSON envelope.
type reply struct {
	Status *string         `json:"Status"`
	Data   json.RawMessage `json:"Data"`
}

func (c *Client) exchange(ctx context.Context, b *backend, verb string, body []byte, budget time.Duration) (Result, cachePolicy, error) {
	start := time.Now()
	res, pol, err := c.roundTrip(ctx, b, verb, body, budget)
	c.obs.BackendDone(verb, time.Since(start), err)
	return res, pol, err
}

// errAttemptTimeout and errConnectTimeout end one attempt, not the lookup.
var (
	errAttemptTimeout = errors.New("no response within the attempt's share of Timeout")
	errConnectTimeout = errors.New("no connection within ConnectTimeout")
)

// roundTrip is one attempt at backend b. budget, when positive, bounds
// the wait for the first response byte; ConnectTimeout bounds getting a
// connection. Both only cancel this attempt's context.
func (c *Client) roundTrip(ctx context.Context, b *backend, verb string, body []byte, budget time.Duration) (Result, cachePolicy, error) {
	if b.h1 != nil {
		if head, ok := b.h1Head(verb); ok {
			return c.h1RoundTrip(ctx, b, head, verb, body, budget)
		}
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	connTimer := time.AfterFunc(c.connect, func() { cancel(errConnectTimeout) })
	defer connTimer.Stop()
	var respTimer *time.Timer
	if budget > 0 {
		respTimer = time.AfterFunc(budget, func() { cancel(errAttemptTimeout) })
		defer respTimer.Stop()
	}
	// BeforeResponse must mean what it says, no byte of a response
	// arrived, and the error alone does not tell: a refused dial is a
	// *net.OpError "dial", but a backend that resets the connection before
	// the status line shows as a "read" error or a bare EOF.
	var answered, sent atomic.Bool
	tctx := httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { connTimer.Stop() },
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				sent.Store(true)
			}
		},
		GotFirstResponseByte: func() {
			answered.Store(true)
			// The backend is alive and answering: the rest of Timeout is
			// its, as with a single URL.
			if respTimer != nil {
				respTimer.Stop()
			}
		},
	})
	req, err := c.newRequest(tctx, b, verb, body)
	if err != nil {
		return Result{}, cachePolicy{}, err
	}
	// The transport directly: http.Client would only add a copy of the
	// header for redirects (which are never followed, CheckRedirect). Its
	// *url.Error is kept, so the logs read as before.
	resp, err := c.transport.RoundTrip(req)
	if err != nil {
		err = &url.Error{Op: "Post", URL: urlWithoutPassword(req.URL), Err: err}
		e := c.transportError(actx, err, !answered.Load())
		e.sent = sent.Load()
		return Result{}, cachePolicy{}, e
	}
	// What http.Client would check of an Options.Transport's answer.
	if resp == nil {
		return Result{}, cachePolicy{}, &Error{Kind: KindTransport, Reason: "backend unreachable", Err: errors.New("transport returned no response")}
	}
	if resp.Body == nil {
		resp.Body = http.NoBody
	}
	defer resp.Body.Close()
	return c.readReply(actx, resp)
}

// newRequest is the POST of body to backend b's verb, with its headers.
func (c *Client) newRequest(ctx context.Context, b *backend, verb string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.base+url.PathEscape(verb), bytes.NewReader(body))
	if err != nil {
		return nil, &Error{Kind: KindTransport, Reason: "cannot build backend request", Err: err}
	}
	// Shared, never modified: net/http only reads a request's header.
	req.Header["Content-Type"] = headerJSON
	req.Header["Accept"] = headerJSON
	if b.auth != nil {
		req.Header["Authorization"] = b.auth
	}
	if !c.unsafe[verb] {
		// A lookup is a read, so it is safe to send twice. Saying so lets
		// net/http resend it on a fresh connection when a reused
		// keep-alive connection turns out dead before any response byte
		// (the backend closed it just as the request went out): a stale
		// connection must not fail the lookup nor count as a backend
		// failure. A nil value marks the request idempotent without
		// sending the header (net/http Transport documentation). A
		// non-idempotent verb goes without: net/http then resends it only
		// when it knows nothing was written.
		req.Header["X-Idempotency-Key"] = nil
	}
	return req, nil
}

// readReply checks and decodes a response: a 2xx status, a body within
// MaxReplySize, a valid reply envelope. actx is the attempt's context (a
// body cut by its end is a timeout).
func (c *Client) readReply(actx context.Context, resp *http.Response) (Result, cachePolicy, error) {
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Drain a little so the connection can be reused, but never much.
		_, _ = io.CopyN(io.Discard, resp.Body, 4096)
		return Result{}, cachePolicy{}, &Error{Kind: KindHTTP, Reason: "backend HTTP status " + strconv.Itoa(resp.StatusCode)}
	}
	if resp.ContentLength > c.maxReply {
		return Result{}, cachePolicy{}, &Error{Kind: KindBody, Reason: "backend reply too large"}
	}
	data, err := readBody(resp, c.maxReply)
	if err != nil {
		if actx.Err() != nil {
			return Result{}, cachePolicy{}, &Error{Kind: KindTimeout, Reason: "backend timeout", Err: err}
		}
		return Result{}, cachePolicy{}, &Error{Kind: KindBody, Reason: "backend reply truncated", Err: err}
	}
	if int64(len(data)) > c.maxReply {
		return Result{}, cachePolicy{}, &Error{Kind: KindBody, Reason: "backend reply too large"}
	}
	res, err := ParseReply(data)
	if err != nil {
		return Result{}, cachePolicy{}, err
	}
	return res, parseCachePolicy(resp.Header, time.Now()), nil
}

// readBody reads a reply body of at most limit bytes, and limit+1 bytes
// of a longer one (the caller refuses it). A body of known length is read
// into a buffer of that size in one go, rather than grown from 512 bytes.
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	if n := resp.ContentLength; n >= 0 && n <= limit {
		buf := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return buf, nil
	}
	return io.ReadAll(io.LimitReader(resp.Body, limit+1))
}

// urlWithoutPassword is u as http.Client names it in its errors: the
// password, if any, as "***".
func urlWithoutPassword(u *url.URL) string {
	if _, ok := u.User.Password(); ok {
		return strings.Replace(u.String(), u.User.String()+"@", u.User.Username()+":***@", 1)
	}
	return u.String()
}

// headerJSON is the value of the requests' Content-Type and Accept.
var headerJSON = []string{"application/json"}

// ParseReply decodes a backend reply body.
func ParseReply(data []byte) (Result, error) {
	if st, has, raw, ok := fastReply(data); ok {
		if !has {
			return Result{}, &Error{Kind: KindStatus, Reason: "backend reply has no Status"}
		}
		var d json.RawMessage
		if raw != nil {
			d = bytes.Clone(raw) // data is the caller's buffer
		}
		switch string(st) {
		case "OK":
			return Result{Status: Found, Data: d}, nil
		case "KO":
			return Result{Status: NotFound, Data: d}, nil
		}
		return Result{}, &Error{Kind: KindStatus, Reason: "backend Status is neither OK nor KO"}
	}
	return parseReplySlow(data)
}

// parseReplySlow is ParseReply through encoding/json.
func parseReplySlow(data []byte) (Result, error) {
	var r reply
	if err := json.Unmarshal(data, &r); err != nil {
		return Result{}, &Error{Kind: KindJSON, Reason: "backend reply is not valid JSON"}
	}
	if r.Status == nil {
		return Result{}, &Error{Kind: KindStatus, Reason: "backend reply has no Status"}
	}
	switch *r.Status {
	case "OK":
		return Result{Status: Found, Data: r.Data}, nil
	case "KO":
		return Result{Status: NotFound, Data: r.Data}, nil
	}
	return Result{}, &Error{Kind: KindStatus, Reason: "backend Status is neither OK nor KO"}
}

// transportError classifies an error from the HTTP exchange; ctx is the
// attempt's context and before says no response byte was received.
func (c *Client) transportError(ctx context.Context, err error, before bool) *Error {
	var cause error
	if ctx.Err() != nil {
		cause = context.Cause(ctx)
	}
	return c.failure(cause, err, before)
}

// failure classifies an error from the HTTP exchange: cause is why the
// attempt was given up (nil: it was not), before says no response byte
// was received.
func (c *Client) failure(cause, err error, before bool) *Error {
	if cause != nil {
		reason := "backend timeout"
		switch cause {
		case errConnectTimeout:
			reason = "backend connect timeout"
		case errAttemptTimeout:
			reason = "backend silent, trying the next URL"
		}
		return &Error{Kind: KindTimeout, Reason: reason, Err: err, BeforeResponse: before}
	}
	// tlsFailure (tls.go) names the cause: pin, ocsp-*, unknown-ca,
	// name-mismatch, cert-expired, verify, handshake, alert. Once a
	// response has begun, a TLS error breaks it off like a reset: the
	// handshake was not refused.
	if cause, reason, ok := tlsFailure(err); ok && before {
		c.obs.TLSFailure(cause)
		return &Error{Kind: KindTLS, Reason: reason, Err: err, BeforeResponse: true}
	}
	return &Error{Kind: KindTransport, Reason: "backend unreachable", Err: err, BeforeResponse: before}
}

// TLSError is a handshake refusal decided by shitenno's own checks (pins,
// OCSP). Cause is a short label for metrics and logs.
type TLSError struct {
	Cause  string
	Detail string
}

func (e *TLSError) Error() string { return "tls " + e.Cause + ": " + e.Detail }
