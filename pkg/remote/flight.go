package remote

import (
	"context"
	"hash/maphash"
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
//
// The calls are spread over shards by key: at 64 connections one mutex
// for all of them was the daemon's most contended lock (mutex profile
// under make bench's load).
type flightGroup struct {
	shards [flightShards]flightShard
}

const flightShards = 16

// flightShard is one lock's share of the calls in flight.
type flightShard struct {
	mu    sync.Mutex
	calls map[string]*flightCall
}

// flightSeed hashes keys to shards.
var flightSeed = maphash.MakeSeed()

func (f *flightGroup) shard(key string) *flightShard {
	return &f.shards[maphash.String(flightSeed, key)%flightShards]
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
	shard   *flightShard
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
	sh := f.shard(key)
	// Made before the lock, so that no allocation (which may assist the
	// GC) lengthens the critical section; wasted by a follower.
	c := &flightCall{done: make(chan struct{}), waiters: 1, key: key, shard: sh}
	sh.mu.Lock()
	if c, ok := sh.calls[key]; ok {
		c.waiters++
		sh.mu.Unlock()
		return c.follow(ctx, timeout)
	}
	if sh.calls == nil {
		sh.calls = make(map[string]*flightCall)
	}
	sh.calls[key] = c
	sh.mu.Unlock()

	// The cancellation cause is the last caller's: fn can tell callers
	// that ran out of time (the backend was slow) from callers that went
	// away (it says nothing about the backend).
	//
	// The leader's Timeout lives on fctx alone, whose deadline is the
	// leader's: a second timer on the leader's own context would fire at
	// the same instant (one timer, context and cancel registration less
	// per lookup, BenchmarkLookupClientOnly). Its AfterFunc watches the
	// caller's ctx for the caller's own deadline or cancellation.
	//
	// All this is set up outside the shard's lock: c.cancel is only called
	// by the last caller out, which the leader, whose AfterFunc is
	// registered below, can be at the earliest.
	fctx, cancel, stopDL := leaderContext(ctx, timeout)
	defer stopDL()
	c.cancel = cancel

	stop := context.AfterFunc(ctx, func() { leave(c, context.Cause(ctx)) })
	finished := false
	defer func() {
		stop()
		cancel(nil)
		sh.mu.Lock()
		if sh.calls[key] == c {
			delete(sh.calls, key)
		}
		sh.mu.Unlock()
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
// follow waits, within timeout, for the call another caller leads.
func (c *flightCall) follow(ctx context.Context, timeout time.Duration) (Result, cachePolicy, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	select {
	case <-c.done:
		return c.res, c.pol, c.err
	case <-ctx.Done():
		leave(c, context.Cause(ctx))
		return Result{}, cachePolicy{}, &Error{Kind: KindTimeout, Reason: "backend timeout", Err: ctx.Err()}
	}
}

// leaderContext is the context fn runs under: not cancelled with the
// leader's ctx (cancel, the last caller out, does that), ending at the
// earlier of ctx's deadline and timeout from now. stop releases it.
func leaderContext(ctx context.Context, timeout time.Duration) (fctx context.Context, cancel context.CancelCauseFunc, stop context.CancelFunc) {
	fctx, cancel = context.WithCancelCause(context.WithoutCancel(ctx))
	dl, ok := ctx.Deadline()
	if timeout > 0 {
		if t := time.Now().Add(timeout); !ok || t.Before(dl) {
			dl, ok = t, true
		}
	}
	if !ok {
		return fctx, cancel, func() {}
	}
	fctx, stop = context.WithDeadline(fctx, dl)
	return fctx, cancel, stop
}

func leave(c *flightCall, cause error) {
	sh := c.shard
	sh.mu.Lock()
	c.waiters--
	last := c.waiters == 0
	if last && sh.calls[c.key] == c {
		delete(sh.calls, c.key)
	}
	sh.mu.Unlock()
	if last {
		c.cancel(cause)
	}
}
