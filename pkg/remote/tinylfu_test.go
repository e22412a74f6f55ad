package remote

import (
	"container/list"
	"crypto/sha256"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// scanKey is the cache key of the i-th distinct lookup, shaped as
// LookupRaw makes it.
func scanKey(i int) string {
	return cacheKey(EncodeRequest(nil, "virtual", []byte(fmt.Sprintf("%q", fmt.Sprintf("user%d@example.org", i)))))
}

// checkInvariants walks the regions: every entry is in the list of its
// region, the counts and byte sums agree with the map and c.bytes, and
// both bounds hold.
func checkInvariants(t testing.TB, c *Cache) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	n, total := 0, int64(0)
	for r := range c.lists {
		l := &c.lists[r]
		ln, lb := 0, int64(0)
		for e := l.root.next; e != &l.root; e = e.next {
			if e.region != region(r) || c.items[e.hash] != e {
				t.Fatalf("entry in list %d: region %d, in map %v", r, e.region, c.items[e.hash] == e)
			}
			ln++
			lb += e.size()
		}
		if ln != l.n || lb != l.bytes {
			t.Fatalf("list %d: %d entries %d bytes, counted %d %d", r, ln, lb, l.n, l.bytes)
		}
		n += ln
		total += lb
	}
	if n != len(c.items) || total != c.bytes {
		t.Fatalf("lists hold %d entries %d bytes; map %d, bytes %d", n, total, len(c.items), c.bytes)
	}
	if len(c.items) > c.maxEntries || c.bytes > c.maxBytes {
		t.Fatalf("%d entries, %d bytes: bounds %d, %d", len(c.items), c.bytes, c.maxEntries, c.maxBytes)
	}
}

// lruRef is the LRU the cache used before W-TinyLFU, for comparison.
type lruRef struct {
	max   int
	items map[string]*list.Element
	order list.List
}

func (l *lruRef) lookup(k string) bool {
	if e, ok := l.items[k]; ok {
		l.order.MoveToFront(e)
		return true
	}
	l.items[k] = l.order.PushFront(k)
	if l.order.Len() > l.max {
		delete(l.items, l.order.Remove(l.order.Back()).(string))
	}
	return false
}

// TestCacheCyclicScan is issue #21's requirement: 20000 distinct keys
// looked up over and over, in the same order, with a cache of 10000
// entries: at least 40% hits, where an LRU has none. The count is
// deterministic (the sketch hash is fixed).
func TestCacheCyclicScan(t *testing.T) {
	const keys, capacity, passes = 20000, 10000, 5
	t0 := time.Unix(1e9, 0)
	p := policyFor(t0, "Cache-Control", "max-age=3600")
	res := Result{Status: Found, Data: []byte(`"alias@example.org"`)}
	c := NewCache(capacity, 0, 0)
	c.seed = 0 // the same count on every run
	ref := &lruRef{max: capacity, items: map[string]*list.Element{}}
	k := make([]string, keys)
	for i := range k {
		k[i] = scanKey(i)
	}
	hits, lruHits, lookups := 0, 0, 0
	for pass := range passes {
		for _, key := range k {
			_, ok := c.get(key, t0)
			if !ok {
				c.put(key, res, p, t0)
			}
			lru := ref.lookup(key)
			if pass == 0 { // the first pass can only miss
				continue
			}
			lookups++
			if ok {
				hits++
			}
			if lru {
				lruHits++
			}
		}
		checkInvariants(t, c)
	}
	ratio := float64(hits) / float64(lookups)
	t.Logf("passes 2-%d: W-TinyLFU %d/%d hits (%.1f%%), LRU %d (%.1f%%); %d entries held",
		passes, hits, lookups, 100*ratio, lruHits, 100*float64(lruHits)/float64(lookups), c.Len())
	if ratio < 0.40 {
		t.Fatalf("hit ratio %.3f, want >= 0.40", ratio)
	}
	if lruHits != 0 {
		t.Fatalf("the reference LRU hit %d times on a cyclic scan", lruHits)
	}
	if c.Len() != capacity {
		t.Fatalf("%d entries, want a full cache of %d", c.Len(), capacity)
	}
}

// TestCacheScanSeeds: the cyclic scan's hit ratio does not depend on
// the sketch's random seed.
func TestCacheScanSeeds(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	p := policyFor(t0, "Cache-Control", "max-age=3600")
	k := make([]string, 4000)
	for i := range k {
		k[i] = scanKey(i)
	}
	for seed := range uint64(8) {
		c := NewCache(2000, 0, 0)
		c.seed = seed * 0x9e3779b97f4a7c15
		hits := 0
		for pass := range 3 {
			for _, key := range k {
				if _, ok := c.get(key, t0); ok {
					if pass > 0 {
						hits++
					}
				} else {
					c.put(key, Result{Status: Found}, p, t0)
				}
			}
		}
		if r := float64(hits) / float64(2*len(k)); r < 0.45 {
			t.Errorf("seed %#x: hit ratio %.3f", c.seed, r)
		}
	}
}

