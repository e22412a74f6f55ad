package remote

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
)

// --- helpers shared by cache_test.go, failover_test.go, flight_test.go ---

// countingBackend is a backend handler that counts the requests it gets
// and answers as its current reply function says.
type countingBackend struct {
	requests atomic.Int64
	mu       sync.Mutex
	reply    http.HandlerFunc
}

func newCountingBackend(reply http.HandlerFunc) *countingBackend {
	return &countingBackend{reply: reply}
}

func (b *countingBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	_, _ = io.Copy(io.Discard, r.Body)
	b.mu.Lock()
	f := b.reply
	b.mu.Unlock()
	f(w, r)
}

func (b *countingBackend) set(f http.HandlerFunc) {
	b.mu.Lock()
	b.reply = f
	b.mu.Unlock()
}

// answer replies with Status and Data, after setting the given header
// name/value pairs.
func answer(status, data string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Add(header[i], header[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"Status":%q,"Data":%s}`, status, data)
	}
}

// failWith answers with an HTTP error status, with cache headers that must
// not matter.
func failWith(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		http.Error(w, "broken", code)
	}
}

// startHTTPTest serves h on a real loopback port.
func startHTTPTest(t testing.TB, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// eventCounter is an Observer that counts what it is told.
type eventCounter struct {
	mu      sync.Mutex
	cache   map[string]int
	backend int
}

func (o *eventCounter) BackendDone(string, time.Duration, error) {
	o.mu.Lock()
	o.backend++
	o.mu.Unlock()
}

func (o *eventCounter) CacheEvent(kind string) {
	o.mu.Lock()
	if o.cache == nil {
		o.cache = map[string]int{}
	}
	o.cache[kind]++
	o.mu.Unlock()
}

func (o *eventCounter) TLSFailure(string) {}

func (o *eventCounter) count(kind string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cache[kind]
}

func newLookupClient(t testing.TB, o Options) *Client {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdle)
	return c
}

// pipeNet is an in-memory network of HTTP backends for tests inside a
// synctest bubble, where time is virtual and real sockets are not allowed:
// its dialer hands one end of a net.Pipe to the named host's http.Server.
type pipeNet struct {
	mu    sync.Mutex
	hosts map[string]*pipeHost
}

// pipeHost is one backend address of a pipeNet.
type pipeHost struct {
	*testutil.PipeListener
	// refuse makes a dial fail as a refused connection, after dialDelay.
	refuse    atomic.Bool
	dialDelay atomic.Int64
	dials     atomic.Int64

	mu   sync.Mutex
	live []net.Conn // server ends handed out
}

// down makes the host refuse connections and drops the open ones, like a
// backend process that died.
func (h *pipeHost) down() {
	h.refuse.Store(true)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.live {
		_ = c.Close()
	}
	h.live = nil
}

// serve starts an http.Server for handler at host ("b1:80").
func (n *pipeNet) serve(t testing.TB, host string, handler http.Handler) *pipeHost {
	h := &pipeHost{PipeListener: testutil.NewPipeListener()}
	n.mu.Lock()
	if n.hosts == nil {
		n.hosts = map[string]*pipeHost{}
	}
	n.hosts[host] = h
	n.mu.Unlock()
	srv := &http.Server{Handler: handler}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(h)
	}()
	t.Cleanup(func() {
		_ = h.Close()
		_ = srv.Close()
		<-served
	})
	return h
}

func (n *pipeNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	h := n.hosts[addr]
	n.mu.Unlock()
	if h == nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("no such host")}
	}
	h.dials.Add(1)
	if d := time.Duration(h.dialDelay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
		}
	}
	if h.refuse.Load() {
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	c, s, err := h.Dial(ctx)
	switch {
	case errors.Is(err, net.ErrClosed):
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	case err != nil:
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	h.mu.Lock()
	h.live = append(h.live, s)
	h.mu.Unlock()
	return c, nil
}

// transport is a keep-alive transport over the pipe network. Create it
// inside the bubble.
func (n *pipeNet) transport(t testing.TB) *http.Transport {
	tr := NewTransport(nil, 0)
	tr.DialContext = n.dial
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// pipeClient serves handler as the one backend (b1:80) of a new pipeNet
// and returns a client of it with o's other options. Call it inside the
// bubble.
func pipeClient(t testing.TB, handler http.Handler, o Options) (*Client, *pipeHost) {
	t.Helper()
	var pn pipeNet
	host := pn.serve(t, "b1:80", handler)
	o.URLs, o.Transport = []string{"http://b1:80/"}, pn.transport(t)
	return newLookupClient(t, o), host
}

// cachingPipeClient is a pipeClient with a cache of 100 entries, whose
// backend answers "a" with the Cache-Control header cc.
func cachingPipeClient(t testing.TB, cc string, o Options) (*Client, *countingBackend, *pipeHost) {
	t.Helper()
	be := newCountingBackend(answer("OK", `"a"`, "Cache-Control", cc))
	o.Cache = NewCache(100, 0, 0)
	c, host := pipeClient(t, be, o)
	return c, be, host
}

// cachedSince is a cachingPipeClient that looked "k" up age ago (in the
// bubble's time).
func cachedSince(t testing.TB, cc string, age time.Duration) (*Client, *countingBackend) {
	t.Helper()
	c, be, _ := cachingPipeClient(t, cc, Options{})
	mustLookup(t, c, "k")
	time.Sleep(age)
	return c, be
}

func mustLookup(t testing.TB, c *Client, key string) Result {
	t.Helper()
	r, err := c.Lookup(context.Background(), "virtual", key)
	if err != nil {
		t.Fatalf("lookup %q: %v", key, err)
	}
	return r
}

// --- policy parsing ---

func TestParseCachePolicy(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	date := now.Add(-time.Hour).Format(http.TimeFormat)
	tests := []struct {
		name     string
		header   []string
		noStore  bool
		explicit bool
		fresh    time.Duration // expires - now, when explicit
		sie      time.Duration
	}{
		{name: "none"},
		{name: "max-age", header: []string{"Cache-Control", "max-age=60"}, explicit: true, fresh: time.Minute},
		{name: "max-age case and spaces", header: []string{"Cache-Control", " Public , MAX-AGE = 60 "}, explicit: true, fresh: time.Minute},
		{name: "max-age quoted", header: []string{"Cache-Control", `max-age="60"`}, explicit: true, fresh: time.Minute},
		{name: "max-age zero", header: []string{"Cache-Control", "max-age=0"}, explicit: true},
		{name: "max-age invalid is stale", header: []string{"Cache-Control", "max-age=-5"}, explicit: true},
		{name: "max-age first wins", header: []string{"Cache-Control", "max-age=60, max-age=3600"}, explicit: true, fresh: time.Minute},
		{name: "max-age huge capped", header: []string{"Cache-Control", "max-age=99999999999999999999999"}, explicit: true, fresh: maxDelta * time.Second},
		{name: "s-maxage wins", header: []string{"Cache-Control", "max-age=3600, s-maxage=60"}, explicit: true, fresh: time.Minute},
		{name: "s-maxage zero wins", header: []string{"Cache-Control", "max-age=3600, s-maxage=0"}, explicit: true},
		{name: "two header lines", header: []string{"Cache-Control", "public", "Cache-Control", "max-age=60"}, explicit: true, fresh: time.Minute},
		{name: "no-store", header: []string{"Cache-Control", "max-age=60, no-store"}, noStore: true, explicit: true, fresh: time.Minute},
		{name: "no-cache", header: []string{"Cache-Control", "no-cache, max-age=60"}, noStore: true, explicit: true, fresh: time.Minute},
		{name: "no-cache qualified", header: []string{"Cache-Control", `no-cache="Set-Cookie", max-age=60`}, noStore: true, explicit: true, fresh: time.Minute},
		{name: "private", header: []string{"Cache-Control", "private, max-age=60"}, noStore: true, explicit: true, fresh: time.Minute},
		{name: "quoted comma smuggles nothing", header: []string{"Cache-Control", `x-ext="a, max-age=999", max-age=60`}, explicit: true, fresh: time.Minute},
		{name: "quoted escape", header: []string{"Cache-Control", `x-ext="a\", max-age=999", max-age=60`}, explicit: true, fresh: time.Minute},
		{name: "stale-if-error", header: []string{"Cache-Control", "max-age=60, stale-if-error=300"}, explicit: true, fresh: time.Minute, sie: 5 * time.Minute},
		{name: "stale-if-error must-revalidate", header: []string{"Cache-Control", "max-age=60, stale-if-error=300, must-revalidate"}, explicit: true, fresh: time.Minute},
		{name: "stale-if-error proxy-revalidate", header: []string{"Cache-Control", "max-age=60, stale-if-error=300, proxy-revalidate"}, explicit: true, fresh: time.Minute},
		{name: "stale-if-error s-maxage", header: []string{"Cache-Control", "s-maxage=10, stale-if-error=300"}, explicit: true, fresh: 10 * time.Second},
		{name: "stale-if-error alone", header: []string{"Cache-Control", "stale-if-error=300"}, sie: 5 * time.Minute},
		{name: "age subtracted", header: []string{"Cache-Control", "max-age=60", "Age", "20"}, explicit: true, fresh: 40 * time.Second},
		{name: "age beyond lifetime", header: []string{"Cache-Control", "max-age=60", "Age", "100"}, explicit: true, fresh: -40 * time.Second},
		{name: "age invalid ignored", header: []string{"Cache-Control", "max-age=60", "Age", "soon"}, explicit: true, fresh: time.Minute},
		{name: "age list first", header: []string{"Cache-Control", "max-age=60", "Age", "10, 50"}, explicit: true, fresh: 50 * time.Second},
		{name: "expires relative to date", header: []string{"Expires", now.Format(http.TimeFormat), "Date", date}, explicit: true, fresh: time.Hour},
		{name: "expires without date", header: []string{"Expires", now.Add(90 * time.Second).Format(http.TimeFormat)}, explicit: true, fresh: 90 * time.Second},
		{name: "expires bad date uses now", header: []string{"Expires", now.Add(90 * time.Second).Format(http.TimeFormat), "Date", "yesterday"}, explicit: true, fresh: 90 * time.Second},
		{name: "expires past", header: []string{"Expires", now.Add(-time.Hour).Format(http.TimeFormat)}, explicit: true},
		{name: "expires invalid", header: []string{"Expires", "0"}, explicit: true},
		{name: "expires with age", header: []string{"Expires", now.Format(http.TimeFormat), "Date", date, "Age", "600"}, explicit: true, fresh: 50 * time.Minute},
		{name: "max-age beats expires", header: []string{"Expires", "0", "Cache-Control", "max-age=60"}, explicit: true, fresh: time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for i := 0; i+1 < len(tc.header); i += 2 {
				h.Add(tc.header[i], tc.header[i+1])
			}
			p := parseCachePolicy(h, now)
			if p.noStore != tc.noStore || p.explicit != tc.explicit || p.staleIfError != tc.sie {
				t.Errorf("got noStore=%v explicit=%v sie=%v, want %v %v %v", p.noStore, p.explicit, p.staleIfError, tc.noStore, tc.explicit, tc.sie)
			}
			if tc.explicit {
				if got := p.expires.Sub(now); got != tc.fresh {
					t.Errorf("freshness %v, want %v", got, tc.fresh)
				}
			}
			if !p.received.Equal(now) {
				t.Errorf("received %v", p.received)
			}
		})
	}
}

func FuzzParseCachePolicy(f *testing.F) {
	f.Add("max-age=60, stale-if-error=30", "", "", "")
	f.Add(`no-cache="a,b", s-maxage=5`, "Thu, 01 Jan 2026 00:00:00 GMT", "Wed, 31 Dec 2025 00:00:00 GMT", "3")
	f.Add(`x="\`, "0", "", "99999999999999999999")
	f.Add("=,,=\"", "", "garbage", "-1")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, cc, expires, date, age string) {
		h := http.Header{}
		for k, v := range map[string]string{"Cache-Control": cc, "Expires": expires, "Date": date, "Age": age} {
			if v != "" {
				h.Set(k, v)
			}
		}
		p := parseCachePolicy(h, now)
		if p.staleIfError < 0 || p.staleIfError > maxDelta*time.Second {
			t.Fatalf("stale-if-error %v", p.staleIfError)
		}
		if p.explicit && p.expires.After(now.Add(maxDelta*time.Second)) {
			t.Fatalf("expires %v", p.expires)
		}
		if !p.explicit && !p.expires.IsZero() {
			t.Fatalf("expires %v without explicit freshness", p.expires)
		}
	})
}

