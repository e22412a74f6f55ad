package remote

import (
	"crypto/sha256"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Cache bounds. Replies are already at most MaxReplySize (1 MiB by
// default), but 10000 such entries would be 10 GiB: a cached entry is
// limited to maxEntryData bytes of Data and the whole cache to a byte
// budget (MaxCacheBytes at most), so the worst case stays far below a
// daemon's memory whatever the backend sends. Real replies (an alias, a
// passdb row) are a few hundred bytes.
const (
	maxEntryData  = 64 << 10
	maxCacheBytes = MaxCacheBytes
	// entryOverhead approximates the memory an entry costs beyond its Data
	// (entry struct with its key and memo, map slot), so that many
	// tiny entries count too. BenchmarkCacheMemory measures it.
	entryOverhead = 256
	// maxDelta is RFC 9111 §1.2.2's cap on delta-seconds (2^31 s).
	maxDelta = 1 << 31
)

// MaxCacheBytes is the largest byte budget a cache accepts, and the one
// NewCache uses.
const MaxCacheBytes = 64 << 20

// Cache holds backend replies in memory, bounded by a number of entries
// and by bytes, whichever is reached first. Eviction is W-TinyLFU
// (tinylfu.go): a lookup that would evict an entry looked up more often
// than itself is not admitted, so a scan over more keys than the cache
// holds keeps part of them cached instead of evicting each one before
// its next use, as an LRU does. It honours the backend's Cache-Control
// and Expires as a shared cache in the sense of RFC 9111 (one shitenno
// serves every user of the mail system): see parseCachePolicy. Its
// methods are safe for concurrent use; a nil *Cache caches nothing. A
// cached Result's Data is shared by every lookup it answers: callers read
// it, never modify it.
type Cache struct {
	maxEntries  int
	maxBytes    int64
	defaultTTL  time.Duration
	negativeTTL time.Duration

	mu sync.Mutex
	// items is keyed by the entry's keyHash: a lookup then compares the
	// full key in the entry, which it reads anyway, instead of chasing a
	// key string held in its own allocation (a cache miss per hit in a
	// daemon whose entries are not in the CPU's caches). Two keys of one
	// hash cannot both be held; the newer reply takes the place.
	items map[uint64]*cacheEntry
	bytes int64 // size() of every entry held
	tinyLFU
	seed uint64 // of keyHash; set once at creation
}

// cacheEntry is one held reply. What a hit reads comes first, so that
// it spans as few cache lines as possible, with the memo of the reply
// the entry was made for in the same allocation.
type cacheEntry struct {
	key entryKey
	res Result
	// The entry is fresh while now < expires; after that it is kept, but
	// only served after a backend failure, while now < staleUntil
	// (stale-if-error). staleUntil >= expires.
	expires time.Time
	region  region
	hit     bool // protected, and hit since it got there or had its second chance
	memo    memo // res.memo until the reply is replaced
	// hash is the key's keyHash: the map's key and the sketch's input.
	hash       uint64
	staleUntil time.Time
	prev, next *cacheEntry
}

// entryKey is a key as an entry holds it: the key itself when it is a
// SHA-256 digest (every key LookupRaw makes), else its digest (keys of
// other lengths, in tests).
type entryKey [sha256.Size]byte

func makeEntryKey(key string) entryKey {
	if len(key) == sha256.Size {
		return entryKey([]byte(key))
	}
	return sha256.Sum256([]byte(key))
}

func (e *cacheEntry) size() int64 { return int64(len(e.res.Data)) + entryOverhead }

// NewCache returns a cache of at most maxEntries replies and MaxCacheBytes
// bytes, or nil (no cache) when maxEntries <= 0. defaultTTL is the
// lifetime of an OK reply, negativeTTL that of a KO reply, when the
// backend states none; 0 means such replies are not cached.
func NewCache(maxEntries int, defaultTTL, negativeTTL time.Duration) *Cache {
	return NewBoundedCache(maxEntries, MaxCacheBytes, defaultTTL, negativeTTL)
}

// NewBoundedCache is NewCache with a byte budget: the entries held never
// cost more than maxBytes together (clamped to MaxCacheBytes), each
// counted as its Data plus a fixed overhead. It returns nil when
// maxEntries or maxBytes is <= 0.
func NewBoundedCache(maxEntries int, maxBytes int64, defaultTTL, negativeTTL time.Duration) *Cache {
	if maxEntries <= 0 || maxBytes <= 0 {
		return nil
	}
	maxBytes = min(maxBytes, MaxCacheBytes)
	c := &Cache{
		maxEntries:  maxEntries,
		maxBytes:    maxBytes,
		defaultTTL:  max(defaultTTL, 0),
		negativeTTL: max(negativeTTL, 0),
		items:       make(map[uint64]*cacheEntry, min(maxEntries, 1024)),
		seed:        rand.Uint64(),
	}
	// The sketch is sized for the entries that can be held at once, which
	// the byte budget may make fewer than maxEntries.
	c.setBounds(maxEntries, maxBytes, int(min(int64(maxEntries), maxBytes/entryOverhead)))
	return c
}

// Len reports the number of entries held, fresh or stale.
func (c *Cache) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

// Bytes reports what the entries held cost against the byte budget.
func (c *Cache) Bytes() int64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// cachePolicy is what the backend's headers allow for one reply.
type cachePolicy struct {
	// noStore: the reply must not be stored (no-store, no-cache, private),
	// and any older entry for the same request is dropped.
	noStore bool
	// explicit: the reply states its freshness lifetime (s-maxage,
	// max-age or Expires); it then ends at expires, which may already
	// be past.
	explicit bool
	expires  time.Time
	// staleIfError is how long past expiry the reply may still be served
	// when the backend fails; 0 under must-revalidate.
	staleIfError time.Duration
	// received is when the reply arrived: DefaultTTL and NegativeTTL count
	// from it, so that every coalesced caller storing the same reply
	// stores the same expiry.
	received time.Time
}

// parseCachePolicy reads Cache-Control, Expires, Date and Age from a reply
// received at now (RFC 9111, RFC 5861 for stale-if-error).
//
// shitenno acts as a shared cache: s-maxage takes precedence over max-age,
// "private" is not stored, proxy-revalidate counts as must-revalidate,
// and so does s-maxage (it implies proxy-revalidate).
// "no-cache" means a reply may be stored but never reused without
// revalidation; shitenno does not revalidate (the backend protocol has no
// conditional requests), so such a reply would never be served, not even
// stale: it is not stored. A qualified no-cache="field" or private="field"
// is treated as the unqualified directive, which is the conservative
// reading. Where a directive is repeated, the first occurrence counts; an
// invalid delta-seconds counts as 0 (already stale), as RFC 9111 §4.2.1
// allows. The Age header is subtracted from the lifetime; Date is used only
// as the base of Expires, so a backend clock that is off does not shorten
// max-age.
//
// Complexity: one case per directive of RFC 9111 §5.2.2.
func parseCachePolicy(h http.Header, now time.Time) cachePolicy {
	p := cachePolicy{received: now}
	var (
		maxAge, sMaxAge, sie          int64
		haveMax, haveS, haveSIE, must bool
	)
	for _, line := range h.Values("Cache-Control") {
		for line != "" {
			var name, val string
			name, val, line = nextDirective(line)
			switch {
			case strings.EqualFold(name, "no-store"),
				strings.EqualFold(name, "no-cache"),
				strings.EqualFold(name, "private"):
				p.noStore = true
			case strings.EqualFold(name, "must-revalidate"),
				strings.EqualFold(name, "proxy-revalidate"):
				must = true
			case strings.EqualFold(name, "max-age"):
				if !haveMax {
					maxAge, haveMax = parseDelta(val), true
				}
			case strings.EqualFold(name, "s-maxage"):
				// For a shared cache s-maxage implies proxy-revalidate
				// (RFC 9111 §5.2.2.10): no stale-if-error either.
				if !haveS {
					sMaxAge, haveS = parseDelta(val), true
				}
				must = true
			case strings.EqualFold(name, "stale-if-error"):
				if !haveSIE {
					sie, haveSIE = parseDelta(val), true
				}
			}
		}
	}
	var lifetime time.Duration
	switch {
	case haveS:
		p.explicit, lifetime = true, time.Duration(sMaxAge)*time.Second
	case haveMax:
		p.explicit, lifetime = true, time.Duration(maxAge)*time.Second
	default:
		if v := h.Values("Expires"); len(v) > 0 {
			// An invalid Expires ("0", say) means already expired
			// (RFC 9111 §5.3).
			p.explicit = true
			if exp, err := http.ParseTime(v[0]); err == nil {
				base := now
				if d := h.Get("Date"); d != "" {
					if t, err := http.ParseTime(d); err == nil {
						base = t
					}
				}
				lifetime = min(max(exp.Sub(base), 0), maxDelta*time.Second)
			}
		}
	}
	if p.explicit {
		// Age: the first member counts, an invalid one is ignored
		// (RFC 9111 §5.1).
		if v := h.Values("Age"); len(v) > 0 {
			a, _, _ := strings.Cut(v[0], ",")
			lifetime -= time.Duration(parseDelta(strings.TrimSpace(a))) * time.Second
		}
		p.expires = now.Add(lifetime)
	}
	if !must {
		p.staleIfError = time.Duration(sie) * time.Second
	}
	return p
}

// nextDirective splits the first directive off a Cache-Control value:
// name[=value] up to a comma that is not inside a quoted string, so that
// a quoted argument cannot smuggle in another directive. Quotes are
// removed from the value.
//
// Complexity: a byte scanner with quoted-string states (RFC 9110 §5.6.2);
// split up, the one grammar would be scattered.
func nextDirective(s string) (name, val, rest string) {
	i := 0
	for i < len(s) && s[i] != ',' && s[i] != '=' {
		i++
	}
	name = strings.TrimSpace(s[:i])
	if i < len(s) && s[i] == '=' {
		i++
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		start := i
		if i < len(s) && s[i] == '"' {
			var b strings.Builder
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				if b.Len() < 64 { // no directive we read has a longer value
					b.WriteByte(s[i])
				}
			}
			val = b.String()
			for i < len(s) && s[i] != ',' {
				i++
			}
		} else {
			for i < len(s) && s[i] != ',' {
				i++
			}
			val = strings.TrimSpace(s[start:i])
		}
	}
	if i < len(s) {
		i++ // the comma
	}
	return name, val, s[i:]
}

// parseDelta parses delta-seconds: digits only, capped at 2^31; anything
// else is invalid and gives 0.
func parseDelta(s string) int64 {
	if s == "" {
		return 0
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0
		}
		if n = n*10 + int64(s[i]-'0'); n >= maxDelta {
			return maxDelta
		}
	}
	return n
}