// TestCacheHotKeysSurviveScan: keys asked all the time stay cached while
// a scan of one-off keys (a dictionary attack, a bulk postmap) passes
// through, 2000 between two rounds of the hot keys: more than the cache
// holds, so an LRU (the reference) loses every hot key each time.
func TestCacheHotKeysSurviveScan(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	p := policyFor(t0, "Cache-Control", "max-age=3600")
	res := Result{Status: Found}
	c := NewCache(1000, 0, 0)
	c.seed = 0 // reproducible
	ref := &lruRef{max: 1000, items: map[string]*list.Element{}}
	lookup := func(key string) bool {
		ref.lookup(key)
		if _, ok := c.get(key, t0); ok {
			return true
		}
		c.put(key, res, p, t0)
		return false
	}
	hot := make([]string, 500)
	for i := range hot {
		hot[i] = scanKey(i)
	}
	for range 3 {
		for _, k := range hot {
			lookup(k)
		}
	}
	misses, lruMisses := 0, 0
	for round := range 20 {
		for j := range 2000 {
			lookup(scanKey(1_000_000 + 2000*round + j))
		}
		for _, k := range hot {
			if _, ok := ref.items[k]; !ok {
				lruMisses++
			}
			if !lookup(k) {
				misses++
			}
		}
	}
	checkInvariants(t, c)
	t.Logf("hot keys missed: W-TinyLFU %d, LRU %d of %d", misses, lruMisses, 20*len(hot))
	if misses > 0 || lruMisses != 20*len(hot) {
		t.Fatalf("hot keys missed %d times during the scan (LRU %d)", misses, lruMisses)
	}
}

// TestCacheByteBound: with MaxBytes the binding bound, the entries held
// never cost more than it, whatever their sizes, and the cache still
// fills to it.
func TestCacheByteBound(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	p := policyFor(t0, "Cache-Control", "max-age=3600")
	const maxBytes = 256 << 10
	c := NewBoundedCache(100_000, maxBytes, 0, 0)
	if c.maxBytes != maxBytes {
		t.Fatalf("maxBytes %d", c.maxBytes)
	}
	buf := make([]byte, 20000)
	for i := range 20000 {
		key := scanKey(i % 3000)
		size := (i * 7919) % 20000 // 0 to 20 kB, mixed
		if _, ok := c.get(key, t0); !ok {
			c.put(key, Result{Status: Found, Data: buf[:size]}, p, t0)
		}
		if c.Bytes() > maxBytes {
			t.Fatalf("after %d puts: %d bytes", i, c.Bytes())
		}
		if i%997 == 0 {
			checkInvariants(t, c)
		}
	}
	checkInvariants(t, c)
	if b := c.Bytes(); b < maxBytes-20000-entryOverhead {
		t.Fatalf("only %d of %d bytes used", b, maxBytes)
	}
	// A replaced entry that grows keeps the bound too.
	for i := range 200 {
		c.put(scanKey(i), Result{Status: Found, Data: buf}, p, t0)
		checkInvariants(t, c)
	}
	if c := NewBoundedCache(10, 0, 0, 0); c != nil {
		t.Fatal("MaxBytes 0 must turn the cache off")
	}
	if c := NewBoundedCache(10, 1<<40, 0, 0); c.maxBytes != MaxCacheBytes {
		t.Fatalf("maxBytes %d not clamped to %d", c.maxBytes, MaxCacheBytes)
	}
}

// TestCacheMaxEntriesStillBounds: with room in bytes, MaxEntries is the
// bound, under lookups (hits promote) and plain puts alike.
func TestCacheMaxEntriesStillBounds(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	p := policyFor(t0, "Cache-Control", "max-age=3600")
	for _, max := range []int{1, 2, 3, 10, 100, 1000} {
		c := NewBoundedCache(max, MaxCacheBytes, 0, 0)
		for i := range 20 * max {
			key := scanKey(i % (3 * max))
			if i%3 == 0 {
				c.get(key, t0)
			}
			c.put(key, Result{Status: Found, Data: []byte(`"x"`)}, p, t0)
			if c.Len() > max {
				t.Fatalf("max %d: %d entries", max, c.Len())
			}
		}
		checkInvariants(t, c)
		if c.Len() != max {
			t.Fatalf("max %d: only %d entries", max, c.Len())
		}
	}
}