// --- Cache in isolation, with an explicit clock ---

func TestNewCacheOff(t *testing.T) {
	if c := NewCache(0, time.Hour, time.Hour); c != nil {
		t.Fatal("MaxEntries 0 must turn the cache off")
	}
	if c := NewCache(-1, 0, 0); c != nil {
		t.Fatal("negative MaxEntries must turn the cache off")
	}
	var c *Cache // a nil cache is inert
	c.put("k", Result{Status: Found}, cachePolicy{explicit: true, expires: time.Now().Add(time.Hour)}, time.Now())
	if _, ok := c.get("k", time.Now()); ok || c.Len() != 0 {
		t.Fatal("nil cache returned something")
	}
}

func policyFor(now time.Time, kv ...string) cachePolicy {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return parseCachePolicy(h, now)
}

// lifeCheck is what get and stale should say at an offset from the time a
// reply was stored.
type lifeCheck struct {
	at           time.Duration
	fresh, stale bool
}

func TestCacheLifecycle(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	ok := Result{Status: Found, Data: []byte(`"x"`)}
	ko := Result{Status: NotFound}
	tests := []struct {
		name   string
		ttl    time.Duration // DefaultTTL
		neg    time.Duration // NegativeTTL
		res    Result
		header []string
		checks []lifeCheck
	}{
		{name: "max-age", res: ok, header: []string{"Cache-Control", "max-age=10"}, checks: []lifeCheck{{0, true, true}, {9 * time.Second, true, true}, {10 * time.Second, false, false}}},
		{name: "no explicit lifetime, no default", res: ok, checks: []lifeCheck{{0, false, false}}},
		{name: "default TTL for OK", ttl: 5 * time.Second, res: ok, checks: []lifeCheck{{4 * time.Second, true, true}, {5 * time.Second, false, false}}},
		{name: "default TTL not for KO", ttl: 5 * time.Second, res: ko, checks: []lifeCheck{{0, false, false}}},
		{name: "negative TTL for KO", neg: 3 * time.Second, res: ko, checks: []lifeCheck{{2 * time.Second, true, true}, {3 * time.Second, false, false}}},
		{name: "negative TTL not for OK", neg: 3 * time.Second, res: ok, checks: []lifeCheck{{0, false, false}}},
		{name: "explicit beats default", ttl: time.Hour, neg: time.Hour, res: ko, header: []string{"Cache-Control", "max-age=2"}, checks: []lifeCheck{{time.Second, true, true}, {2 * time.Second, false, false}}},
		{name: "max-age=0 beats default", ttl: time.Hour, res: ok, header: []string{"Cache-Control", "max-age=0"}, checks: []lifeCheck{{0, false, false}}},
		{name: "no-store beats default", ttl: time.Hour, res: ok, header: []string{"Cache-Control", "no-store"}, checks: []lifeCheck{{0, false, false}}},
		{name: "no-cache never fresh nor stale", ttl: time.Hour, res: ok, header: []string{"Cache-Control", "no-cache, max-age=60, stale-if-error=60"}, checks: []lifeCheck{{0, false, false}, {90 * time.Second, false, false}}},
		{name: "stale-if-error window", res: ok, header: []string{"Cache-Control", "max-age=10, stale-if-error=20"}, checks: []lifeCheck{{9 * time.Second, true, true}, {10 * time.Second, false, true}, {29 * time.Second, false, true}, {30 * time.Second, false, false}}},
		{name: "stale-if-error with default TTL", ttl: 10 * time.Second, res: ok, header: []string{"Cache-Control", "stale-if-error=20"}, checks: []lifeCheck{{10 * time.Second, false, true}, {30 * time.Second, false, false}}},
		{name: "max-age=0 with stale-if-error is stale only", res: ok, header: []string{"Cache-Control", "max-age=0, stale-if-error=20"}, checks: []lifeCheck{{0, false, true}, {19 * time.Second, false, true}, {20 * time.Second, false, false}}},
		{name: "stale-if-error alone is not a lifetime", res: ok, header: []string{"Cache-Control", "stale-if-error=20"}, checks: []lifeCheck{{0, false, false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, ck := range tc.checks {
				// A fresh cache per check: get and stale drop what they
				// find expired.
				c := NewCache(10, tc.ttl, tc.neg)
				c.put("k", tc.res, policyFor(t0, tc.header...), t0)
				r, fresh := c.get("k", t0.Add(ck.at))
				if fresh != ck.fresh {
					t.Errorf("at %v: fresh %v, want %v", ck.at, fresh, ck.fresh)
				}
				if fresh && r.Status != tc.res.Status {
					t.Errorf("at %v: status %v", ck.at, r.Status)
				}
				if _, stale := c.stale("k", t0.Add(ck.at)); stale != ck.stale {
					t.Errorf("at %v: stale %v, want %v", ck.at, stale, ck.stale)
				}
			}
		})
	}
}

func TestCacheNewestAnswerWins(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	c := NewCache(10, 0, 0)
	c.put("k", Result{Status: Found, Data: []byte(`"old"`)}, policyFor(t0, "Cache-Control", "max-age=10, stale-if-error=100"), t0)
	// The backend now forbids storing: the old entry must not come back,
	// not even through stale-if-error.
	c.put("k", Result{Status: Found, Data: []byte(`"new"`)}, policyFor(t0, "Cache-Control", "no-store"), t0)
	if _, ok := c.stale("k", t0.Add(20*time.Second)); ok || c.Len() != 0 {
		t.Fatal("an entry replaced by a no-store reply survived")
	}
	c.put("k", Result{Status: Found, Data: []byte(`"a"`)}, policyFor(t0, "Cache-Control", "max-age=10"), t0)
	c.put("k", Result{Status: NotFound, Data: []byte(`"b"`)}, policyFor(t0, "Cache-Control", "max-age=10"), t0)
	if r, ok := c.get("k", t0); !ok || r.Status != NotFound || string(r.Data) != `"b"` || c.Len() != 1 {
		t.Fatalf("got %+v %v, len %d", r, ok, c.Len())
	}
}

func TestCacheLRUOrder(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	p := policyFor(t0, "Cache-Control", "max-age=60")
	c := NewCache(2, 0, 0)
	c.put("a", Result{Status: Found}, p, t0)
	c.put("b", Result{Status: Found}, p, t0)
	if _, ok := c.get("a", t0); !ok { // a becomes the most recently used
		t.Fatal("a missing")
	}
	c.put("c", Result{Status: Found}, p, t0)
	if _, ok := c.get("b", t0); ok {
		t.Fatal("b, least recently used, was not evicted")
	}
	for _, k := range []string{"a", "c"} {
		if _, ok := c.get(k, t0); !ok {
			t.Fatalf("%s evicted", k)
		}
	}
}

func TestCacheEntrySizeBound(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	p := policyFor(t0, "Cache-Control", "max-age=60")
	c := NewCache(1<<20, 0, 0)
	big := make([]byte, maxEntryData+1)
	c.put("big", Result{Status: Found, Data: big}, p, t0)
	if c.Len() != 0 {
		t.Fatal("an entry larger than maxEntryData was stored")
	}
	// Entries of the largest size fill the byte budget, not memory.
	data := big[:maxEntryData]
	for i := range 4 * maxCacheBytes / maxEntryData {
		c.put(fmt.Sprint(i), Result{Status: Found, Data: data}, p, t0)
	}
	c.mu.Lock()
	bytes, n := c.bytes, len(c.items)
	c.mu.Unlock()
	if bytes > maxCacheBytes || n > maxCacheBytes/maxEntryData {
		t.Fatalf("%d entries, %d bytes: budget %d", n, bytes, maxCacheBytes)
	}
	if n < maxCacheBytes/(maxEntryData+entryOverhead) {
		t.Fatalf("only %d entries kept", n)
	}
}

// TestCacheBoundedUnderMillionKeys is the issue's "LRU bound holds under
// 1M distinct keys": the entry count never passes MaxEntries and the heap
// does not grow with the number of keys seen.
func TestCacheBoundedUnderMillionKeys(t *testing.T) {
	const maxEntries, keys = 1000, 1_000_000
	t0 := time.Unix(1e9, 0)
	p := policyFor(t0, "Cache-Control", "max-age=60")
	data := []byte(`{"home":"/var/mail/x"}`)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := NewCache(maxEntries, 0, 0)
	// Keys shaped like cacheKey's (32 bytes) without hashing a million
	// bodies, which is slow under the race detector.
	key := func(i int) string {
		var k [sha256.Size]byte
		binary.LittleEndian.PutUint64(k[:], uint64(i))
		return string(k[:])
	}
	for i := range keys {
		c.put(key(i), Result{Status: Found, Data: data}, p, t0)
		if i%100_000 == 0 && c.Len() > maxEntries {
			t.Fatalf("after %d keys: %d entries", i, c.Len())
		}
	}
	if c.Len() != maxEntries {
		t.Fatalf("%d entries, want %d", c.Len(), maxEntries)
	}
	// The newest key is in the admission window. Which older keys are
	// kept is W-TinyLFU's choice, not LRU order: none was ever looked up,
	// so every candidate ties with its victim and is not admitted (scan
	// resistance, TestCacheCyclicScan).
	if _, ok := c.get(key(keys-1), t0); !ok {
		t.Fatal("newest key evicted")
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	// 1000 entries of ~250 bytes, plus map buckets: well under 1 MiB.
	// Unbounded, 1M entries would be hundreds of MiB.
	if grown > 2<<20 {
		t.Fatalf("heap grew by %d bytes for %d entries", grown, maxEntries)
	}
	t.Logf("heap grew by %d bytes (%d entries)", grown, c.Len())
	runtime.KeepAlive(c)
}

// --- Lookups through a real HTTP backend ---

func TestLookupCaching(t *testing.T) {
	tests := []struct {
		name      string
		reply     http.HandlerFunc
		ttl, neg  time.Duration
		wantCalls int64 // backend requests after 3 identical lookups
	}{
		{name: "max-age hit", reply: answer("OK", `"a"`, "Cache-Control", "max-age=60"), wantCalls: 1},
		{name: "s-maxage hit", reply: answer("OK", `"a"`, "Cache-Control", "s-maxage=60"), wantCalls: 1},
		{name: "s-maxage=0 overrides max-age", reply: answer("OK", `"a"`, "Cache-Control", "max-age=60, s-maxage=0"), wantCalls: 3},
		{name: "Expires hit", reply: answer("OK", `"a"`, "Expires", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)), wantCalls: 1},
		{name: "Expires past miss", reply: answer("OK", `"a"`, "Expires", time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)), wantCalls: 3},
		{name: "Age beyond max-age miss", reply: answer("OK", `"a"`, "Cache-Control", "max-age=60", "Age", "61"), wantCalls: 3},
		{name: "no-store miss", reply: answer("OK", `"a"`, "Cache-Control", "no-store, max-age=60"), wantCalls: 3},
		{name: "no-cache miss", reply: answer("OK", `"a"`, "Cache-Control", "no-cache, max-age=60"), wantCalls: 3},
		{name: "private miss", reply: answer("OK", `"a"`, "Cache-Control", "private, max-age=60"), wantCalls: 3},
		{name: "no lifetime miss", reply: answer("OK", `"a"`), wantCalls: 3},
		{name: "KO with max-age hit", reply: answer("KO", `null`, "Cache-Control", "max-age=60"), wantCalls: 1},
		{name: "default TTL", reply: answer("OK", `"a"`), ttl: time.Minute, wantCalls: 1},
		{name: "default TTL not for KO", reply: answer("KO", `null`), ttl: time.Minute, wantCalls: 3},
		{name: "negative TTL", reply: answer("KO", `null`), neg: time.Minute, wantCalls: 1},
		{name: "negative TTL not for OK", reply: answer("OK", `"a"`), neg: time.Minute, wantCalls: 3},
		{name: "HTTP 500 not cached", reply: failWith(500), ttl: time.Minute, neg: time.Minute, wantCalls: 3},
		{name: "bad JSON not cached", reply: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			_, _ = io.WriteString(w, `{"Status":`)
		}, ttl: time.Minute, neg: time.Minute, wantCalls: 3},
		{name: "bad Status not cached", reply: answer("MAYBE", `null`, "Cache-Control", "max-age=60"), ttl: time.Minute, neg: time.Minute, wantCalls: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			be := newCountingBackend(tc.reply)
			obs := &eventCounter{}
			c := newLookupClient(t, Options{URLs: []string{startHTTPTest(t, be)}, Cache: NewCache(100, tc.ttl, tc.neg), Observer: obs})
			var errs int
			for range 3 {
				if _, err := c.Lookup(t.Context(), "virtual", "alice@example.org"); err != nil {
					errs++
				}
			}
			if got := be.requests.Load(); got != tc.wantCalls {
				t.Fatalf("backend got %d requests, want %d", got, tc.wantCalls)
			}
			if hits := obs.count("hit"); int64(hits) != 3-tc.wantCalls {
				t.Errorf("%d hits counted", hits)
			}
			if obs.count("stale") != 0 {
				t.Errorf("stale counted")
			}
			if strings.Contains(tc.name, "not cached") && errs != 3 {
				t.Errorf("%d errors, want 3", errs)
			}
		})
	}
}

