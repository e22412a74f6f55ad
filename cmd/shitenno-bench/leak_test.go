package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
	"github.com/shitenno/shitenno/pkg/bridge"
	"github.com/shitenno/shitenno/pkg/remote"
	"github.com/shitenno/shitenno/pkg/socketmap"
)

// The leak check of issue 6: a million lookups through socketmap.Server
// and bridge.Postfix must leave the heap where it was. It compares live
// heap (after forced GCs) before and after, with a bound far above noise
// but far below what a leak of even a few bytes per lookup would add; it
// asserts no timing.
//
// With -short (100,000) or the race detector (40,000, make unit) it does
// fewer lookups; `make bench` runs the full million and records the
// figures.

const leakBound = 2 << 20 // bytes of live heap growth tolerated

// answerBackend answers the benchmark data set without HTTP.
type answerBackend struct{}

func (answerBackend) Lookup(ctx context.Context, verb string, object any) (remote.Result, error) {
	b, err := json.Marshal(object)
	if err != nil {
		return remote.Result{}, err
	}
	return answerBackend{}.LookupRaw(ctx, verb, b)
}

func (answerBackend) LookupRaw(_ context.Context, verb string, object json.RawMessage) (remote.Result, error) {
	var k string
	if verb != postfixVerb || json.Unmarshal(object, &k) != nil {
		return remote.Result{}, remote.Failf("unexpected request")
	}
	i, ok := keyIndex([]byte(k))
	if !ok || !known(i) {
		return remote.Result{Status: remote.NotFound}, nil
	}
	return remote.Result{Status: remote.Found, Data: json.RawMessage(`"` + virtualValue(i) + `"`)}, nil
}

func (b answerBackend) LookupObject(ctx context.Context, verb string, o remote.Object) (remote.Result, error) {
	return b.LookupRaw(ctx, verb, o.JSON())
}

// memTransport is an in-memory backend behind remote.Client: the full
// client path (encoding, coalescing, cache, reply parsing) without
// sockets. Replies carry max-age, so the cache fills once and then hits.
type memTransport struct{}

func (memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	var r struct {
		Verb   string
		Object json.RawMessage
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	res, _ := answerBackend{}.LookupRaw(req.Context(), r.Verb, r.Object)
	status := "KO"
	if res.Status == remote.Found {
		status = "OK"
	}
	data := res.Data
	if data == nil {
		data = json.RawMessage("null")
	}
	out := fmt.Sprintf(`{"Verb":%q,"Object":%s,"Status":%q,"Data":%s}`, r.Verb, r.Object, status, data)
	return &http.Response{
		StatusCode:    http.StatusOK,
		Header:        http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"max-age=3600"}},
		Body:          io.NopCloser(bytes.NewReader([]byte(out))),
		ContentLength: int64(len(out)),
		Request:       req,
	}, nil
}

func TestNoHeapGrowth(t *testing.T) {
	n := leakLookups()
	cached, err := remote.New(remote.Options{URLs: []string{"http://backend.invalid/"}, Timeout: 5 * time.Second,
		Cache: remote.NewCache(10000, 0, 0), Transport: memTransport{}})
	if err != nil {
		t.Fatal(err)
	}
	// The server alone, answering from a table without allocating, shows
	// what the transport costs (net.Pipe's deadline timers allocate; a
	// real socket's do not, see BenchmarkServerRoundTrip).
	var values [numKeys]string
	for i := range values {
		values[i] = virtualValue(i)
	}
	table := socketmap.HandlerFunc(func(_ context.Context, r socketmap.Request) socketmap.Reply {
		i, ok := keyIndex(r.Key)
		if !ok || !known(i) {
			return socketmap.Reply{Kind: socketmap.NotFound}
		}
		return socketmap.Reply{Kind: socketmap.OK, Text: values[i]}
	})
	for _, tc := range []struct {
		name    string
		handler socketmap.Handler
	}{
		{"server only (table handler)", table},
		{"server + postfix bridge + fake backend", &bridge.Postfix{Backend: answerBackend{}}},
		{"server + postfix bridge + remote client with cache", &bridge.Postfix{Backend: cached}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := leakCheck(t, tc.handler, n)
			t.Logf("%d lookups: live heap %+d bytes (bound %d), %.1f allocs and %.0f bytes allocated per lookup, goroutines %d → %d",
				n, st.growth, leakBound, st.allocs, st.bytes, st.g0, st.g1)
			if out := os.Getenv("SHITENNO_BENCH_LEAK_OUT"); out != "" {
				f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
				if err == nil {
					fmt.Fprintf(f, "| %s | %d | %+.1f KB | %.1f | %.0f |\n", tc.name, n, float64(st.growth)/1024, st.allocs, st.bytes)
					f.Close()
				}
			}
			if st.growth > leakBound {
				t.Errorf("live heap grew by %d bytes over %d lookups (bound %d): something keeps per-lookup memory", st.growth, n, leakBound)
			}
			if st.g1 > st.g0 {
				t.Errorf("goroutines grew from %d to %d", st.g0, st.g1)
			}
		})
	}
}

