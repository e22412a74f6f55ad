package daemon

import (
	"io"
	"log/slog"
	"testing"

	"github.com/shitenno/shitenno/pkg/bridge"
	"github.com/shitenno/shitenno/pkg/metrics"
)

// TestRecorderAllocsNothing: recording a lookup that went well, with
// debug records off, allocates nothing. It runs on every request, cache
// hits included; the debug record's arguments used to be boxed each
// time, and resolving the metric series cost a map read under a lock.
func TestRecorderAllocsNothing(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rec := recorder(log, metrics.New("postfix", "test"), "socketmap")
	rec("virtual", bridge.OutcomeFound, nil) // resolves the series
	if n := testing.AllocsPerRun(100, func() { rec("virtual", bridge.OutcomeFound, nil) }); n != 0 {
		t.Errorf("recording a lookup allocates %v times, want 0", n)
	}
}
