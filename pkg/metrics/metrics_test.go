package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	shtest "github.com/shitenno/shitenno/internal/testutil"
	"github.com/shitenno/shitenno/pkg/remote"
)

// Metrics must plug into the backend client as its Observer.
var _ remote.Observer = (*Metrics)(nil)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTest(t *testing.T) (*Metrics, *clock) {
	t.Helper()
	m := New("postfix", "test")
	c := &clock{t: time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)}
	m.now = c.now
	return m, c
}

func TestLookupsCounter(t *testing.T) {
	m, _ := newTest(t)
	m.Lookup("socketmap", "virtual", OutcomeFound)
	m.Lookup("socketmap", "virtual", OutcomeFound)
	m.Lookup("socketmap", "virtual", OutcomeNotFound)
	m.Lookup("socketmap", "passdb", OutcomeFailed)
	m.Lookup("socketmap", "passdb", "weird")
	want := `
# HELP shitenno_lookups_total Lookups answered, by listener (socketmap, sasl, policy, tcptable, dict, authhttp), verb and outcome (found, not_found, failed).
# TYPE shitenno_lookups_total counter
shitenno_lookups_total{listener="socketmap",outcome="failed",verb="passdb"} 2
shitenno_lookups_total{listener="socketmap",outcome="found",verb="virtual"} 2
shitenno_lookups_total{listener="socketmap",outcome="not_found",verb="virtual"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "shitenno_lookups_total"); err != nil {
		t.Error(err)
	}
}

// TestLookupSeriesCacheBounded: the resolved-series cache of Lookup
// keeps counting right once full, and holds neither more than maxSeries
// entries nor a verb longer than a label, whatever verbs peers send.
func TestLookupSeriesCacheBounded(t *testing.T) {
	m, _ := newTest(t)
	long := strings.Repeat("v", 10000)
	for i := range 3 * maxSeries {
		m.Lookup("dict", fmt.Sprintf("verb%d", i), OutcomeFound)
		m.Lookup("dict", long+fmt.Sprint(i), OutcomeNotFound)
	}
	m.Lookup("dict", "verb1", OutcomeFound)
	n := 0
	m.series.Range(func(k, _ any) bool {
		n++
		if v := k.(seriesKey).verb; len(v) > maxLabelBytes {
			t.Errorf("cached a %d-byte verb", len(v))
			return false
		}
		return true
	})
	if n > maxSeries || int(m.nSeries.Load()) != n {
		t.Errorf("%d cached series (counter %d), want at most %d", n, m.nSeries.Load(), maxSeries)
	}
	if got := testutil.ToFloat64(m.lookups.WithLabelValues("dict", "verb1", OutcomeFound)); got != 2 {
		t.Errorf("verb1 counted %v, want 2", got)
	}
	// The long verbs, truncated alike, take one of the label set's
	// places; the first maxVerbs-1 short ones take the others.
	want := float64(3*maxSeries - (maxVerbs - 1))
	if got := testutil.ToFloat64(m.lookups.WithLabelValues("dict", OtherLabel, OutcomeFound)); got != want {
		t.Errorf("_other found counted %v, want %v", got, want)
	}
}

func TestVerbLabelsBounded(t *testing.T) {
	m, _ := newTest(t)
	for i := range 1000 {
		m.Lookup("socketmap", fmt.Sprintf("verb%d", i), OutcomeFound)
	}
	m.Lookup("socketmap", "\xff\x00bad", OutcomeFound) // must not panic the registry
	m.Lookup("socketmap", "", OutcomeFound)
	n := testutil.CollectAndCount(m.lookups)
	if n > maxVerbs+1 {
		t.Errorf("%d series for lookups, want at most %d", n, maxVerbs+1)
	}
	if got := testutil.ToFloat64(m.lookups.WithLabelValues("socketmap", OtherLabel, OutcomeFound)); got < 1000-maxVerbs {
		t.Errorf("_other counted %v", got)
	}
	if got := testutil.ToFloat64(m.lookups.WithLabelValues("socketmap", "verb3", OutcomeFound)); got != 1 {
		t.Errorf("early verb counted %v", got)
	}
}

func TestObserverEvents(t *testing.T) {
	m, _ := newTest(t)
	var obs remote.Observer = m
	obs.BackendDone("passdb", 3*time.Millisecond, nil)
	obs.BackendDone("passdb", 2*time.Second, errors.New("backend timeout"))
	obs.CacheEvent("hit")
	obs.CacheEvent("hit")
	obs.CacheEvent("miss")
	obs.CacheEvent("stale")
	obs.CacheEvent("bogus")
	obs.TLSFailure("pin-mismatch")
	obs.TLSFailure("pin-mismatch")
	obs.TLSFailure("unknown-ca")

	if got := testutil.ToFloat64(m.cacheHits); got != 2 {
		t.Errorf("cache hits %v", got)
	}
	if got := testutil.ToFloat64(m.cacheMisses); got != 1 {
		t.Errorf("cache misses %v", got)
	}
	if got := testutil.ToFloat64(m.cacheStale); got != 1 {
		t.Errorf("stale served %v", got)
	}
	if got := testutil.ToFloat64(m.tlsFailures.WithLabelValues("pin-mismatch")); got != 2 {
		t.Errorf("tls pin failures %v", got)
	}
	want := `
# HELP shitenno_backend_request_duration_seconds Duration of HTTP exchanges with the backend, by result (ok, error).
# TYPE shitenno_backend_request_duration_seconds histogram
` + durationSeries(t, "error", "0 0 0 0 0 0 0 0 0 0 1 1 1 1 1", "2", "1") +
		durationSeries(t, "ok", "0 0 1 1 1 1 1 1 1 1 1 1 1 1 1", "0.003", "1")
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "shitenno_backend_request_duration_seconds"); err != nil {
		t.Error(err)
	}
}

// durationBuckets are the upper bounds of the backend duration histogram.
var durationBuckets = []string{"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "+Inf"}

// durationSeries is the exposition of one result's series of the backend
// duration histogram: counts are its cumulative bucket counts, one per
// bound in durationBuckets, separated by spaces.
func durationSeries(t *testing.T, result, counts, sum, count string) string {
	t.Helper()
	n := strings.Fields(counts)
	if len(n) != len(durationBuckets) {
		t.Fatalf("%d bucket counts for %d buckets", len(n), len(durationBuckets))
	}
	var b strings.Builder
	for i, le := range durationBuckets {
		fmt.Fprintf(&b, "shitenno_backend_request_duration_seconds_bucket{result=%q,le=%q} %s\n", result, le, n[i])
	}
	fmt.Fprintf(&b, "shitenno_backend_request_duration_seconds_sum{result=%q} %s\n", result, sum)
	fmt.Fprintf(&b, "shitenno_backend_request_duration_seconds_count{result=%q} %s\n", result, count)
	return b.String()
}

func TestConnections(t *testing.T) {
	m, _ := newTest(t)
	m.ConnDelta(1)
	m.ConnDelta(1)
	m.ConnDelta(-1)
	if got := testutil.ToFloat64(m.conns); got != 1 {
		t.Errorf("open connections %v", got)
	}
	if got := testutil.ToFloat64(m.connsTotal); got != 2 {
		t.Errorf("accepted connections %v", got)
	}
}

func TestReloadAndCounterFunc(t *testing.T) {
	m, _ := newTest(t)
	m.Reload(errors.New("bad"))
	if got := testutil.ToFloat64(m.reloadOK); got != 0 {
		t.Errorf("last reload successful = %v after a failure", got)
	}
	m.Reload(nil)
	if got := testutil.ToFloat64(m.reloadOK); got != 1 {
		t.Errorf("last reload successful = %v after a success", got)
	}
	var n atomic.Int64
	if err := m.RegisterCounterFunc("log_dropped_total", "Log records dropped.", func() float64 { return float64(n.Load()) }); err != nil {
		t.Fatal(err)
	}
	n.Store(7)
	want := "# HELP shitenno_log_dropped_total Log records dropped.\n# TYPE shitenno_log_dropped_total counter\nshitenno_log_dropped_total 7\n"
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "shitenno_log_dropped_total"); err != nil {
		t.Error(err)
	}
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestReadyzWithoutProbe(t *testing.T) {
	m, c := newTest(t)
	h := m.NewHealth(HealthOptions{Window: 30 * time.Second}).Handler()
	if code, _ := get(t, h, "/readyz"); code != 200 {
		t.Errorf("fresh daemon: /readyz %d, want 200", code)
	}
	m.BackendDone("v", time.Millisecond, errors.New("backend unreachable"))
	if code, body := get(t, h, "/readyz"); code != 503 {
		t.Errorf("after a failure: /readyz %d %q, want 503", code, body)
	}
	c.add(time.Minute)
	if code, _ := get(t, h, "/readyz"); code != 503 {
		t.Errorf("idle after a failure: /readyz %d, want 503", code)
	}
	m.BackendDone("v", time.Millisecond, nil)
	if code, _ := get(t, h, "/readyz"); code != 200 {
		t.Errorf("after a success: /readyz %d, want 200", code)
	}
	// A failure right after a recent success: still reachable recently.
	m.BackendDone("v", time.Millisecond, errors.New("backend HTTP status 500"))
	if code, _ := get(t, h, "/readyz"); code != 200 {
		t.Errorf("success within window: /readyz %d, want 200", code)
	}
	c.add(31 * time.Second)
	if code, _ := get(t, h, "/readyz"); code != 503 {
		t.Errorf("success out of window, last exchange failed: /readyz %d, want 503", code)
	}
	// A client giving up says nothing about the backend.
	m.BackendDone("v", time.Millisecond, nil)
	m.BackendDone("v", time.Millisecond, fmt.Errorf("wrapped: %w", context.Canceled))
	c.add(time.Minute)
	if code, _ := get(t, h, "/readyz"); code != 200 {
		t.Errorf("idle after success + canceled: /readyz %d, want 200", code)
	}
}

func TestReadyzProbe(t *testing.T) {
	m, c := newTest(t)
	var probes atomic.Int32
	var fail atomic.Bool
	h := m.NewHealth(HealthOptions{Window: 30 * time.Second, Probe: func(ctx context.Context) error {
		probes.Add(1)
		if _, ok := ctx.Deadline(); !ok {
			t.Error("probe without a deadline")
		}
		if fail.Load() {
			return errors.New("connection refused")
		}
		return nil
	}}).Handler()
	if code, _ := get(t, h, "/readyz"); code != 200 || probes.Load() != 1 {
		t.Errorf("probe ok: /readyz %d after %d probes", code, probes.Load())
	}
	if code, _ := get(t, h, "/readyz"); code != 200 || probes.Load() != 1 {
		t.Errorf("within window: /readyz %d, %d probes (want no new probe)", code, probes.Load())
	}
	c.add(time.Minute)
	fail.Store(true)
	code, body := get(t, h, "/readyz")
	if code != 503 || !strings.Contains(body, "connection refused") || probes.Load() != 2 {
		t.Errorf("probe failing: /readyz %d %q after %d probes", code, body, probes.Load())
	}
	// Real traffic succeeding makes it ready without a probe.
	m.BackendDone("v", time.Millisecond, nil)
	if code, _ := get(t, h, "/readyz"); code != 200 || probes.Load() != 2 {
		t.Errorf("after traffic: /readyz %d, %d probes", code, probes.Load())
	}
}

func TestHealthzAndMetricsEndpoint(t *testing.T) {
	m, _ := newTest(t)
	var wedged atomic.Bool
	hl := m.NewHealth(HealthOptions{Alive: func() error {
		if wedged.Load() {
			return errors.New("serve loop stalled")
		}
		return nil
	}})
	base := "http://" + serve(t, NewServer(hl.Handler()))
	fetch := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := fetch("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz %d %q", code, body)
	}
	wedged.Store(true)
	if code, body := fetch("/healthz"); code != 503 || !strings.Contains(body, "stalled") {
		t.Errorf("wedged /healthz %d %q", code, body)
	}
	m.Lookup("socketmap", "virtual", OutcomeFound)
	m.ConnDelta(1)
	code, body := fetch("/metrics")
	if code != 200 {
		t.Fatalf("/metrics %d", code)
	}
	for _, want := range []string{
		`shitenno_lookups_total{listener="socketmap",outcome="found",verb="virtual"} 1`,
		`shitenno_client_connections 1`,
		`shitenno_build_info{daemon="postfix",version="test"} 1`,
		`shitenno_cache_hits_total 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, _ := fetch("/nope"); code != 404 {
		t.Errorf("/nope %d", code)
	}
	resp, err := http.Post(base+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz %d", resp.StatusCode)
	}
}

