package bruteforce

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time        { return c.t }
func (c *clock) add(d time.Duration)   { c.t = c.t.Add(d) }
func newClock() *clock                 { return &clock{t: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)} }
func ip(s string) netip.Addr           { return netip.MustParseAddr(s) }
func pw(i int) []byte                  { return []byte(fmt.Sprintf("wrong-%d", i)) }
func newL(l Limits, c *clock) *Limiter { return New(l, Options{Now: c.now, Key: []byte("k")}) }

// strictLimiter is a limiter with the default limits, none of the
// default exempt networks, and a clock the test moves; each of set may
// change the limits first.
func strictLimiter(set ...func(*Limits)) (*Limiter, *clock) {
	c := newClock()
	l := noAllow()
	for _, f := range set {
		f(&l)
	}
	return newL(l, c), c
}

// failLogins records logins of user from a with the passwords pw(from)
// up to pw(to-1), each with outcome o.
func failLogins(b *Limiter, a netip.Addr, user string, from, to int, o Outcome) {
	for i := from; i < to; i++ {
		b.Record(a, user, pw(i), o)
	}
}
func noAllow() Limits { l := DefaultLimits(); l.AllowNets = nil; return l }

// login is what a bridge does: Check, then ask the backend, then Record.
func login(b *Limiter, backend *int, a netip.Addr, user string, pass []byte, o Outcome) Decision {
	d := b.Check(a, user)
	if d.Blocked {
		return d
	}
	*backend++
	b.Record(a, user, pass, o)
	return d
}

