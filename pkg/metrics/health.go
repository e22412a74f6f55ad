package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shitenno/shitenno/pkg/connserver"
)

// DefaultReadyWindow is how recent a successful backend exchange must be
// for /readyz to answer 200 without probing.
const DefaultReadyWindow = 30 * time.Second

// DefaultProbeTimeout bounds one readiness probe.
const DefaultProbeTimeout = 5 * time.Second

// HealthOptions configures the health endpoints.
type HealthOptions struct {
	// Alive reports whether the daemon can serve (its serve loop is not
	// wedged); nil means always. /healthz answers 503 with the error.
	Alive func() error
	// Probe checks that the backend is reachable when no lookup went to
	// it within Window; nil means no probing (see Ready).
	Probe func(context.Context) error
	// Window is how recent a backend success must be; 0 means
	// DefaultReadyWindow.
	Window time.Duration
	// ProbeTimeout bounds Probe; 0 means DefaultProbeTimeout.
	ProbeTimeout time.Duration
	// Logger receives errors of the /metrics handler; nil discards them.
	Logger *slog.Logger
}

// ErrNotReady wraps the reasons Ready gives.
var ErrNotReady = errors.New("backend not reachable")

// Health serves /healthz, /readyz and /metrics for one Metrics.
type Health struct {
	m    *Metrics
	opts HealthOptions

	probeMu sync.Mutex // one probe at a time; callers share its result
}

// NewHealth builds the health endpoints.
func (m *Metrics) NewHealth(o HealthOptions) *Health {
	if o.Window <= 0 {
		o.Window = DefaultReadyWindow
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = DefaultProbeTimeout
	}
	return &Health{m: m, opts: o}
}

// Ready decides /readyz:
//   - a backend exchange succeeded within Window: ready;
//   - otherwise, with a Probe: ready iff the probe succeeds (the result
//     counts as an exchange, so probes are at most one per Window while
//     the backend is fine);
//   - otherwise, without a Probe: not ready if an exchange failed within
//     Window or the last exchange ever seen failed; ready if idle since a
//     success or since start.
func (h *Health) Ready(ctx context.Context) error {
	if h.recentOK() {
		return nil
	}
	if h.opts.Probe != nil {
		h.probeMu.Lock()
		defer h.probeMu.Unlock()
		if h.recentOK() {
			// Another caller probed while we waited.
			return nil
		}
		pctx, cancel := context.WithTimeout(ctx, h.opts.ProbeTimeout)
		defer cancel()
		if err := h.opts.Probe(pctx); err != nil {
			h.m.backendFailed()
			return fmt.Errorf("%w: probe failed: %v", ErrNotReady, err)
		}
		h.m.backendOK()
		return nil
	}
	fail := h.m.lastFail.Load()
	now := h.m.now()
	if fail != 0 && now.Sub(time.Unix(0, fail)) <= h.opts.Window {
		return fmt.Errorf("%w: last backend exchange failed %s ago, no success since", ErrNotReady, round(now.Sub(time.Unix(0, fail))))
	}
	if h.m.lastFailed.Load() {
		return fmt.Errorf("%w: last backend exchange failed", ErrNotReady)
	}
	return nil
}

func (h *Health) recentOK() bool {
	ok := h.m.lastOK.Load()
	return ok != 0 && h.m.now().Sub(time.Unix(0, ok)) <= h.opts.Window
}

func round(d time.Duration) time.Duration { return d.Round(time.Second) }

// Handler serves /healthz, /readyz and /metrics; anything else is 404.
func (h *Health) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if h.opts.Alive != nil {
			if err := h.opts.Alive(); err != nil {
				plain(w, http.StatusServiceUnavailable, "not alive: "+err.Error())
				return
			}
		}
		plain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := h.Ready(r.Context()); err != nil {
			plain(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		plain(w, http.StatusOK, "ready")
	})
	var errLog promhttp.Logger
	if h.opts.Logger != nil {
		errLog = slogAdapter{h.opts.Logger}
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(h.m.reg, promhttp.HandlerOpts{
		ErrorLog: errLog,
		// Scrapes are cheap; a burst of them must not pile up.
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	return mux
}

func plain(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg + "\n"))
}

type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Println(v ...any) { a.l.Warn("metrics endpoint", "err", fmt.Sprint(v...)) }

// ErrServerClosed is returned by Server.Serve after Shutdown or Close.
var ErrServerClosed = errors.New("metrics: Server closed")

// Server serves the health and metrics endpoints over HTTP, shaped like
// the other shitenno servers: Serve blocks until Shutdown or Close.
type Server struct {
	hs *http.Server
}

// NewServer returns a Server for h with every limit set: a scraper or a
// probe sends small requests, and a stuck one must not hold a goroutine.
func NewServer(h http.Handler) *Server {
	return &Server{hs: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}}
}

// Serve accepts connections on l until Shutdown or Close, then returns
// ErrServerClosed; any other error is a failure of l.
func (s *Server) Serve(l net.Listener) error {
	err := s.hs.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return ErrServerClosed
	}
	return err
}

// Shutdown stops accepting and waits for requests in flight until ctx
// ends; then it closes the remaining connections and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error { return connserver.ShutdownHTTP(ctx, s.hs) }

// Close closes the listeners and every connection at once.
func (s *Server) Close() error { return s.hs.Close() }