// serve runs srv on a loopback port until the test ends and returns the
// address.
func serve(t *testing.T, srv *Server) string {
	t.Helper()
	shutdown := func() error { return srv.Shutdown(context.Background()) }
	return shtest.ServeUntilCleanup(t, "tcp", srv.Serve, shutdown, ErrServerClosed)
}

// Serve blocks like every other shitenno Serve: it returns only after
// Shutdown or Close, with ErrServerClosed, and a request still in flight
// at Shutdown gets its answer.
func TestServerServeBlocks(t *testing.T) {
	for _, stop := range []string{"Shutdown", "Close"} {
		t.Run(stop, func(t *testing.T) {
			entered, release := make(chan struct{}), make(chan struct{})
			srv := NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(entered)
				<-release
				_, _ = io.WriteString(w, "done")
			}))
			ln, served := shtest.Serve(t, "tcp", srv.Serve)
			got := make(chan string, 1)
			go func() {
				resp, err := http.Get("http://" + ln.Addr().String() + "/")
				if err != nil {
					got <- "error: " + err.Error()
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				got <- string(b)
			}()
			<-entered
			select {
			case err := <-served:
				t.Fatalf("Serve returned before any stop: %v", err)
			default:
			}
			stopped := make(chan error, 1)
			if stop == "Shutdown" {
				go func() { stopped <- srv.Shutdown(context.Background()) }()
			} else {
				stopped <- srv.Close()
			}
			if err := <-served; !errors.Is(err, ErrServerClosed) {
				t.Fatalf("Serve after %s = %v, want ErrServerClosed", stop, err)
			}
			close(release)
			if err := <-stopped; err != nil {
				t.Fatalf("%s: %v", stop, err)
			}
			body := <-got
			if stop == "Shutdown" && body != "done" {
				t.Fatalf("request in flight at Shutdown got %q", body)
			}
		})
	}
}

func BenchmarkLookup(b *testing.B) {
	m := New("postfix", "bench")
	b.ReportAllocs()
	for b.Loop() {
		m.Lookup("socketmap", "virtual", OutcomeFound)
		m.BackendDone("virtual", time.Millisecond, nil)
	}
}
