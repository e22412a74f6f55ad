package main

import (
	"net/netip"
	"time"

	"github.com/shitenno/shitenno/pkg/bruteforce"
)

// limiterCost measures in this process what the brute-force limiter's
// bookkeeping costs per nginx login of the benchmark's mix, the way
// bridge.Nginx calls it: Client-IP parsed, Check before the backend,
// the Decision's Done after it (OK for 15 keys in 16, a wrong password for the rest).
// on has [BruteForce] at its defaults, off has MaxFailures = 0, which
// still runs the calls (shitenno-nginx always has a limiter) but returns
// at once. It is the limiter's direct cost, free of the noise the
// end-to-end on/off ratio carries on a shared machine; lock contention
// and GC work it causes in the daemon are only in the end-to-end figure.
func limiterCost() (on, off time.Duration) {
	limits := bruteforce.DefaultLimits()
	on = bookkeeping(limits)
	limits.MaxFailures = 0
	off = bookkeeping(limits)
	return on, off
}

// bookkeeping returns the per-login time of the limiter calls under l:
// the fastest of five passes over the data set, four times each.
func bookkeeping(l bruteforce.Limits) time.Duration {
	lim := bruteforce.New(l, bruteforce.Options{})
	ips := make([]string, numKeys)
	users := make([]string, numKeys)
	pws := make([]string, numKeys)
	for i := range ips {
		ips[i], users[i], pws[i] = nginxClientIP(i), benchKey(i), loginPassword(i)
	}
	best := time.Duration(1<<63 - 1)
	for range 5 {
		t0 := time.Now()
		for range 4 {
			for i := range numKeys {
				ip, _ := netip.ParseAddr(ips[i])
				d := lim.Check(ip, users[i])
				if d.Blocked {
					panic("bench: the data set got blocked") // TestNginxLimiterLetsTheMixThrough says it cannot
				}
				o := bruteforce.OK
				if !known(i) {
					o = bruteforce.WrongPassword
				}
				d.Done([]byte(pws[i]), o)
			}
		}
		best = min(best, time.Since(t0)/(4*numKeys))
	}
	return best
}
