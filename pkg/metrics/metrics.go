// Package metrics holds one daemon's Prometheus metrics and its health
// endpoints: /healthz (the process is alive and serving), /readyz (the
// backend answered recently) and /metrics (Prometheus text format).
//
// It knows nothing of postfix, dovecot, nginx or the backend client: the
// daemon feeds it events. *Metrics implements remote.Observer by shape
// (BackendDone, CacheEvent, TLSFailure) without importing pkg/remote.
//
// Label values that come from peers (verbs, causes) are cleaned and
// bounded in number, so a hostile dovecot dict key cannot grow the
// registry without limit.
package metrics

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes every shitenno metric.
const Namespace = "shitenno"

// Lookup outcomes, the values of the outcome label.
const (
	OutcomeFound    = "found"
	OutcomeNotFound = "not_found"
	OutcomeFailed   = "failed"
)

// OtherLabel replaces a label value once too many distinct values were
// seen, or when the value is unusable.
const OtherLabel = "_other"

// Bounds on label values.
const (
	maxVerbs      = 64
	maxCauses     = 32
	maxLabelBytes = 64
	// maxSeries bounds Metrics.series: every listener kind, each verb
	// the label set admits plus OtherLabel, three outcomes.
	maxSeries = 8 * (maxVerbs + 1) * 3
)

// latencyBuckets span a local backend answering from memory (1 ms) to
// the 30 s ceiling of Timeout.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Metrics is one process's registry and the state behind /readyz. The
// zero value is not usable; call New. All methods are safe for concurrent
// use and cheap enough for the lookup path.
type Metrics struct {
	reg *prometheus.Registry

	lookups        *prometheus.CounterVec
	backendSeconds *prometheus.HistogramVec
	lookupSeconds  *prometheus.HistogramVec
	// backendOKObs and backendErrObs are backendSeconds' two series,
	// resolved once: BackendDone runs on every backend exchange.
	backendOKObs, backendErrObs prometheus.Observer
	cacheHits                   prometheus.Counter
	cacheMisses                 prometheus.Counter
	cacheStale                  prometheus.Counter
	conns                       prometheus.Gauge
	connsTotal                  prometheus.Counter
	connsRefused                *prometheus.CounterVec
	tlsFailures                 *prometheus.CounterVec
	reloads                     *prometheus.CounterVec
	reloadOK                    prometheus.Gauge

	verbs  *labelSet
	causes *labelSet

	// series holds the lookups_total series already resolved, by
	// seriesKey: Lookup runs on every request, and resolving a series
	// (cleaning the verb, a locked label-set read, hashing three label
	// values, the vector's locked map read) cost more than the rest of a
	// cache hit's bookkeeping. nSeries bounds it: past maxSeries, Lookup
	// resolves every time, as before.
	series  sync.Map // seriesKey → prometheus.Counter
	nSeries atomic.Int32

	// Unix nanoseconds of the last successful and failed backend exchange.
	lastOK, lastFail atomic.Int64
	// lastFailed is whether the most recent exchange failed.
	lastFailed atomic.Bool
	now        func() time.Time
}

// New builds the registry for one daemon. daemon ("postfix", …) and
// version end up in shitenno_build_info.
func New(daemon, version string) *Metrics {
	m := &Metrics{
		reg:    prometheus.NewRegistry(),
		verbs:  newLabelSet(maxVerbs),
		causes: newLabelSet(maxCauses),
		now:    time.Now,
	}
	m.lookups = counterVec("lookups_total",
		"Lookups answered, by listener (socketmap, sasl, policy, tcptable, dict, authhttp), verb and outcome (found, not_found, failed).",
		"listener", "verb", "outcome")
	m.lookupSeconds = histogramVec("lookup_duration_seconds",
		"Time to answer a lookup from the backend or the cache, by listener.", "listener")
	m.backendSeconds = histogramVec("backend_request_duration_seconds",
		"Duration of HTTP exchanges with the backend, by result (ok, error).", "result")
	m.cacheHits = counter("cache_hits_total", "Lookups answered from the reply cache.")
	m.cacheMisses = counter("cache_misses_total", "Lookups the reply cache could not answer.")
	m.cacheStale = counter("cache_stale_served_total",
		"Expired cached replies served because the backend failed (stale-if-error).")
	m.conns = gauge("client_connections", "Open client connections (postfix, dovecot or nginx).")
	m.connsTotal = counter("client_connections_total", "Client connections accepted.")
	m.connsRefused = counterVec("client_connections_refused_total",
		"Client connections closed at once because the listener had MaxConnections open.", "listener")
	m.tlsFailures = counterVec("backend_tls_failures_total", "Refused TLS handshakes with the backend, by cause.", "cause")
	m.reloads = counterVec("config_reloads_total", "Configuration reloads (SIGHUP), by result (ok, error).", "result")
	m.reloadOK = gauge("config_last_reload_successful",
		"1 if the last configuration reload succeeded (or none happened), 0 if it failed.")
	m.reloadOK.Set(1)
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help:        "Always 1; the labels name the daemon and its version.",
		ConstLabels: prometheus.Labels{"daemon": daemon, "version": version},
	})
	info.Set(1)
	m.reg.MustRegister(m.lookups, m.lookupSeconds, m.backendSeconds, m.cacheHits, m.cacheMisses, m.cacheStale,
		m.conns, m.connsTotal, m.connsRefused, m.tlsFailures, m.reloads, m.reloadOK, info,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Show both results from the start, so rate() works before the
	// first failure.
	for _, r := range []string{"ok", "error"} {
		m.backendSeconds.WithLabelValues(r)
		m.reloads.WithLabelValues(r)
	}
	m.backendOKObs, m.backendErrObs = m.backendSeconds.WithLabelValues("ok"), m.backendSeconds.WithLabelValues("error")
	return m
}

