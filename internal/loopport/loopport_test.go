package loopport

import (
	"net"
	"strconv"
	"testing"
)

// TestPickNeverRepeats: the ports Pick hands out are all different and
// free, however often the kernel offers one again.
func TestPickNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 500 {
		p, err := Pick()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		l.Close()
	}
}
