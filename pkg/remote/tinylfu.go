package remote

import "time"

// W-TinyLFU eviction (Einziger, Friedman, Manes, "TinyLFU: A Highly
// Efficient Cache Admission Policy", 2017), as Caffeine does it, over the
// cache's own map and intrusive lists:
//
//   - a new entry goes into a small LRU window (1% of the bounds), so a
//     burst of new keys can be hit again soon after;
//   - an entry leaving the window is a candidate for the main region, an
//     SLRU (probation, then protected once hit again). When the cache is
//     full, the candidate is admitted only if a count-min sketch of recent
//     lookups says its key was looked up more often than the victim's
//     (the probation LRU entry); otherwise the candidate is dropped.
//
// A cyclic scan over twice as many keys as the cache holds thus keeps
// half of them cached and hit on every pass, where an LRU evicts each key
// just before it is asked again and hits nothing. The sketch halves its
// counters every 10 × capacity lookups, so keys that stopped being asked
// lose their claim.

type region uint8

const (
	windowRegion region = iota
	probationRegion
	protectedRegion
)

// lruList is an intrusive doubly linked list: root.next is the most
// recently used entry, root.prev the least. Intrusive instead of
// container/list: no allocation or interface conversion per entry.
type lruList struct {
	root  cacheEntry
	n     int
	bytes int64
}

func (l *lruList) init() { l.root.next, l.root.prev = &l.root, &l.root }

func (l *lruList) pushFront(e *cacheEntry) {
	e.prev, e.next = &l.root, l.root.next
	e.prev.next, e.next.prev = e, e
	l.n++
	l.bytes += e.size()
}

func (l *lruList) unlink(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	l.n--
	l.bytes -= e.size()
}

func (l *lruList) moveToFront(e *cacheEntry) {
	if l.root.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = &l.root, l.root.next
	e.prev.next, e.next.prev = e, e
}

// back is the least recently used entry, or nil.
func (l *lruList) back() *cacheEntry {
	if l.n == 0 {
		return nil
	}
	return l.root.prev
}

// tinyLFU is the eviction state of a Cache, guarded by its mutex.
type tinyLFU struct {
	lists [3]lruList // by region
	// Bounds of the window and of the protected segment; the main region
	// (probation + protected) has what the window leaves of the cache's.
	windowEntries, protectedEntries int
	windowBytes, protectedBytes     int64
	sketch                          sketch
}

// setBounds sets the region bounds from the cache's and sizes the sketch for
// capacity entries.
func (t *tinyLFU) setBounds(maxEntries int, maxBytes int64, capacity int) {
	for i := range t.lists {
		t.lists[i].init()
	}
	t.windowEntries = max(1, maxEntries/100)
	t.windowBytes = maxBytes / 100
	t.protectedEntries = (maxEntries - t.windowEntries) * 8 / 10
	t.protectedBytes = (maxBytes - t.windowBytes) * 8 / 10
	t.sketch.init(capacity)
}

// over reports whether the cache holds more than either bound allows.
func (c *Cache) over() bool { return len(c.items) > c.maxEntries || c.bytes > c.maxBytes }

// insert places a new entry, already in c.items and c.bytes, in the window.
func (c *Cache) insert(e *cacheEntry) {
	e.region = windowRegion
	c.lists[windowRegion].pushFront(e)
}

// touch records a hit on e. The window is an LRU; a probation entry hit
// again is promoted to protected, whose least recently used entries go
// back to probation when it is over its bounds. The protected segment is
// kept in LRU order by CLOCK's second chance instead of a move per hit:
// a hit only marks the entry (whose memory the lookup has just read),
// and a marked entry reaching the back is moved to the front instead of
// being demoted. Moving it on every hit would also write both its
// neighbours and the list head: memory the lookup does not otherwise
// touch, under the cache's lock.
func (c *Cache) touch(e *cacheEntry) {
	switch e.region {
	case protectedRegion:
		e.hit = true
		return
	case windowRegion:
		c.lists[windowRegion].moveToFront(e)
		return
	}
	prot := &c.lists[protectedRegion]
	c.lists[probationRegion].unlink(e)
	e.region = protectedRegion
	prot.pushFront(e)
	// Second chances per demotion are bounded, so that a promotion
	// into a protected segment whose entries were all hit costs no scan
	// of the whole segment under the lock; past the bound the back goes,
	// marked or not.
	chances := maxSecondChances
	for prot.n > 0 && (prot.n > c.protectedEntries || prot.bytes > c.protectedBytes) {
		d := prot.back()
		if d.hit && chances > 0 {
			d.hit = false
			prot.moveToFront(d)
			chances--
			continue
		}
		d.hit = false
		prot.unlink(d)
		d.region = probationRegion
		c.lists[probationRegion].pushFront(d)
	}
}

// maxSecondChances bounds the marked entries one demotion moves back to
// the front of the protected segment.
const maxSecondChances = 32