// TestCacheExpiredVictimMakesRoom: an entry past its stale window is
// evicted for a newcomer whatever its frequency, so a cache full of dead
// popular entries takes new ones.
func TestCacheExpiredVictimMakesRoom(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	short := policyFor(t0, "Cache-Control", "max-age=10")
	c := NewCache(100, 0, 0)
	for range 5 {
		for i := range 100 {
			if _, ok := c.get(scanKey(i), t0); !ok {
				c.put(scanKey(i), Result{Status: Found}, short, t0)
			}
		}
	}
	t1 := t0.Add(time.Minute)
	long := policyFor(t1, "Cache-Control", "max-age=3600")
	for i := range 100 {
		key := scanKey(1000 + i)
		c.get(key, t1)
		c.put(key, Result{Status: Found}, long, t1)
	}
	checkInvariants(t, c)
	kept := 0
	for i := range 100 {
		if _, ok := c.get(scanKey(1000+i), t1); ok {
			kept++
		}
	}
	if kept < 95 {
		t.Fatalf("only %d of 100 new entries admitted over dead ones", kept)
	}
}

// TestCacheConcurrentChurn: gets, puts, stale reads and no-store drops
// from several goroutines over a small cache leave consistent regions
// (run under -race).
func TestCacheConcurrentChurn(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	keep := policyFor(t0, "Cache-Control", "max-age=60, stale-if-error=60")
	drop := policyFor(t0, "Cache-Control", "no-store")
	c := NewBoundedCache(300, 64<<10, 0, 0)
	k := make([]string, 1000)
	for i := range k {
		k[i] = scanKey(i)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 20000 {
				key := k[(i*(g+1)*7919)%len(k)]
				now := t0.Add(time.Duration(i%90) * time.Second)
				switch i % 7 {
				case 0:
					c.put(key, Result{Status: Found}, drop, now)
				case 1:
					c.stale(key, now)
				default:
					if _, ok := c.get(key, now); !ok {
						c.put(key, Result{Status: Found, Data: make([]byte, i%300)}, keep, t0)
					}
				}
			}
		})
	}
	wg.Wait()
	checkInvariants(t, c)
}

// TestCacheHashCollision: two keys of one keyHash are told apart by the
// key the entry holds: a lookup of the other key misses instead of
// getting this one's reply, and storing it replaces this one.
func TestCacheHashCollision(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	p := policyFor(t0, "Cache-Control", "max-age=3600")
	c := NewCache(100, 0, 0)
	a, b := scanKey(1), scanKey(2)
	c.put(a, Result{Status: Found, Data: []byte(`"a"`)}, p, t0)
	// Move a's entry to where b hashes, as a collision would place it.
	c.mu.Lock()
	e, hb := c.items[keyHash(c.seed, a)], keyHash(c.seed, b)
	delete(c.items, e.hash)
	e.hash, c.items[hb] = hb, e
	c.mu.Unlock()
	if r, ok := c.get(b, t0); ok {
		t.Fatalf("b got a's reply %s", r.Data)
	}
	if _, ok := c.stale(b, t0); ok {
		t.Fatal("b got a's reply as stale")
	}
	c.put(b, Result{Status: Found, Data: []byte(`"b"`)}, policyFor(t0, "Cache-Control", "no-store"), t0)
	if c.Len() != 1 {
		t.Fatal("a no-store reply for b dropped a's entry")
	}
	c.put(b, Result{Status: Found, Data: []byte(`"b"`)}, p, t0)
	if r, ok := c.get(b, t0); !ok || string(r.Data) != `"b"` || c.Len() != 1 {
		t.Fatalf("b after storing it: %s %v, %d entries", r.Data, ok, c.Len())
	}
	checkInvariants(t, c)
}

// TestSketchAging: counters saturate at 15 and halve every resetAt
// additions.
func TestSketchAging(t *testing.T) {
	var s sketch
	s.init(16)
	h := keyHash(0, "hot")
	for range 40 {
		s.add(h)
	}
	if n := s.estimate(h); n != 15 {
		t.Fatalf("estimate %d, want 15 (saturated)", n)
	}
	for i := range s.resetAt {
		s.add(keyHash(0, fmt.Sprint(i)))
	}
	if n := s.estimate(h); n > 7 {
		t.Fatalf("estimate %d after a reset, want <= 7", n)
	}
}

// --- benchmarks of the cache alone ---

// BenchmarkCacheGet: a hit on a full cache of 10000 entries.
func BenchmarkCacheGet(b *testing.B) {
	t0 := time.Now()
	p := policyFor(t0, "Cache-Control", "max-age=3600")
	c := NewCache(10000, 0, 0)
	k := make([]string, 10000)
	for i := range k {
		k[i] = scanKey(i)
		c.put(k[i], Result{Status: Found, Data: []byte(`"alias@example.org"`)}, p, t0)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := c.get(k[i%len(k)], t0); !ok {
			b.Fatal("miss")
		}
		i++
	}
}

