package bruteforce

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkLogin is the limiter's bookkeeping for one login the way a
// bridge does it: Check before the backend, the Decision's Done after
// it; 15 logins in 16 succeed, each client from its own address.
func BenchmarkLogin(b *testing.B) {
	const n = 4096
	ips := make([]netip.Addr, n)
	users := make([]string, n)
	pws := make([][]byte, n)
	for i := range n {
		ips[i] = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		users[i], pws[i] = fmt.Sprint("user", i), []byte(fmt.Sprint("pw", i))
	}
	for _, tc := range []struct {
		name string
		max  int
	}{{"off", 0}, {"on", DefaultMaxFailures}} {
		b.Run(tc.name, func(b *testing.B) {
			l := DefaultLimits()
			l.MaxFailures = tc.max
			lim := New(l, Options{})
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := i % n
				o := OK
				if k%16 == 15 {
					o = WrongPassword
				}
				d := lim.Check(ips[k], users[k])
				if d.Blocked {
					b.Fatal("blocked")
				}
				d.Done(pws[k], o)
			}
		})
	}
}