// cacheDigest hashes the request body into the cache key (as a string
// of its bytes), so a key never holds a password in plain text.
func cacheDigest(body []byte) [sha256.Size]byte { return sha256.Sum256(body) }

// get returns a fresh entry. Every call counts as a use of key for
// admission, found or not.
func (c *Cache) get(key string, now time.Time) (Result, bool) {
	if c == nil {
		return Result{}, false
	}
	h, k := keyHash(c.seed, key), makeEntryKey(key)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sketch.add(h)
	e := c.items[h]
	if e == nil || e.key != k {
		return Result{}, false
	}
	if now.Before(e.expires) {
		c.touch(e)
		return e.res, true
	}
	if !now.Before(e.staleUntil) {
		c.remove(e)
	}
	return Result{}, false
}

// stale returns an entry still within its stale-if-error window; the
// caller uses it only after the backend failed. The lookup was already
// counted by get.
func (c *Cache) stale(key string, now time.Time) (Result, bool) {
	if c == nil {
		return Result{}, false
	}
	h, k := keyHash(c.seed, key), makeEntryKey(key)
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.items[h]
	if e == nil || e.key != k {
		return Result{}, false
	}
	if !now.Before(e.staleUntil) {
		c.remove(e)
		return Result{}, false
	}
	c.touch(e)
	return e.res, true
}

