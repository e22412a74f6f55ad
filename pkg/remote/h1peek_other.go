//go:build !unix || aix

package remote

import "net"

// sockPeek cannot look into a socket here: every connection counts as
// alive, and a stale one fails the request as it would have done on the
// net/http path had its read loop not noticed in time.
type sockPeek struct{}

func (*sockPeek) dead(net.Conn) bool { return false }