// resize applies change to e, which may change its size, keeping the
// byte counts right.
func (c *Cache) resize(e *cacheEntry, change func()) {
	l := &c.lists[e.region]
	l.bytes -= e.size()
	c.bytes -= e.size()
	change()
	l.bytes += e.size()
	c.bytes += e.size()
}

func (c *Cache) remove(e *cacheEntry) {
	c.lists[e.region].unlink(e)
	delete(c.items, e.hash)
	c.bytes -= e.size()
}

// evict moves what overflows the window to the main region, through
// admission, then evicts until both bounds hold.
func (c *Cache) evict(now time.Time) {
	w := &c.lists[windowRegion]
	// The window keeps at least one entry, however large.
	for w.n > 1 && (w.n > c.windowEntries || w.bytes > c.windowBytes) {
		cand := w.back()
		w.unlink(cand)
		cand.region = probationRegion
		c.lists[probationRegion].pushFront(cand)
		c.admit(cand, now)
	}
	// Still over: a replaced entry grew, or the window's one entry is
	// larger than what the main region has room for.
	for c.over() {
		v := c.lists[probationRegion].back()
		if v == nil {
			v = c.lists[protectedRegion].back()
		}
		if v == nil {
			v = w.back()
		}
		c.remove(v)
	}
}

// admit makes room for cand, just placed at the front of probation, or
// drops it. The back entry of probation or protected that is past its
// stale window is evicted first: it can never be served again, however
// often it was asked. Otherwise the victim (probation's LRU entry, else
// protected's back, which second chances keep near its LRU one) is
// evicted if its key was looked up less often than
// cand's, and cand goes if not. A tie drops cand, which is what keeps a
// scan from flushing the cache.
func (c *Cache) admit(cand *cacheEntry, now time.Time) {
	for c.over() {
		prob, prot := c.lists[probationRegion].back(), c.lists[protectedRegion].back()
		if prob == cand {
			prob = nil
		}
		switch {
		case prob != nil && !now.Before(prob.staleUntil):
			c.remove(prob)
		case prot != nil && !now.Before(prot.staleUntil):
			c.remove(prot)
		default:
			v := prob
			if v == nil {
				v = prot
			}
			if v == nil || c.sketch.estimate(cand.hash) <= c.sketch.estimate(v.hash) {
				c.remove(cand)
				return
			}
			c.remove(v)
		}
	}
}

// sketch is a count-min sketch of 4-bit counters (saturating at 15), four
// per key, sixteen per word; its counters are halved every resetAt
// additions so that it measures recent frequency. A key's four counters
// lie in one 64-byte block of eight words, one in each pair of words, so
// that counting a lookup touches one cache line of the table instead of
// four (the layout of Caffeine's FrequencySketch).
type sketch struct {
	table     []uint64
	blockMask uint64 // number of blocks - 1
	additions int
	resetAt   int
}

func (s *sketch) init(capacity int) {
	capacity = max(capacity, 16)
	// 32 counters per entry held: twice what spreading a key's counters
	// over the whole table needs, as counters confined to a block collide
	// more often.
	words := 8
	for words < 2*capacity {
		words <<= 1
	}
	s.table = make([]uint64, words)
	s.blockMask = uint64(words)/8 - 1
	s.resetAt = 10 * capacity
}

// index returns the word and bit shift of the key's i-th counter: the
// low bits of h choose the block, a byte of its high half per counter
// the word of pair i and the counter in it.
func (s *sketch) index(h uint64, i int) (int, uint) {
	b := h >> (32 + 8*uint(i))
	return int((h&s.blockMask)<<3) + 2*i + int(b&1), uint(b>>1&15) * 4
}

// add counts one lookup of the key of hash h.
func (s *sketch) add(h uint64) {
	added := false
	for i := range 4 {
		w, sh := s.index(h, i)
		if (s.table[w]>>sh)&15 < 15 {
			s.table[w] += 1 << sh
			added = true
		}
	}
	if !added {
		return
	}
	if s.additions++; s.additions >= s.resetAt {
		for i, v := range s.table {
			s.table[i] = (v >> 1) & 0x7777777777777777
		}
		s.additions /= 2
	}
}

// estimate is the key's count: the least of its counters.
func (s *sketch) estimate(h uint64) uint64 {
	n := uint64(15)
	for i := range 4 {
		w, sh := s.index(h, i)
		n = min(n, (s.table[w]>>sh)&15)
	}
	return n
}

// keyHash spreads a key over 64 bits for the sketch. Real keys are
// SHA-256 digests already; the mixing is for any other string (tests).
// The seed is random per cache (Cache.seed), so that requests cannot be
// chosen whose counters collide with those of popular ones, to win
// admission with few lookups; tests fix it to make counts reproducible.
func keyHash(seed uint64, s string) uint64 {
	h := seed ^ uint64(len(s)) ^ 0x9e3779b97f4a7c15
	for len(s) >= 8 {
		h = mix64(h ^ (uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56))
		s = s[8:]
	}
	var t uint64
	for i := range len(s) {
		t |= uint64(s[i]) << (8 * i)
	}
	return mix64(h ^ t)
}

// mix64 is splitmix64's finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
