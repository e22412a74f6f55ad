package remote

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
)

// The leader of a flight runs the request in its own goroutine (no
// goroutine per lookup). These tests pin what that must not change: a
// caller alone in its flight still returns as soon as its ctx ends, and a
// request nobody waits for any more is cancelled at the backend.

// cancelAwareClient is a client of a pipeClient backend that holds every
// request until release is closed and counts in cancelled the requests
// whose client went away first.
func cancelAwareClient(t testing.TB) (c *Client, be *countingBackend, release chan struct{}, cancelled *atomic.Int64) {
	release, cancelled = make(chan struct{}), new(atomic.Int64)
	be = newCountingBackend(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
			answer("OK", `"a"`)(w, r)
		case <-r.Context().Done():
			cancelled.Add(1)
		}
	})
	c, _ = pipeClient(t, be, Options{})
	return c, be, release, cancelled
}

// TestFlightLeaderAloneCancelled: with nobody else waiting, the leader's
// cancellation aborts the request and the leader returns at once.
func TestFlightLeaderAloneCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _, release, cancelled := cancelAwareClient(t)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { _, err := c.Lookup(ctx, "virtual", "k"); done <- err }()
		synctest.Wait() // the request is at the backend
		cancel()
		synctest.Wait()
		select {
		case err := <-done:
			if re := asError(t, err); re.Kind != "timeout" {
				t.Fatalf("leader: %+v", re)
			}
		default:
			t.Fatal("the cancelled leader did not return before the backend answered")
		}
		if n := cancelled.Load(); n != 1 {
			t.Fatalf("%d backend requests cancelled, want 1", n)
		}
		close(release)
	})
}

// TestFlightAllCancelled: when every caller of a flight gives up, the
// request is cancelled and all of them return; a later lookup makes a new
// request instead of joining the abandoned one.
func TestFlightAllCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, be, release, cancelled := cancelAwareClient(t)
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		errs := make([]error, 5)
		for i := range errs {
			wg.Go(func() { _, errs[i] = c.Lookup(ctx, "virtual", "k") })
		}
		synctest.Wait()
		if n := be.requests.Load(); n != 1 {
			t.Fatalf("%d backend requests for 5 identical lookups, want 1", n)
		}
		cancel()
		wg.Wait()
		for i, err := range errs {
			if re := asError(t, err); re.Kind != "timeout" {
				t.Fatalf("caller %d: %+v", i, re)
			}
		}
		synctest.Wait()
		if n := cancelled.Load(); n != 1 {
			t.Fatalf("%d backend requests cancelled, want 1", n)
		}
		close(release)
		if _, err := c.Lookup(t.Context(), "virtual", "k"); err != nil {
			t.Fatal(err)
		}
		if n := be.requests.Load(); n != 2 {
			t.Fatalf("%d backend requests, want 2", n)
		}
	})
}
