package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shitenno/shitenno/internal/redact"
	"github.com/shitenno/shitenno/pkg/bridge"
	"github.com/shitenno/shitenno/pkg/config"
	"github.com/shitenno/shitenno/pkg/remote"
)

// Backend is the backend client the bridges use. A reload swaps the
// client underneath (new URLs, timeout, CA pool, client certificate,
// pins) while servers keep their *Backend; lookups in flight finish on
// the client they started with.
type Backend struct {
	// cur is shared by every listener's view (forListener): a reload
	// switches them all.
	cur *atomic.Pointer[backendState]
	obs remote.Observer
	// observe, in a listener's view, is told each lookup's duration.
	observe func(time.Duration)
	trace   io.Writer // query mode: print every exchange here
	// credentials: lookups carry passwords (dovecot passdb, nginx), so
	// replies are cached only as the backend's own headers allow; the
	// configured DefaultTTL/NegativeTTL do not apply.
	credentials bool
	// unsafe are the verbs never resent once fully sent, fixed at start
	// like the servers that send them (a changed SASLVerb takes a
	// restart: until then the old one is still in use).
	unsafe []string
}

type backendState struct {
	client *remote.Client
	tls    *remote.TLSSetup
	cache  *remote.Cache
	cfg    *config.Config
}

// NewBackend makes the backend client from the configuration: TLS (CA
// pool, client certificate, SNI, pins, OCSP), reply cache and failover.
// obs receives metrics events; nil means none.
func NewBackend(cfg *config.Config, obs remote.Observer, credentials bool) (*Backend, error) {
	return newBackend(cfg, &Backend{obs: obs, credentials: credentials})
}

// newTracedBackend is NewBackend for the query subcommand: every HTTP
// exchange is printed to w with passwords redacted.
func newTracedBackend(cfg *config.Config, w io.Writer, credentials bool) (*Backend, error) {
	return newBackend(cfg, &Backend{trace: w, credentials: credentials})
}

// newBackend builds b's first client.
func newBackend(cfg *config.Config, b *Backend) (*Backend, error) {
	b.cur = new(atomic.Pointer[backendState])
	// Logins (SMTP AUTH, nginx) and policy requests may count something
	// at the backend.
	b.unsafe = []string{cfg.Postfix.SASLVerb, cfg.Postfix.PolicyVerb, bridge.NginxVerb}
	st, err := b.build(cfg, nil)
	if err != nil {
		return nil, err
	}
	b.cur.Store(st)
	return b, nil
}

// build makes a client for cfg. The reply cache of old is kept when the
// backend URLs, the TLS trust settings (remote.TLSSetup.SameTrust: CA
// pool contents, pins, ServerName, OCSP, client certificate) and the cache
// settings did not change, so a reload that only touches, say, the log
// level does not empty it, while one that changes whom to trust never
// serves replies obtained under the old trust.
func (b *Backend) build(cfg *config.Config, old *backendState) (*backendState, error) {
	ts, err := remote.NewTLS(remote.TLSOptions{
		CertPool:       cfg.CertPool,
		SystemCertPool: cfg.SystemCertPool,
		ClientCert:     cfg.ClientCert,
		ClientKey:      cfg.ClientKey,
		ServerName:     cfg.ServerName,
		HPKP:           cfg.HPKP,
		OCSP:           cfg.OCSP,
	})
	if err != nil {
		return nil, tlsConfigError(cfg, err)
	}
	var cache *remote.Cache
	if old != nil && old.cfg.Cache == cfg.Cache && slices.Equal(old.cfg.RemoteURL, cfg.RemoteURL) && old.tls.SameTrust(ts) {
		cache = old.cache
	} else {
		ttl, negTTL := cfg.Cache.DefaultTTL.Duration, cfg.Cache.NegativeTTL.Duration
		if b.credentials {
			ttl, negTTL = 0, 0
		}
		cache = remote.NewBoundedCache(cfg.Cache.MaxEntries, cfg.Cache.MaxBytes, ttl, negTTL)
	}
	o := remote.Options{
		URLs:               cfg.RemoteURL,
		Timeout:            cfg.Timeout.Duration,
		ConnectTimeout:     cfg.ConnectTimeout.Duration,
		AttemptTimeout:     cfg.AttemptTimeout.Duration,
		NonIdempotentVerbs: b.unsafe,
		MaxReplySize:       cfg.MaxReplySize,
		FailoverBackoff:    cfg.FailoverBackoff.Duration,
		TLS:                ts.Config(),
		Cache:              cache,
		Observer:           b.obs,
	}
	if b.trace != nil {
		o.Transport = &traceTransport{next: remote.NewTransport(o.TLS, 0), w: b.trace, max: cfg.MaxReplySize}
	}
	c, err := remote.New(o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.File, err)
	}
	return &backendState{client: c, tls: ts, cache: cache, cfg: cfg}, nil
}

// tlsConfigError locates a TLS setting remote could not use at the line
// of its key (the TLSOptions fields are named like the keys).
func tlsConfigError(cfg *config.Config, err error) error {
	var oe *remote.OptionError
	if !errors.As(err, &oe) {
		return fmt.Errorf("%s: %w", cfg.File, err)
	}
	return cfg.KeyError(oe.Option, "%s", strings.TrimLeft(oe.Detail, " :"))
}

