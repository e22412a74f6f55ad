package remote

import (
	"context"

	"golang.org/x/sync/singleflight"
)

// flightGroup coalesces identical lookups in flight into one backend
// request, whether or not the reply turns out to be cacheable.
type flightGroup struct{ g singleflight.Group }

type flightResult struct {
	res Result
	pol cachePolicy
}

// do runs fn once per key at a time. fn gets a context that keeps the first
// caller's deadline but not its cancellation, so one impatient caller does
// not fail the others; each caller still returns when its own ctx ends.
func (f *flightGroup) do(ctx context.Context, key string, fn func(context.Context) (Result, cachePolicy, error)) (Result, cachePolicy, error) {
	ch := f.g.DoChan(key, func() (any, error) {
		fctx := context.WithoutCancel(ctx)
		if dl, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			fctx, cancel = context.WithDeadline(fctx, dl)
			defer cancel()
		}
		r, p, err := fn(fctx)
		return flightResult{r, p}, err
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return Result{}, cachePolicy{}, r.Err
		}
		fr := r.Val.(flightResult)
		return fr.res, fr.pol, nil
	case <-ctx.Done():
		return Result{}, cachePolicy{}, &Error{Kind: "timeout", Reason: "backend timeout", Err: ctx.Err()}
	}
}
