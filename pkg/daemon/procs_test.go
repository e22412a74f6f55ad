package daemon

import (
	goruntime "runtime"
	"testing"

	"github.com/shitenno/shitenno/pkg/config"
)

// TestApplyMaxProcs: MaxProcs sets GOMAXPROCS, 0 brings back the
// runtime's default, and a GOMAXPROCS in the environment is left alone.
func TestApplyMaxProcs(t *testing.T) {
	old := goruntime.GOMAXPROCS(0)
	defer goruntime.GOMAXPROCS(old)
	noEnv := func(string) string { return "" }
	goruntime.SetDefaultGOMAXPROCS()
	def := goruntime.GOMAXPROCS(0)
	if got := applyMaxProcs(&config.Config{MaxProcs: 1}, noEnv); got != 1 || goruntime.GOMAXPROCS(0) != 1 {
		t.Fatalf("MaxProcs 1: %d", got)
	}
	if got := applyMaxProcs(&config.Config{MaxProcs: 3}, func(k string) string {
		if k == "GOMAXPROCS" {
			return "1"
		}
		return ""
	}); got != 1 {
		t.Errorf("MaxProcs 3 with GOMAXPROCS=1 in the environment: %d, want the environment's 1", got)
	}
	if got := applyMaxProcs(&config.Config{MaxProcs: 0}, noEnv); got != def {
		t.Errorf("MaxProcs 0: %d, want the default %d", got, def)
	}
	if got := applyMaxProcs(&config.Config{MaxProcs: 3}, noEnv); got != 3 {
		t.Errorf("MaxProcs 3: %d", got)
	}
}
