package bridge

import (
	"context"
	"net/netip"

	"github.com/shitenno/shitenno/pkg/bruteforce"
)

// LoginGuard adapts a bruteforce.Guard to a bridge login hook with
// string addresses and bridge Outcomes (the SASL bridge's Limiter).
type LoginGuard struct{ Guard bruteforce.Guard }

// Allow reports whether user may try to log in from clientIP now (it may
// wait a little for a login in flight to end: bruteforce.Acquire); an
// unparsable address is never blocked (nor counted). done records the
// backend's answer and gives the login's try back: found resets, not
// found counts as a wrong password, a failure never counts.
func (g LoginGuard) Allow(ctx context.Context, clientIP, user string) (done func(password []byte, o Outcome), ok bool) {
	ip, _ := netip.ParseAddr(clientIP)
	d := g.Guard.Acquire(ctx, ip, user)
	if d.Blocked {
		return nil, false
	}
	return func(password []byte, o Outcome) { d.Done(password, loginOutcome(o)) }, true
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
