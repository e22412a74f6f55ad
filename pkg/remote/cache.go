package remote

import (
	"crypto/sha256"
	"net/http"
	"time"
)

// Cache holds backend replies in memory. (Placeholder: issue #8 fills the
// policy; this version caches nothing.)
type Cache struct{}

// cachePolicy is what the backend's headers allow for one reply.
type cachePolicy struct {
	fresh        time.Duration // explicit freshness lifetime; 0: none
	staleIfError time.Duration
	noStore      bool
}

func parseCachePolicy(h http.Header, now time.Time) cachePolicy { return cachePolicy{} }

// cacheKey hashes the request body, so a key never holds a password in
// plain text.
func cacheKey(body []byte) string {
	s := sha256.Sum256(body)
	return string(s[:])
}

func (c *Cache) get(key string, now time.Time) (Result, bool)       { return Result{}, false }
func (c *Cache) stale(key string, now time.Time) (Result, bool)     { return Result{}, false }
func (c *Cache) put(key string, r Result, p cachePolicy, now time.Time) {}