// put stores a definitive reply as its policy allows. A reply that may not
// be stored still drops an older entry for the same request: the newest
// answer wins, and an old one must not come back through stale-if-error.
// A new entry may be refused admission (see Cache); a replaced one keeps
// its place.
func (c *Cache) put(key string, r Result, p cachePolicy, now time.Time) {
	if c == nil {
		return
	}
	expires, ok := c.expiry(r, p)
	staleUntil := expires.Add(p.staleIfError)
	h, k := keyHash(c.seed, key), makeEntryKey(key)
	if !ok || !now.Before(staleUntil) || len(r.Data) > maxEntryData {
		c.mu.Lock()
		if e := c.items[h]; e != nil && e.key == k {
			c.remove(e)
		}
		c.mu.Unlock()
		return
	}
	r.Stale = false
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.items[h]
	if e != nil && e.key != k {
		c.remove(e) // another key of the same hash: the newer reply wins
		e = nil
	}
	if e != nil {
		// A new reply: nothing derived from it yet. Results served from
		// the old one keep its memo.
		r.memo = &memo{}
		c.resize(e, func() { e.res, e.expires, e.staleUntil = r, expires, staleUntil })
		c.touch(e)
	} else {
		e = &cacheEntry{key: k, res: r, expires: expires, staleUntil: staleUntil, hash: h}
		e.res.memo = &e.memo
		c.items[h] = e
		c.bytes += e.size()
		c.insert(e)
	}
	c.evict(now)
}

// expiry is when a reply stops being fresh, and whether it may be stored
// at all: explicit freshness first, else the configured default for its
// status.
func (c *Cache) expiry(r Result, p cachePolicy) (time.Time, bool) {
	switch {
	case p.noStore:
		return time.Time{}, false
	case p.explicit:
		return p.expires, true
	}
	ttl := c.defaultTTL
	if r.Status == NotFound {
		ttl = c.negativeTTL
	}
	if ttl <= 0 {
		return time.Time{}, false
	}
	if p.received.IsZero() {
		return time.Time{}, false
	}
	return p.received.Add(ttl), true
}
