package bridge

import (
	"fmt"
	"testing"

	"github.com/shitenno/shitenno/pkg/bruteforce"
)

// limiter has the default limits with no network exempt (by default the
// proxy and local networks are).
func limiter() *bruteforce.Limiter {
	l := bruteforce.DefaultLimits()
	l.AllowNets = nil
	return bruteforce.New(l, bruteforce.Options{})
}

func TestLoginGuard(t *testing.T) {
	g := LoginGuard{limiter()}
	for i := 0; i < 20; i++ {
		g.Done("192.0.2.1", "alice", []byte(fmt.Sprint(i)), OutcomeFailed)
	}
	for i := 0; i < 9; i++ {
		g.Done("192.0.2.1", "alice", []byte(fmt.Sprint(i)), OutcomeNotFound)
	}
	if !g.Allow("192.0.2.1", "alice") {
		t.Fatal("blocked after 9")
	}
	g.Done("192.0.2.1", "alice", []byte("x"), OutcomeNotFound)
	if g.Allow("192.0.2.1", "alice") || !g.Allow("192.0.2.2", "alice") || !g.Allow("", "alice") {
		t.Fatal("Allow")
	}
}
