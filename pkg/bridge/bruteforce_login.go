package bridge

import (
	"net/netip"

	"github.com/shitenno/shitenno/pkg/bruteforce"
)

// LoginGuard adapts a bruteforce.Guard to a bridge login hook with
// string addresses and bridge Outcomes (the SASL bridge's Limiter):
// Allow before the backend, Done after it.
type LoginGuard struct{ Guard bruteforce.Guard }

// Allow reports whether user may try to log in from clientIP now; an
// unparsable address is never blocked (nor counted).
func (g LoginGuard) Allow(clientIP, user string) bool {
	ip, _ := netip.ParseAddr(clientIP)
	return !g.Guard.Check(ip, user).Blocked
}

// Done records the backend's answer: found resets, not found counts as a
// wrong password, a failure never counts.
func (g LoginGuard) Done(clientIP, user string, password []byte, o Outcome) {
	ip, _ := netip.ParseAddr(clientIP)
	g.Guard.Record(ip, user, password, loginOutcome(o))
}

// loginOutcome is what a lookup outcome means to the limiter: found
// resets, not found is a wrong password, a failure never counts.
func loginOutcome(o Outcome) bruteforce.Outcome {
	switch o {
	case OutcomeFound:
		return bruteforce.OK
	case OutcomeNotFound:
		return bruteforce.WrongPassword
	}
	return bruteforce.Failed
}