func TestLookupCacheKeyedByVerbAndObject(t *testing.T) {
	be := newCountingBackend(answer("OK", `"a"`, "Cache-Control", "max-age=60"))
	c := newLookupClient(t, Options{URLs: []string{startHTTPTest(t, be)}, Cache: NewCache(100, 0, 0)})
	for _, q := range []struct{ verb, obj string }{{"virtual", "a"}, {"virtual", "b"}, {"domains", "a"}, {"virtual", "a"}} {
		if _, err := c.Lookup(t.Context(), q.verb, q.obj); err != nil {
			t.Fatal(err)
		}
	}
	if got := be.requests.Load(); got != 3 {
		t.Fatalf("backend got %d requests, want 3", got)
	}
}

// TestLookupExpiry runs in a bubble: time is virtual, the backend is an
// http.Server over in-memory pipes, and its Date header is virtual too.
func TestLookupExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, be := cachedSince(t, "max-age=10", 9*time.Second)
		mustLookup(t, c, "k")
		if n := be.requests.Load(); n != 1 {
			t.Fatalf("%d requests before expiry", n)
		}
		time.Sleep(time.Second)
		mustLookup(t, c, "k")
		if n := be.requests.Load(); n != 2 {
			t.Fatalf("%d requests after expiry, want 2", n)
		}
	})
}

