package daemon

import (
	"github.com/shitenno/shitenno/pkg/bruteforce"
)

// startLimiter creates the brute-force limiter from [BruteForce] and its
// metrics. One per process: its state is in memory, kept across SIGHUP
// (reload applies new limits to it) and lost at restart.
func (r *runtime) startLimiter() {
	lim := bruteforce.New(bruteforce.FromConfig(r.env.Config.BruteForce), bruteforce.Options{Logger: r.env.Logger})
	r.env.Limiter = lim
	_ = r.met.RegisterCounterFunc("bruteforce_failures_total",
		"Wrong passwords counted by the brute-force limiter (repeats of the same one excluded).",
		func() float64 { return float64(lim.Stats().Failures) })
	_ = r.met.RegisterCounterFunc("bruteforce_refused_total",
		"Logins refused without asking the backend because the network or name was blocked.",
		func() float64 { return float64(lim.Stats().Refused) })
	_ = r.met.RegisterGaugeFunc("bruteforce_blocked",
		"Networks and login names blocked now.",
		func() float64 { return float64(lim.Stats().BlockedNow) })
}