// TestLeakCheckDetectsALeak shows the check can fail: a handler that
// keeps 128 bytes per lookup must push the heap past the bound.
func TestLeakCheckDetectsALeak(t *testing.T) {
	var kept [][]byte
	var mu sync.Mutex
	leaky := socketmap.HandlerFunc(func(_ context.Context, r socketmap.Request) socketmap.Reply {
		mu.Lock()
		kept = append(kept, make([]byte, 128))
		mu.Unlock()
		i, ok := keyIndex(r.Key)
		if !ok || !known(i) {
			return socketmap.Reply{Kind: socketmap.NotFound}
		}
		return socketmap.Reply{Kind: socketmap.OK, Text: virtualValue(i)}
	})
	st := leakCheck(t, leaky, min(leakLookups(), 100_000))
	if st.growth <= leakBound {
		t.Fatalf("a 128-byte-per-lookup leak grew the live heap by only %d bytes (bound %d): the check cannot see leaks", st.growth, leakBound)
	}
	runtime.KeepAlive(kept)
}

// leakLookups is a million, fewer where the run must stay short.
func leakLookups() int {
	switch {
	case raceEnabled:
		return 40_000
	case testing.Short():
		return 100_000
	}
	return 1_000_000
}

type leakStats struct {
	growth        int64
	allocs, bytes float64
	g0, g1        int
}

// leakCheck runs n lookups over 4 connections through a Server and the
// postfix bridge, after a warm-up that fills every buffer and cache.
func leakCheck(t *testing.T, h socketmap.Handler, n int) leakStats {
	// In-memory connections (net.Pipe): the check is about the server's
	// and bridge's memory, not the kernel's sockets, and pipes make a
	// million lookups take seconds.
	l := testutil.NewPipeListener()
	srv := &socketmap.Server{Handler: h}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	defer func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-done; !errors.Is(err, socketmap.ErrServerClosed) {
			t.Error(err)
		}
	}()
	const conns = 4
	w := postfixWire()
	var clients []*socketmapClient
	for range conns {
		c, _, err := l.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, &socketmapClient{streamConn: newStreamConn(c), w: &w})
	}
	drive := func(total int) error {
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for ci, c := range clients {
			wg.Go(func() {
				for j := ci; j < total; j += conns {
					if err := c.lookup(j%numKeys, time.Now()); err != nil {
						errs <- fmt.Errorf("lookup %d: %w", j, err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		return <-errs
	}
	// Warm-up: every key once (fills the cache), every buffer grown.
	if err := drive(4 * numKeys); err != nil {
		t.Fatal(err)
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()
	if err := drive(n); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	return leakStats{
		growth: int64(m1.HeapAlloc) - int64(m0.HeapAlloc),
		allocs: float64(m1.Mallocs-m0.Mallocs) / float64(n),
		bytes:  float64(m1.TotalAlloc-m0.TotalAlloc) / float64(n),
		g0:     g0,
		g1:     runtime.NumGoroutine(),
	}
}
