package bridge

import (
	"fmt"
	"testing"

	"github.com/shitenno/shitenno/pkg/bruteforce"
)

func TestLoginGuard(t *testing.T) {
	l := bruteforce.DefaultLimits()
	l.AllowNets = nil
	g := LoginGuard{bruteforce.New(l, bruteforce.Options{})}
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
