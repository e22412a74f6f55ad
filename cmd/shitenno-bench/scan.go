package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// The scan scenario (issue #21) reproduces e2e TestCacheScanPostmap with
// the bench's own socketmap client: `postmap -q -` over a list of 20 000
// addresses, run again and again, through a cache that holds half of
// them. An LRU hits none (each key is evicted just before it comes
// again); shitenno must hit at least 40 % of them.
const (
	// scanCacheConf is the scan daemon's [Cache] section, the e2e
	// test's: room for half the keys, bytes to spare, an hour's TTL.
	scanCacheConf = "MaxEntries = 10000\nMaxBytes = 8388608\nDefaultTTL = \"1h\"\n"
	// scanCacheEntries is MaxEntries above, for the report.
	scanCacheEntries = 10000
	// scanMinPasses is how many whole passes are measured at least,
	// however short --duration is: one would not show a steady state.
	scanMinPasses = 2
	// scanMaxErrors ends a scan early: past a few errors the hit ratio
	// means nothing, and a server that stopped answering would
	// otherwise cost a timeout per key.
	scanMaxErrors = 100
	// targetScanHitRatio is issue #21's bound on the scan's hit ratio.
	targetScanHitRatio = 0.40
)

// scanRun is the scan scenario's client: one connection, as postmap
// keeps, the keys in order.
type scanRun struct {
	dial  dialFunc
	n     int // keys per pass
	c     client
	errs  int64
	first error
}

// startScan runs the unmeasured first pass over n keys, which fills the
// cache, and returns the scan ready for measure on the same connection.
func startScan(dial dialFunc, n int) *scanRun {
	s := &scanRun{dial: dial, n: n}
	s.pass(nil)
	return s
}

// pass looks keys 0..n-1 up in order, appending each latency to lat when
// it is not nil, and returns how many were answered right. A failed
// lookup is counted and the connection opened again (the stream may be
// out of step); a failed connect ends the pass.
func (s *scanRun) pass(lat *[]time.Duration) int64 {
	var ok int64
	for j := 0; j < s.n && s.errs < scanMaxErrors; j++ {
		if s.c == nil {
			c, err := s.dial()
			if err != nil {
				s.fail(fmt.Errorf("connect: %w", err))
				return ok
			}
			s.c = c
		}
		t0 := time.Now()
		if err := s.c.lookup(j, t0); err != nil {
			s.fail(fmt.Errorf("key %d: %w", j, err))
			s.c.close()
			s.c = nil
			continue
		}
		ok++
		if lat != nil {
			*lat = append(*lat, time.Since(t0))
		}
	}
	return ok
}

func (s *scanRun) fail(err error) {
	s.errs++
	if s.first == nil {
		s.first = err
	}
}

// measure runs whole passes until dur has passed and at least
// scanMinPasses are done. Total and Ops are the measured lookups only,
// so the backend requests counted around it give the hit ratio of the
// cache's steady state; Errors include the first pass's.
func (s *scanRun) measure(dur time.Duration) loadResult {
	var res loadResult
	start := time.Now()
	for p := 0; p < scanMinPasses || time.Since(start) < dur; p++ {
		n := s.pass(&res.Lat)
		res.Total += n
		if n == 0 || s.errs >= scanMaxErrors {
			break
		}
	}
	res.Window = time.Since(start)
	res.Ops = res.Total
	res.Errors = s.errs
	if s.first != nil {
		res.FirstErr = s.first.Error()
	}
	slices.Sort(res.Lat)
	return res
}

func (s *scanRun) close() {
	if s.c != nil {
		s.c.close()
		s.c = nil
	}
}

// scanHitRatio is issue #21's scan target cell: the hit ratio over the
// measured passes, 1 − backend requests per lookup, in postfix's column
// ("—" in the others, which have no scan).
func (r report) scanHitRatio(p string) (string, bool) {
	if p != "postfix" {
		return "—", true
	}
	s := r.find(p, scScan, 1)
	if s == nil || s.BackendPer < 0 {
		return "", false
	}
	hit := max(0, 1-s.BackendPer)
	good := hit >= targetScanHitRatio && r.errors(p, scScan, 1) == 0
	return fmt.Sprintf("%s %.1f %% of %d lookups", mark(good), 100*hit, s.Res.Total), true
}

// scanTargetName is the scan target's row name.
func scanTargetName() string {
	return fmt.Sprintf("scan: %s keys cycled through a cache of %s, hit ratio ≥ %.0f %%",
		spaced(scanKeys), spaced(scanCacheEntries), 100*targetScanHitRatio)
}

// scanDescription is the report's line on the scan scenario.
func scanDescription(maxAge int) string {
	return fmt.Sprintf("- **scan** (postfix only): one connection looks up %d distinct keys (`%s` …) in order, over and over, "+
		"as `postmap -q -` over a list of addresses does, through a shitenno-postfix with `[Cache] %s` and the backend sending "+
		"`Cache-Control: max-age=%d`; a first pass fills the cache unmeasured, then whole passes run for the run's duration, "+
		"at least %d; hit ratio = 1 − backend requests / lookups of the measured passes (an LRU would hit none: each key is "+
		"evicted just before it comes again). e2e TestCacheScanPostmap does the same with the real `postmap -q -`\n",
		scanKeys, scanKey(0), strings.ReplaceAll(strings.TrimSpace(scanCacheConf), "\n", ", "), maxAge, scanMinPasses)
}

// spaced prints n with a space between groups of three digits.
func spaced(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + " " + s[i:]
	}
	return s
}