func TestTenthDistinctWrongPasswordBlocks(t *testing.T) {
	c := newClock()
	var logs bytes.Buffer
	b := New(noAllow(), Options{Now: c.now, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	backend := 0
	a := ip("192.0.2.7")
	for i := 1; i <= 9; i++ {
		if d := login(b, &backend, a, "alice", pw(i), WrongPassword); d.Blocked {
			t.Fatalf("blocked after %d failures", i-1)
		}
	}
	if b.Check(a, "alice").Blocked {
		t.Fatal("blocked after 9 failures")
	}
	login(b, &backend, a, "alice", pw(10), WrongPassword)
	d := login(b, &backend, a, "alice", []byte("right"), OK)
	if !d.Blocked || !d.Until.Equal(c.t.Add(DefaultBlockFor)) {
		t.Fatalf("11th: %+v", d)
	}
	if backend != 10 {
		t.Fatalf("backend saw %d requests, want 10", backend)
	}
	if !strings.Contains(logs.String(), "network=192.0.2.7/32") || strings.Contains(logs.String(), "wrong-") {
		t.Fatalf("log: %s", logs.String())
	}
	s := b.Stats()
	if s.Failures != 10 || s.Refused != 1 || s.BlockedNow != 1 {
		t.Fatalf("stats %+v", s)
	}
	bl := b.Blocked()
	if len(bl) != 1 || bl[0].Network.String() != "192.0.2.7/32" || bl[0].Failures != 10 {
		t.Fatalf("blocked %v", bl)
	}
}

func TestRepeatedWrongPasswordCountsOnce(t *testing.T) {
	b, _ := strictLimiter()
	a := ip("192.0.2.7")
	for i := 0; i < 100; i++ {
		b.Record(a, "alice", []byte("stale"), WrongPassword)
	}
	if b.Check(a, "alice").Blocked || b.Stats().Failures != 1 {
		t.Fatalf("stale password: %+v", b.Stats())
	}
	// the same password for another user is another failure
	for i := 0; i < 9; i++ {
		b.Record(a, fmt.Sprintf("u%d", i), []byte("stale"), WrongPassword)
	}
	if !b.Check(a, "alice").Blocked {
		t.Fatal("10 distinct user/password pairs did not block")
	}
}

func TestAllowNetsNeverBlocked(t *testing.T) {
	c := newClock()
	b := newL(DefaultLimits(), c)
	for _, s := range []string{"127.0.0.2", "::1", "::ffff:127.0.0.3"} {
		for i := 0; i < 50; i++ {
			b.Record(ip(s), "alice", pw(i), WrongPassword)
		}
		if b.Check(ip(s), "alice").Blocked {
			t.Fatalf("%s blocked", s)
		}
	}
	if s := b.Stats(); s.Failures != 0 || s.TrackedNets != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestBackendFailuresDoNotCount(t *testing.T) {
	b, _ := strictLimiter()
	failLogins(b, ip("192.0.2.1"), "alice", 0, 50, Failed)
	if b.Check(ip("192.0.2.1"), "alice").Blocked || b.Stats().Failures != 0 {
		t.Fatal("backend failures counted")
	}
}

func TestSuccessResets(t *testing.T) {
	b, _ := strictLimiter()
	a := ip("192.0.2.1")
	failLogins(b, a, "alice", 0, 9, WrongPassword)
	b.Record(a, "alice", []byte("right"), OK)
	failLogins(b, a, "alice", 100, 109, WrongPassword)
	if b.Check(a, "alice").Blocked {
		t.Fatal("success did not reset the count")
	}
}

func TestIPv6Grouping(t *testing.T) {
	b, _ := strictLimiter()
	for i := 0; i < 10; i++ {
		b.Record(ip(fmt.Sprintf("2001:db8:1:2::%x", i+1)), "alice", pw(i), WrongPassword)
	}
	if !b.Check(ip("2001:db8:1:2:ffff::1"), "bob").Blocked {
		t.Fatal("same /64 not blocked")
	}
	if b.Check(ip("2001:db8:1:3::1"), "bob").Blocked {
		t.Fatal("other /64 blocked")
	}
	// IPv4 /32: a neighbour is not blocked
	failLogins(b, ip("192.0.2.1"), "alice", 0, 10, WrongPassword)
	if b.Check(ip("192.0.2.2"), "alice").Blocked || !b.Check(ip("::ffff:192.0.2.1"), "x").Blocked {
		t.Fatal("IPv4 grouping")
	}
}

func TestExpiryAfterBlockForAndWindow(t *testing.T) {
	c := newClock()
	var logs bytes.Buffer
	b := New(noAllow(), Options{Now: c.now, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	a := ip("192.0.2.1")
	failLogins(b, a, "alice", 0, 10, WrongPassword)
	c.add(DefaultBlockFor - time.Second)
	if !b.Check(a, "alice").Blocked {
		t.Fatal("released early")
	}
	c.add(time.Second)
	if b.Check(a, "alice").Blocked {
		t.Fatal("not released after BlockFor")
	}
	if !strings.Contains(logs.String(), "released") {
		t.Fatalf("no release line: %s", logs.String())
	}
	// failures spread wider than Window never block
	for i := 0; i < 30; i++ {
		b.Record(a, "alice", pw(i), WrongPassword)
		c.add(DefaultWindow / 5)
	}
	if b.Check(a, "alice").Blocked {
		t.Fatal("slow failures blocked")
	}
}

func TestSetLimitsKeepsState(t *testing.T) {
	b, _ := strictLimiter()
	a := ip("192.0.2.1")
	failLogins(b, a, "alice", 0, 5, WrongPassword)
	l := noAllow()
	l.MaxFailures = 6
	b.SetLimits(l)
	b.Record(a, "alice", pw(99), WrongPassword)
	if !b.Check(a, "alice").Blocked {
		t.Fatal("state lost or new limit not applied")
	}
	l.MaxFailures = 0
	b.SetLimits(l)
	if b.Check(a, "alice").Blocked {
		t.Fatal("MaxFailures=0 still blocks")
	}
}

func TestUserLimit(t *testing.T) {
	b, _ := strictLimiter(func(l *Limits) { l.MaxUserFailures = 5 })
	home := ip("198.51.100.9")
	b.Record(home, "alice", []byte("right"), OK)
	for i := 0; i < 5; i++ {
		b.Record(ip(fmt.Sprintf("203.0.113.%d", i+1)), "alice", pw(i), WrongPassword)
	}
	if d := b.Check(ip("203.0.113.200"), "alice"); !d.Blocked {
		t.Fatal("user not blocked")
	}
	if b.Check(home, "alice").Blocked {
		t.Fatal("network that logged in successfully is blocked")
	}
	if b.Check(ip("203.0.113.200"), "bob").Blocked {
		t.Fatal("other user blocked")
	}
	if ok, _ := b.Unblock("user:alice"); !ok || b.Check(ip("203.0.113.200"), "alice").Blocked {
		t.Fatal("unblock user")
	}
}

func TestUnblock(t *testing.T) {
	b, _ := strictLimiter()
	failLogins(b, ip("2001:db8::1"), "alice", 0, 10, WrongPassword)
	if ok, err := b.Unblock("2001:db8::77"); err == nil && ok {
		// a single address inside a blocked /64 releases the /64
	} else {
		t.Fatalf("unblock: %v %v", ok, err)
	}
	if b.Check(ip("2001:db8::1"), "alice").Blocked {
		t.Fatal("still blocked")
	}
	if ok, _ := b.Unblock("192.0.2.0/24"); ok {
		t.Fatal("unblocked nothing but said so")
	}
	if _, err := b.Unblock("not-an-ip"); err == nil {
		t.Fatal("bad target accepted")
	}
}

func TestMaxTrackedBound(t *testing.T) {
	b, _ := strictLimiter(func(l *Limits) { l.MaxTracked = 1000 })
	n := 1000000
	if testing.Short() {
		n = 100000
	}
	var a [4]byte
	for i := 0; i < n; i++ {
		a = [4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}
		b.Record(netip.AddrFrom4(a), "alice", []byte("x"), WrongPassword)
	}
	if s := b.Stats(); s.TrackedNets != 1000 {
		t.Fatalf("tracked %d", s.TrackedNets)
	}
	// the newest survived, the oldest went
	b.Record(netip.AddrFrom4(a), "alice", []byte("y"), WrongPassword)
	if e := b.nets.get(netip.AddrFrom4(a).String() + "/32"); e == nil || e.failures != 2 {
		t.Fatal("newest entry evicted")
	}
	if b.nets.get("10.0.0.0/32") != nil {
		t.Fatal("oldest entry kept")
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultLimits().Validate(); err != nil {
		t.Fatal(err)
	}
	l := Limits{MaxFailures: -1, MaxUserFailures: 1, IPv4Prefix: 33, IPv6Prefix: 0}
	err := l.Validate()
	for _, k := range []string{"MaxFailures", "Window", "BlockFor", "MaxTracked", "IPv4Prefix", "IPv6Prefix"} {
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s not reported: %v", k, err)
		}
	}
}

func TestParseNet(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7": "192.0.2.7/32", "192.0.2.7/24": "192.0.2.0/24", "::ffff:192.0.2.7": "192.0.2.7/32",
		"::ffff:192.0.2.0/120": "192.0.2.0/24", "2001:db8::1/64": "2001:db8::/64", " fe80::1%eth0 ": "fe80::1/128",
	} {
		p, err := ParseNet(in)
		if err != nil || p.String() != want {
			t.Errorf("ParseNet(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"", "x", "1.2.3.4/33", "::ffff:1.2.3.4/90"} {
		if _, err := ParseNet(in); err == nil {
			t.Errorf("ParseNet(%q) accepted", in)
		}
	}
}

func FuzzParseNet(f *testing.F) {
	for _, s := range []string{"192.0.2.7", "2001:db8::/64", "::ffff:1.2.3.4/100", "a/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseNet(s)
		if err != nil {
			return
		}
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() {
			t.Fatalf("ParseNet(%q) = %v", s, p)
		}
	})
}
