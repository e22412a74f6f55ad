// Package loopport hands out loopback TCP ports for programs a test or a
// benchmark starts and tells where to listen.
package loopport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// Pick returns a loopback TCP port that was free a moment ago and that
// it never returned before in this process. It picks below the kernel's
// ephemeral range, so that no outgoing connection takes the port between
// now and the bind of the program it is for, and remembers what it gave:
// the kernel offers a port just closed to the next bind to port 0 again
// (within 50 to 115 binds on the CI machine), and two listeners of one
// test (nginx's imap and pop3 servers) once got the same port.
func Pick() (int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	lo, hi := pool()
	for range 1000 {
		port := lo + rand.IntN(hi-lo)
		if handedOut.ports[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // in use
		}
		if err := l.Close(); err != nil {
			return 0, err
		}
		handedOut.ports[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("loopport: no free loopback port in %d-%d that was not handed out before", lo, hi-1)
}

// pool is the range Pick picks from: the 10000 ports below the ephemeral
// range (net.ipv4.ip_local_port_range, 32768 by default).
func pool() (lo, hi int) {
	hi = 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11024 {
				hi = n
			}
		}
	}
	return hi - 10000, hi
}
