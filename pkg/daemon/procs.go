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
// The default is one: the daemon sits beside its peer on small servers,
// and with one CPU running its Go code it spends less CPU per lookup
// (fewer threads woken, no cache lock handed between CPUs): about 10 %
// less per cached lookup on 2 CPUs, and a higher throughput, while a
// responder without lookups gains nothing (docs/bench.md).
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
