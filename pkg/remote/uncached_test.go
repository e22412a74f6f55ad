package remote

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
)

// TestUncached: under Uncached, identical lookups in flight each reach
// the backend, a cacheable reply is not stored, and a cached one is not
// served.
func TestUncached(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		be := blockingBackend(release, answer("OK", `"a"`, "Cache-Control", "max-age=60"))
		cache := NewCache(10, 0, 0)
		c, _ := pipeClient(t, be, Options{Cache: cache})
		ctx := Uncached(t.Context())
		const callers = 5
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				if r, err := c.Lookup(ctx, "policy", "same"); err != nil || string(r.Data) != `"a"` {
					t.Errorf("lookup: %+v %v", r, err)
				}
			})
		}
		synctest.Wait()
		if n := be.requests.Load(); n != callers {
			t.Fatalf("%d backend requests for %d identical uncached lookups in flight", n, callers)
		}
		close(release)
		wg.Wait()
		if cache.Len() != 0 {
			t.Fatalf("uncached reply stored: %d entries", cache.Len())
		}
		// A cached reply (from an ordinary lookup) is not served either.
		if _, err := c.Lookup(context.Background(), "policy", "same"); err != nil {
			t.Fatal(err)
		}
		before := be.requests.Load()
		if _, err := c.Lookup(ctx, "policy", "same"); err != nil {
			t.Fatal(err)
		}
		if be.requests.Load() != before+1 {
			t.Fatal("uncached lookup answered from the cache")
		}
	})
}
