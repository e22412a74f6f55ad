package daemon

import (
	"log/slog"
	"os"
	goruntime "runtime"

	"github.com/shitenno/shitenno/pkg/config"
)

// applyMaxProcs sets GOMAXPROCS from MaxProcs (0: the Go runtime's
// default, every CPU the process may use) and returns what is in force.
// A GOMAXPROCS in the environment, which the runtime applied at start,
// wins: that is what an operator setting it expects.
//
// One CPU spends 5–10 % less CPU per lookup on 2 CPUs (fewer threads
// woken, no cache lock handed between CPUs), but queues a burst of
// cached lookups behind one CPU: make bench's cached rate fell by a
// fifth, so the default stays the runtime's (docs/bench.md).
func applyMaxProcs(cfg *config.Config, getenv func(string) string) int {
	switch {
	case getenv("GOMAXPROCS") != "":
	case cfg.MaxProcs == 0:
		goruntime.SetDefaultGOMAXPROCS()
	default:
		goruntime.GOMAXPROCS(cfg.MaxProcs)
	}
	return goruntime.GOMAXPROCS(0)
}

// setMaxProcs is applyMaxProcs for the daemon's own process, logged. An
// in-process daemon (the tests) leaves its host's setting alone.
func (r *runtime) setMaxProcs(log *slog.Logger) {
	if !r.process {
		return
	}
	log.Debug("Go code runs on at most this many CPUs at once", "max_procs", applyMaxProcs(r.cfg, os.Getenv))
}
