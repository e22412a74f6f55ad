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
	try := func(ip, pw string, o Outcome) bool {
		done, ok := g.Allow(t.Context(), ip, "alice")
		if ok {
			done([]byte(pw), o)
		}
		return ok
	}
	for i := 0; i < 20; i++ {
		try("192.0.2.1", fmt.Sprint(i), OutcomeFailed)
	}
	for i := 0; i < 9; i++ {
		try("192.0.2.1", fmt.Sprint(i), OutcomeNotFound)
	}
	if !try("192.0.2.1", "x", OutcomeNotFound) {
		t.Fatal("blocked after 9")
	}
	if try("192.0.2.1", "y", OutcomeFound) || !try("192.0.2.2", "y", OutcomeFound) || !try("", "y", OutcomeNotFound) {
		t.Fatal("Allow")
	}
}