// Reload builds a client for cfg and switches to it. On error the old
// client stays. The old client's idle connections are closed once
// lookups in flight on it had the time to finish.
func (b *Backend) Reload(cfg *config.Config) error {
	st, err := b.prepare(cfg)
	if err != nil {
		return err
	}
	b.commit(st)
	return nil
}

// prepare builds the client Reload would switch to, without switching.
func (b *Backend) prepare(cfg *config.Config) (*backendState, error) {
	return b.build(cfg, b.cur.Load())
}

// commit switches to st.
func (b *Backend) commit(st *backendState) {
	old := b.cur.Swap(st)
	time.AfterFunc(old.cfg.Timeout.Duration+time.Second, old.client.CloseIdle)
}

// forListener returns a view of b for one listener: the same client,
// cache and reloads, with each lookup's duration (cache hits included:
// the latency the listener's clients see) told to observe.
func (b *Backend) forListener(observe func(time.Duration)) *Backend {
	v := *b
	v.observe = observe
	return &v
}

// Lookup implements bridge.Backend.
func (b *Backend) Lookup(ctx context.Context, verb string, object any) (remote.Result, error) {
	return b.timed(func(c *remote.Client, _ time.Time) (remote.Result, error) { return c.Lookup(ctx, verb, object) })
}

// LookupRaw implements bridge.Backend.
func (b *Backend) LookupRaw(ctx context.Context, verb string, object json.RawMessage) (remote.Result, error) {
	return b.timed(func(c *remote.Client, now time.Time) (remote.Result, error) {
		return c.LookupRawAt(ctx, now, verb, object)
	})
}

// LookupObject implements bridge.Backend.
func (b *Backend) LookupObject(ctx context.Context, verb string, object remote.Object) (remote.Result, error) {
	return b.timed(func(c *remote.Client, now time.Time) (remote.Result, error) {
		return c.LookupObjectAt(ctx, now, verb, object)
	})
}

// timed runs one lookup on the client in force, timed for this view's
// listener when it has one; f gets the start time (zero when untimed)
// for the cache to use. f does not escape: no allocation per lookup.
func (b *Backend) timed(f func(*remote.Client, time.Time) (remote.Result, error)) (remote.Result, error) {
	c := b.cur.Load().client
	if b.observe == nil {
		return f(c, time.Time{})
	}
	start := time.Now()
	res, err := f(c, start)
	b.observe(time.Since(start))
	return res, err
}

// CloseIdle closes idle backend connections.
func (b *Backend) CloseIdle() { b.cur.Load().client.CloseIdle() }

// Config returns the configuration the client in use was built from: a
// reload changes it, so servers read settings from here per request.
func (b *Backend) Config() *config.Config { return b.cur.Load().cfg }

// TLS returns the TLS setup in use.
func (b *Backend) TLS() *remote.TLSSetup { return b.cur.Load().tls }

// Probe checks that a backend is reachable, for /readyz when no lookup
// went to it lately: a TCP connection for http URLs, a full TLS handshake
// (trust, name, pins, OCSP) for https ones. The first URL that answers
// wins. It sends no request: the contract defines no health verb.
func (b *Backend) Probe(ctx context.Context) error {
	st := b.cur.Load()
	var lastErr error
	for _, raw := range st.cfg.RemoteURL {
		u, err := url.Parse(raw)
		if err != nil {
			lastErr = err
			continue
		}
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		addr := net.JoinHostPort(u.Hostname(), port)
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			lastErr = err
			continue
		}
		if u.Scheme == "https" {
			conf := st.tls.Config()
			if conf.ServerName == "" {
				conf.ServerName = u.Hostname()
			}
			tc := tls.Client(c, conf)
			err = tc.HandshakeContext(ctx)
			tc.Close()
			if err != nil {
				lastErr = fmt.Errorf("%s: %w", addr, err)
				continue
			}
			return nil
		}
		c.Close()
		return nil
	}
	return lastErr
}

// traceTransport prints each exchange for the query subcommand, with
// password-like JSON members redacted.
type traceTransport struct {
	next http.RoundTripper
	w    io.Writer
	max  int64
}

func (t *traceTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.GetBody != nil {
		if rc, err := req.GetBody(); err == nil {
			body, _ = io.ReadAll(io.LimitReader(rc, 1<<20))
			rc.Close()
		}
	}
	fmt.Fprintf(t.w, "> %s %s\n> %s\n", req.Method, redact.URL(req.URL.String()), redactJSON(body))
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		fmt.Fprintf(t.w, "< error after %s: %v\n", time.Since(start).Round(time.Microsecond), err)
		return nil, err
	}
	max := t.max
	if max <= 0 {
		max = 1 << 20
	}
	data, rerr := io.ReadAll(io.LimitReader(resp.Body, max+1))
	resp.Body.Close()
	fmt.Fprintf(t.w, "< %s %s (%s)\n", resp.Proto, resp.Status, time.Since(start).Round(time.Microsecond))
	if rerr != nil {
		fmt.Fprintf(t.w, "< body error: %v\n", rerr)
	}
	fmt.Fprintf(t.w, "< %s\n", redactJSON(data))
	// Hand the client exactly what was read; it applies its own limits.
	resp.Body = io.NopCloser(&errReader{data: data, err: rerr})
	return resp, nil
}

// errReader replays data, then err (or EOF).
type errReader struct {
	data []byte
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		return 0, io.EOF
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}