func TestLookupStaleIfError(t *testing.T) {
	for _, outage := range []string{"HTTP 503", "refused"} {
		t.Run(outage, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				obs := &eventCounter{}
				c, be, host := cachingPipeClient(t, "max-age=10, stale-if-error=60", Options{Observer: obs})
				if r := mustLookup(t, c, "k"); r.Stale {
					t.Fatal("fresh reply marked stale")
				}
				time.Sleep(20 * time.Second) // expired, within the stale window
				be.set(answer("OK", `"b"`, "Cache-Control", "max-age=10, stale-if-error=60"))
				r := mustLookup(t, c, "k")
				if r.Stale || string(r.Data) != `"b"` {
					t.Fatalf("backend up: got %+v, want the new reply", r)
				}
				// Outage: the stale entry is served, and counted.
				time.Sleep(20 * time.Second)
				if outage == "refused" {
					host.down()
				} else {
					be.set(failWith(503))
				}
				for range 2 {
					r = mustLookup(t, c, "k")
					if !r.Stale || r.Status != Found || string(r.Data) != `"b"` {
						t.Fatalf("outage: got %+v, want stale \"b\"", r)
					}
				}
				if n := obs.count("stale"); n != 2 {
					t.Fatalf("%d stale events, want 2", n)
				}
				// 10s fresh + 60s stale after the second reply (t=20s):
				// at t=90s the window is over.
				time.Sleep(50*time.Second - time.Nanosecond)
				mustLookup(t, c, "k")
				time.Sleep(time.Nanosecond)
				if _, err := c.Lookup(t.Context(), "virtual", "k"); err == nil {
					t.Fatal("stale entry served after the stale-if-error window")
				}
				if n := obs.count("stale"); n != 3 {
					t.Fatalf("%d stale events, want 3", n)
				}
			})
		})
	}
}