// BenchmarkCacheGetCold: hits on a cache of 200000 entries (about 60 MB
// with their replies, more than the CPU's caches) in a scattered order,
// so that each hit finds its entry in main memory, as a daemon whose
// cache is shared with the rest of the machine does: the cost here is
// the cache lines a hit touches.
func BenchmarkCacheGetCold(b *testing.B) {
	const keys = 200000
	t0 := time.Now()
	p := policyFor(t0, "Cache-Control", "max-age=3600")
	c := NewBoundedCache(keys, MaxCacheBytes, 0, 0)
	k := make([]string, keys)
	for i := range k {
		k[i] = scanKey(i)
		c.put(k[i], Result{Status: Found, Data: []byte(`"alias@example.org"`)}, p, t0)
		c.get(k[i], t0) // admitted past the window
	}
	held := make([]string, 0, keys)
	for _, key := range k {
		if _, ok := c.get(key, t0); ok {
			held = append(held, key)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i = (i + 7919) % len(held) // 7919 is prime: every key, scattered
		if _, ok := c.get(held[i], t0); !ok {
			b.Fatal("miss")
		}
	}
}

// BenchmarkCachePut: a new reply stored in a full cache (admission and
// one eviction each time), the miss path of a scan.
func BenchmarkCachePut(b *testing.B) {
	t0 := time.Now()
	p := policyFor(t0, "Cache-Control", "max-age=3600")
	c := NewCache(10000, 0, 0)
	k := make([]string, 1<<16)
	for i := range k {
		k[i] = scanKey(i)
	}
	res := Result{Status: Found, Data: []byte(`"alias@example.org"`)}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		key := k[i&(len(k)-1)]
		c.get(key, t0)
		c.put(key, res, p, t0)
		i++
	}
}

// BenchmarkCacheMemory reports the heap an entry of a typical reply
// (a 40-byte Data) costs, to compare with entryOverhead.
func BenchmarkCacheMemory(b *testing.B) {
	t0 := time.Now()
	p := policyFor(t0, "Cache-Control", "max-age=3600")
	const n = 10000
	k := make([][sha256.Size]byte, n)
	for i := range k {
		k[i] = sha256.Sum256([]byte(fmt.Sprint(i)))
	}
	var before, after runtime.MemStats
	for b.Loop() {
		runtime.GC()
		runtime.ReadMemStats(&before)
		c := NewCache(n, 0, 0)
		for i := range k {
			data := []byte(`{"maildir":"/var/mail/example.org/u1234"}`)
			c.put(string(k[i][:]), Result{Status: Found, Data: data}, p, t0)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/entry")
		runtime.KeepAlive(c)
	}
}

// cacheKey is the key LookupRaw gives the cache for a request body.
func cacheKey(body []byte) string {
	s := cacheDigest(body)
	return string(s[:])
}

// TestProtectedSecondChance: a protected entry hit since it reached the
// segment keeps its place when a promotion overflows it, and an entry
// not hit again goes back to probation; past maxSecondChances marked
// entries, the back goes marked or not, so a promotion never scans the
// whole segment.
func TestProtectedSecondChance(t *testing.T) {
	t0 := time.Now()
	p := policyFor(t0, "Cache-Control", "max-age=3600")
	c := NewCache(1000, 0, 0)
	put := func(k string) { c.put(k, Result{Status: Found, Data: []byte(`"x"`)}, p, t0) }
	promote := func(k string) {
		put(k)
		put("filler " + k) // pushes k from the window into probation
		c.get(k, t0)       // a hit there promotes it
	}
	c.windowEntries, c.protectedEntries = 1, 2
	for _, k := range []string{"a", "b"} {
		promote(k)
	}
	regionOf := func(k string) region {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.items[keyHash(c.seed, k)].region
	}
	if regionOf("a") != protectedRegion || regionOf("b") != protectedRegion {
		t.Fatal("a and b not promoted")
	}
	c.get("a", t0) // a, the segment's back, is marked
	promote("c")   // the segment overflows: b, not a, must go
	if regionOf("a") != protectedRegion || regionOf("b") != probationRegion || regionOf("c") != protectedRegion {
		t.Fatalf("regions a %d b %d c %d: want a and c protected, b in probation", regionOf("a"), regionOf("b"), regionOf("c"))
	}
	checkInvariants(t, c)

	c.protectedEntries = maxSecondChances + 1
	for i := range maxSecondChances + 1 {
		promote(fmt.Sprint("m", i))
	}
	for i := range maxSecondChances + 1 {
		c.get(fmt.Sprint("m", i), t0) // all marked
	}
	promote("n")
	demoted := 0
	for i := range maxSecondChances + 1 {
		if regionOf(fmt.Sprint("m", i)) == probationRegion {
			demoted++
		}
	}
	if demoted != 1 || regionOf("n") != protectedRegion {
		t.Fatalf("%d marked entries demoted, n in region %d: want 1, protected", demoted, regionOf("n"))
	}
	checkInvariants(t, c)
}
