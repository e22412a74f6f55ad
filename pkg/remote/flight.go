package remote

import (
	"context"
	"sync"
	"time"
)

// flightGroup coalesces identical lookups in flight into one backend
// request, whether or not the reply turns out to be cacheable.
//
// The first caller for a key (the leader) runs the request in its own
// goroutine: a goroutine per lookup (singleflight's DoChan) cost more
// than a third of an uncached lookup's CPU in shitenno (goroutine start,
// stack growth through net/http, cross-thread wake-ups; see
// BenchmarkPostfixRemoteUncached in pkg/bridge).
type flightGroup struct {
	mu    sync.Mutex
	calls map[string]*flightCall
}

// flightCall is one request in flight and the callers waiting for it.
type flightCall struct {
	done    chan struct{} // closed when res, pol and err are set
	res     Result
	pol     cachePolicy
	err     error
	waiters int // callers that still want the answer, leader included
	cancel  context.CancelCauseFunc
	key     string
}

// do runs fn once per key at a time. Each caller waits at most timeout
// (0: no bound of its own) within ctx's deadline. fn gets a context that
// keeps the first caller's deadline but not its cancellation, so one
// impatient caller does not fail the others; it is cancelled when every
// caller has given up. Followers return as soon as their own time is up;
// the leader, which runs fn itself, returns a timeout error once fn
// returns (at once when nobody else waits, since fn is then cancelled;
// otherwise by the deadline).
func (f *flightGroup) do(ctx context.Context, timeout time.Duration, key string, fn func(context.Context) (Result, cachePolicy, error)) (Result, cachePolicy, error) {
	f.mu.Lock()
	if c, ok := f.calls[key]; ok {
		c.waiters++
		f.mu.Unlock()
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		select {
		case <-c.done:
			return c.res, c.pol, c.err
		case <-ctx.Done():
			f.leave(c, context.Cause(ctx))
			return Result{}, cachePolicy{}, &Error{Kind: KindTimeout, Reason: "backend timeout", Err: ctx.Err()}
		}
	}
	// The cancellation cause is the last caller's: fn can tell callers
	// that ran out of time (the backend was slow) from callers that went
	// away (it says nothing about the backend).
	//
	// The leader's Timeout lives on fctx alone, whose deadline is the
	// leader's: a second timer on the leader's own context would fire at
	// the same instant (one timer, context and cancel registration less
	// per lookup, BenchmarkLookupClientOnly). Its AfterFunc watches the
	// caller's ctx for the caller's own deadline or cancellation.
	fctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	dl, ok := ctx.Deadline()
	if timeout > 0 {
		if t := time.Now().Add(timeout); !ok || t.Before(dl) {
			dl, ok = t, true
		}
	}
	if ok {
		var stopDL context.CancelFunc
		fctx, stopDL = context.WithDeadline(fctx, dl)
		defer stopDL()
	}
	c := &flightCall{done: make(chan struct{}), waiters: 1, cancel: cancel, key: key}
	if f.calls == nil {
		f.calls = make(map[string]*flightCall)
	}
	f.calls[key] = c
	f.mu.Unlock()

	stop := context.AfterFunc(ctx, func() { f.leave(c, context.Cause(ctx)) })
	finished := false
	defer func() {
		stop()
		cancel(nil)
		f.mu.Lock()
		if f.calls[key] == c {
			delete(f.calls, key)
		}
		f.mu.Unlock()
		if !finished {
			// fn panicked: release the followers with a failure, then let
			// the panic go on in the leader.
			c.err = &Error{Kind: KindTransport, Reason: "internal error"}
		}
		close(c.done)
	}()
	c.res, c.pol, c.err = fn(fctx)
	finished = true
	if err := ctx.Err(); err != nil {
		return Result{}, cachePolicy{}, &Error{Kind: KindTimeout, Reason: "backend timeout", Err: err}
	}
	// fctx ends before the deferred cancel only at the leader's deadline
	// (or when every caller left, which the leader does only with ctx).
	if fctx.Err() != nil {
		return Result{}, cachePolicy{}, &Error{Kind: KindTimeout, Reason: "backend timeout", Err: context.DeadlineExceeded}
	}
	return c.res, c.pol, c.err
}

// leave records that one caller no longer waits, for cause; the last one
// out cancels the request with its cause, and nobody may join it any more.
func (f *flightGroup) leave(c *flightCall, cause error) {
	f.mu.Lock()
	c.waiters--
	last := c.waiters == 0
	if last && f.calls[c.key] == c {
		delete(f.calls, c.key)
	}
	f.mu.Unlock()
	if last {
		c.cancel(cause)
	}
}