func TestLookupNoStaleWithoutStaleIfError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, be := cachedSince(t, "max-age=10", 10*time.Second)
		be.set(failWith(500))
		if _, err := c.Lookup(t.Context(), "virtual", "k"); err == nil {
			t.Fatal("expired entry served after a failure without stale-if-error")
		}
	})
}

// --- benchmarks: make bench shows both side by side ---

func benchLookup(b *testing.B, cache *Cache) {
	be := newCountingBackend(answer("OK", `"alice@example.org"`, "Cache-Control", "max-age=3600"))
	c := newLookupClient(b, Options{URLs: []string{startHTTPTest(b, be)}, Cache: cache})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Lookup(ctx, "virtual", "postmaster@example.org"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// BenchmarkLookupCached measures a lookup answered from the cache.
func BenchmarkLookupCached(b *testing.B) { benchLookup(b, NewCache(10000, 0, 0)) }

// BenchmarkLookupUncached measures a lookup that goes to a fast local
// backend over a keep-alive connection.
func BenchmarkLookupUncached(b *testing.B) { benchLookup(b, nil) }

// TestDeriveOncePerCachedReply: a value derived from a cached reply is
// computed once, then served from the entry; a new reply starts afresh.
func TestDeriveOncePerCachedReply(t *testing.T) {
	c := NewCache(10, time.Hour, 0)
	now := time.Now()
	c.put("k", Result{Status: Found, Data: json.RawMessage(`"a"`)}, cachePolicy{received: now}, now)
	calls := 0
	derive := func(d json.RawMessage) any { calls++; return string(d) + "!" }
	for i := 0; i < 3; i++ {
		r, ok := c.get("k", now)
		if !ok {
			t.Fatal("not cached")
		}
		if v := r.Derive(derive); v != `"a"!` {
			t.Fatalf("derived %v", v)
		}
	}
	if calls != 1 {
		t.Errorf("derived %d times for one cached reply", calls)
	}
	c.put("k", Result{Status: Found, Data: json.RawMessage(`"b"`)}, cachePolicy{received: now}, now)
	r, _ := c.get("k", now)
	if v := r.Derive(derive); v != `"b"!` || calls != 2 {
		t.Errorf("after a new reply: %v, %d calls", v, calls)
	}
	// A result that did not come from the cache derives every time.
	plain := Result{Status: Found, Data: json.RawMessage(`"c"`)}
	plain.Derive(derive)
	plain.Derive(derive)
	if calls != 4 {
		t.Errorf("uncached result: %d calls", calls)
	}
}

// TestLookupRawAtUsesNow: the cache judges freshness by the caller's
// clock reading, and a zero one means now.
func TestLookupRawAtUsesNow(t *testing.T) {
	be := newCountingBackend(answer("OK", `"alice@example.org"`, "Cache-Control", "max-age=60"))
	c := newLookupClient(t, Options{URLs: []string{startHTTPTest(t, be)}, Cache: NewCache(10, 0, 0)})
	ctx := context.Background()
	obj := json.RawMessage(`"postmaster@example.org"`)
	for _, step := range []struct {
		now  time.Time
		want int64 // backend requests so far
	}{
		{time.Time{}, 1},                     // a miss
		{time.Now(), 1},                      // fresh
		{time.Time{}, 1},                     // fresh: the clock is read
		{time.Now().Add(2 * time.Minute), 2}, // stale at that time
	} {
		if _, err := c.LookupRawAt(ctx, step.now, "virtual", obj); err != nil {
			t.Fatal(err)
		}
		if got := be.requests.Load(); got != step.want {
			t.Fatalf("at %v: %d backend requests, want %d", step.now, got, step.want)
		}
	}
}
