package remote

import (
	"context"
)

type uncachedKey struct{}

// Uncached returns a context under which Lookup and LookupRaw send every
// call to the backend: the cache is neither read nor filled (no stale
// answer on failure either) and identical lookups in flight are not
// coalesced. For requests that count at the backend: a policy request
// feeds a sending quota, so two identical ones must be two requests.
func Uncached(ctx context.Context) context.Context {
	return context.WithValue(ctx, uncachedKey{}, true)
}

// IsUncached reports whether ctx comes from Uncached.
func IsUncached(ctx context.Context) bool {
	return ctx.Value(uncachedKey{}) != nil
}

// lookupUncached is LookupRaw's path under Uncached: one fetch, with the
// same overall Timeout, outside the cache and the flight group.
func (c *Client) lookupUncached(ctx context.Context, verb string, body []byte) (Result, error) {
	if c.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
		defer cancel()
	}
	res, _, err := c.fetch(ctx, verb, body)
	return res, err
}
