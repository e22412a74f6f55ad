package remote

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them
// (backend connections, singleflight calls, test servers).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// blockingBackend counts requests and holds every one until release is
// closed.
func blockingBackend(release <-chan struct{}, reply http.HandlerFunc) *countingBackend {
	return newCountingBackend(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
			reply(w, r)
		case <-r.Context().Done():
		}
	})
}

// TestCoalescing: 100 identical lookups in flight at once make one backend
// request, whether or not the reply is cacheable. synctest.Wait returns
// only once every caller is blocked waiting, so the backend answers after
// all 100 have joined.
func TestCoalescing(t *testing.T) {
	tests := []struct {
		name  string
		cache *Cache
		reply http.HandlerFunc
	}{
		{"no cache", nil, answer("OK", `"a"`)},
		{"cacheable", NewCache(10, 0, 0), answer("OK", `"a"`, "Cache-Control", "max-age=60")},
		{"no-store", NewCache(10, 0, 0), answer("OK", `"a"`, "Cache-Control", "no-store")},
		{"KO", nil, answer("KO", `null`)},
		{"failure", nil, failWith(503)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				release := make(chan struct{})
				be := blockingBackend(release, tc.reply)
				c, _ := pipeClient(t, be, Options{Cache: tc.cache})
				const callers = 100
				var (
					wg      sync.WaitGroup
					results [callers]Result
					errs    [callers]error
				)
				for i := range callers {
					wg.Go(func() { results[i], errs[i] = c.Lookup(t.Context(), "virtual", "same") })
				}
				synctest.Wait()
				if n := be.requests.Load(); n != 1 {
					t.Fatalf("%d backend requests with %d callers waiting, want 1", n, callers)
				}
				close(release)
				wg.Wait()
				for i := range callers {
					if tc.name == "failure" {
						if re := asError(t, errs[i]); re.Kind != "http" {
							t.Fatalf("caller %d: %+v", i, re)
						}
						continue
					}
					if errs[i] != nil || results[i].Stale || string(results[i].Data) != string(results[0].Data) {
						t.Fatalf("caller %d: %+v %v", i, results[i], errs[i])
					}
				}
				if n := be.requests.Load(); n != 1 {
					t.Fatalf("%d backend requests, want 1", n)
				}
			})
		})
	}
}

// TestCoalescingDistinctKeys: only identical lookups are coalesced.
func TestCoalescingDistinctKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		be := blockingBackend(release, answer("OK", `"a"`))
		c, _ := pipeClient(t, be, Options{})
		var wg sync.WaitGroup
		for _, q := range []struct{ verb, obj string }{{"virtual", "a"}, {"virtual", "b"}, {"domains", "a"}, {"virtual", "a"}} {
			wg.Go(func() {
				if _, err := c.Lookup(t.Context(), q.verb, q.obj); err != nil {
					t.Error(err)
				}
			})
		}
		synctest.Wait()
		if n := be.requests.Load(); n != 3 {
			t.Fatalf("%d backend requests, want 3", n)
		}
		close(release)
		wg.Wait()
	})
}

// TestCoalescingLeaderCancelled: the caller whose lookup started the
// backend request gives up; the others still get the answer, and no
// second request is made.
func TestCoalescingLeaderCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		be := blockingBackend(release, answer("OK", `"a"`))
		c, _ := pipeClient(t, be, Options{})
		ctx, cancel := context.WithCancel(t.Context())
		var leaderErr error
		var wg sync.WaitGroup
		wg.Go(func() { _, leaderErr = c.Lookup(ctx, "virtual", "k") })
		synctest.Wait() // the leader's request is at the backend
		var others [10]error
		for i := range others {
			wg.Go(func() { _, others[i] = c.Lookup(t.Context(), "virtual", "k") })
		}
		synctest.Wait()
		cancel()
		synctest.Wait()
		close(release)
		wg.Wait()
		if re := asError(t, leaderErr); re.Kind != "timeout" {
			t.Fatalf("leader: %+v", re)
		}
		for i, err := range others {
			if err != nil {
				t.Fatalf("caller %d failed with the leader: %v", i, err)
			}
		}
		if n := be.requests.Load(); n != 1 {
			t.Fatalf("%d backend requests, want 1", n)
		}
	})
}