// counter, gauge and counterVec declare a shitenno_ metric.
func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
}

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
}

// histogramVec declares a shitenno_ latency histogram (latencyBuckets).
func histogramVec(name, help string, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: name, Help: help, Buckets: latencyBuckets,
	}, labels)
}

// Registry is the registry /metrics serves; the daemon may add its own
// collectors (log drops, say) with RegisterCounterFunc or directly.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// RegisterCounterFunc exposes a counter kept elsewhere, such as the
// logger's dropped-record count. name gets the shitenno_ prefix.
func (m *Metrics) RegisterCounterFunc(name, help string, f func() float64) error {
	return m.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: Namespace, Name: name, Help: help,
	}, f))
}

// RegisterGaugeFunc exposes a gauge computed on scrape, such as the
// number of networks the brute-force limiter blocks now.
func (m *Metrics) RegisterGaugeFunc(name, help string, f func() float64) error {
	return m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace, Name: name, Help: help,
	}, f))
}

// Lookup counts one answered lookup of a listener (its kind, a fixed
// set). outcome is OutcomeFound, OutcomeNotFound or OutcomeFailed;
// anything else counts as failed.
func (m *Metrics) Lookup(listener, verb, outcome string) {
	switch outcome {
	case OutcomeFound, OutcomeNotFound, OutcomeFailed:
	default:
		outcome = OutcomeFailed
	}
	k := seriesKey{listener, verb, outcome}
	if c, ok := m.series.Load(k); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c := m.lookups.WithLabelValues(listener, m.verbs.label(verb), outcome)
	c.Inc()
	if len(verb) <= maxLabelBytes && m.nSeries.Load() < maxSeries {
		// A copy: verb may be a slice of a large request.
		k.verb = strings.Clone(verb)
		if _, loaded := m.series.LoadOrStore(k, c); !loaded {
			m.nSeries.Add(1)
		}
	}
}

// seriesKey names one lookups_total series by what Lookup is given: the
// verb as sent, before cleaning.
type seriesKey struct{ listener, verb, outcome string }

// LookupDuration returns the observer of one listener's lookup times
// (listener is its kind, a fixed set).
func (m *Metrics) LookupDuration(listener string) func(time.Duration) {
	h := m.lookupSeconds.WithLabelValues(listener)
	return func(d time.Duration) { h.Observe(d.Seconds()) }
}

// ConnRefused counts a connection closed because listener (a listener
// kind named by the daemon, not by a peer) was at its MaxConnections.
func (m *Metrics) ConnRefused(listener string) {
	m.connsRefused.WithLabelValues(listener).Inc()
}

// ConnDelta adds delta (+1 on accept, -1 on close) to the open client
// connections.
func (m *Metrics) ConnDelta(delta int) {
	m.conns.Add(float64(delta))
	if delta > 0 {
		m.connsTotal.Add(float64(delta))
	}
}

// BackendDone records one HTTP exchange with the backend (remote.Observer).
// Its result also feeds /readyz. A lookup abandoned by its client
// (context.Canceled) says nothing about the backend and only counts as an
// error in the histogram.
func (m *Metrics) BackendDone(verb string, d time.Duration, err error) {
	obs := m.backendOKObs
	if err != nil {
		obs = m.backendErrObs
	}
	obs.Observe(d.Seconds())
	switch {
	case err == nil:
		m.backendOK()
	case !errors.Is(err, context.Canceled):
		m.backendFailed()
	}
}

func (m *Metrics) backendOK() {
	m.lastOK.Store(m.now().UnixNano())
	m.lastFailed.Store(false)
}

func (m *Metrics) backendFailed() {
	m.lastFail.Store(m.now().UnixNano())
	m.lastFailed.Store(true)
}

// CacheEvent counts "hit", "miss" or "stale" (remote.Observer).
func (m *Metrics) CacheEvent(kind string) {
	switch kind {
	case "hit":
		m.cacheHits.Inc()
	case "miss":
		m.cacheMisses.Inc()
	case "stale":
		m.cacheStale.Inc()
	}
}

// TLSFailure counts a refused backend handshake by cause (remote.Observer).
func (m *Metrics) TLSFailure(cause string) {
	m.tlsFailures.WithLabelValues(m.causes.label(cause)).Inc()
}

// Reload records the result of a configuration reload.
func (m *Metrics) Reload(err error) {
	if err != nil {
		m.reloads.WithLabelValues("error").Inc()
		m.reloadOK.Set(0)
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
	m.reloadOK.Set(1)
}

// labelSet admits at most max distinct label values; later newcomers
// become OtherLabel.
type labelSet struct {
	mu   sync.RWMutex
	max  int
	seen map[string]struct{}
}

func newLabelSet(max int) *labelSet {
	return &labelSet{max: max, seen: make(map[string]struct{})}
}

func (s *labelSet) label(v string) string {
	v = cleanLabel(v)
	s.mu.RLock()
	_, ok := s.seen[v]
	s.mu.RUnlock()
	if ok {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[v]; ok {
		return v
	}
	if len(s.seen) >= s.max {
		return OtherLabel
	}
	s.seen[v] = struct{}{}
	return v
}

// cleanLabel makes v valid UTF-8 (the registry panics otherwise), without
// control characters, and at most maxLabelBytes long.
func cleanLabel(v string) string {
	if v == "" {
		return OtherLabel
	}
	v = strings.ToValidUTF8(v, "\uFFFD")
	v = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, v)
	if len(v) > maxLabelBytes {
		i := maxLabelBytes
		for i > 0 && !utf8.RuneStart(v[i]) {
			i--
		}
		v = v[:i]
	}
	return v
}
