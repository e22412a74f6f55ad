package bruteforce

import (
	"bytes"
	"context"
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

// blocked is Check as a question: a login let through gives its try
// back at once, answered by nobody.
func blocked(b *Limiter, a netip.Addr, user string) bool {
	d := b.Check(a, user)
	d.Done(nil, Failed)
	return d.Blocked
}

func noAllow() Limits { l := DefaultLimits(); l.AllowNets = nil; return l }

// login is what a bridge does: Check, then ask the backend, then Done.
func login(b *Limiter, backend *int, a netip.Addr, user string, pass []byte, o Outcome) Decision {
	d := b.Check(a, user)
	if d.Blocked {
		return d
	}
	*backend++
	d.Done(pass, o)
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
	if blocked(b, a, "alice") {
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
	if blocked(b, a, "alice") || b.Stats().Failures != 1 {
		t.Fatalf("stale password: %+v", b.Stats())
	}
	// the same password for another user is another failure
	for i := 0; i < 9; i++ {
		b.Record(a, fmt.Sprintf("u%d", i), []byte("stale"), WrongPassword)
	}
	if !blocked(b, a, "alice") {
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
		if blocked(b, ip(s), "alice") {
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
	if blocked(b, ip("192.0.2.1"), "alice") || b.Stats().Failures != 0 {
		t.Fatal("backend failures counted")
	}
}

func TestSuccessResets(t *testing.T) {
	b, _ := strictLimiter()
	a := ip("192.0.2.1")
	failLogins(b, a, "alice", 0, 9, WrongPassword)
	b.Record(a, "alice", []byte("right"), OK)
	failLogins(b, a, "alice", 100, 109, WrongPassword)
	if blocked(b, a, "alice") {
		t.Fatal("success did not reset the count")
	}
}

func TestIPv6Grouping(t *testing.T) {
	b, _ := strictLimiter()
	for i := 0; i < 10; i++ {
		b.Record(ip(fmt.Sprintf("2001:db8:1:2::%x", i+1)), "alice", pw(i), WrongPassword)
	}
	if !blocked(b, ip("2001:db8:1:2:ffff::1"), "bob") {
		t.Fatal("same /64 not blocked")
	}
	if blocked(b, ip("2001:db8:1:3::1"), "bob") {
		t.Fatal("other /64 blocked")
	}
	// IPv4 /32: a neighbour is not blocked
	failLogins(b, ip("192.0.2.1"), "alice", 0, 10, WrongPassword)
	if blocked(b, ip("192.0.2.2"), "alice") || !blocked(b, ip("::ffff:192.0.2.1"), "x") {
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
	if !blocked(b, a, "alice") {
		t.Fatal("released early")
	}
	c.add(time.Second)
	if blocked(b, a, "alice") {
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
	if blocked(b, a, "alice") {
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
	if !blocked(b, a, "alice") {
		t.Fatal("state lost or new limit not applied")
	}
	l.MaxFailures = 0
	b.SetLimits(l)
	if blocked(b, a, "alice") {
		t.Fatal("MaxFailures=0 still blocks")
	}
}

// TestLoweredLimitsLetOneLoginDecide: a reload lowering MaxFailures or
// MaxUserFailures below what a network or login name has already failed,
// with no login of theirs in flight, lets the next login through: its
// answer blocks or resets, as it would have before the reload. Taking the
// excess for logins in flight would refuse every login, right passwords
// included, for a whole Window, and neither `blocked` nor `unblock`
// would show or release it.
func TestLoweredLimitsLetOneLoginDecide(t *testing.T) {
	for _, byUser := range []bool{false, true} {
		t.Run(fmt.Sprintf("user=%v", byUser), func(t *testing.T) {
			b, _ := strictLimiter(func(l *Limits) { l.MaxFailures, l.MaxUserFailures = 20, 20 })
			a, user := ip("192.0.2.1"), "alice"
			for i := range 7 {
				if byUser {
					b.Record(ip(fmt.Sprintf("198.51.100.%d", i+1)), user, pw(i), WrongPassword)
				} else {
					b.Record(a, fmt.Sprintf("u%d", i), pw(i), WrongPassword)
				}
			}
			l := noAllow()
			l.MaxFailures, l.MaxUserFailures = 20, 20
			if byUser {
				l.MaxUserFailures = 5
			} else {
				l.MaxFailures = 5
			}
			b.SetLimits(l)
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			d := b.Acquire(ctx, a, user)
			if d.Blocked {
				t.Fatalf("login after lowering the limit: %+v", d)
			}
			d.Done(pw(99), WrongPassword)
			if !blocked(b, a, user) {
				t.Fatal("a wrong password over the lowered limit does not block")
			}
		})
	}
}

func TestUserLimit(t *testing.T) {
	b, _ := strictLimiter(func(l *Limits) { l.MaxUserFailures = 5 })
	home := ip("198.51.100.9")
	b.Record(home, "alice", []byte("right"), OK)
	for i := 0; i < 5; i++ {
		b.Record(ip(fmt.Sprintf("203.0.113.%d", i+1)), "alice", pw(i), WrongPassword)
	}
	if !blocked(b, ip("203.0.113.200"), "alice") {
		t.Fatal("user not blocked")
	}
	if blocked(b, home, "alice") {
		t.Fatal("network that logged in successfully is blocked")
	}
	if blocked(b, ip("203.0.113.200"), "bob") {
		t.Fatal("other user blocked")
	}
	if ok, _ := b.Unblock("user:alice"); !ok || blocked(b, ip("203.0.113.200"), "alice") {
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
	if blocked(b, ip("2001:db8::1"), "alice") {
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

// TestConcurrentAttemptsReserve: logins in flight count against the
// tries left, for the network and for the login name; Done gives each
// back whatever the outcome, and a backend failure counts nothing.
func TestConcurrentAttemptsReserve(t *testing.T) {
	b, c := strictLimiter(func(l *Limits) { l.MaxUserFailures = 5 })
	a := ip("192.0.2.1")
	b.Record(a, "bob", pw(0), WrongPassword)
	var held []Decision
	for i := 0; i < 9; i++ { // 1 failure + 9 in flight = MaxFailures
		d := b.Check(a, fmt.Sprint("u", i))
		if d.Blocked {
			t.Fatalf("login %d refused", i)
		}
		held = append(held, d)
	}
	d := b.Check(a, "bob")
	if !d.Blocked || !d.Until.Equal(c.t) || !strings.Contains(d.Reason, "in progress") {
		t.Fatalf("10th in flight: %+v", d)
	}
	d.Done(nil, WrongPassword) // a refusal's Done does nothing
	if s := b.Stats(); s.InFlight != 9 || s.Refused != 1 || s.Failures != 1 {
		t.Fatalf("stats %+v", s)
	}
	if blocked(b, ip("192.0.2.2"), "bob") {
		t.Fatal("another network refused")
	}
	held[0].Done(pw(1), Failed) // released, not counted
	held[1].Done([]byte("right"), OK)
	if s := b.Stats(); s.InFlight != 7 || s.Failures != 1 || len(b.pendingNets) != 1 {
		t.Fatalf("after Done: %+v, pending %v", s, b.pendingNets)
	}
	for _, d := range held[2:] {
		d.Done(pw(2), WrongPassword) // after the reset by OK: 7 of 10, not blocked
	}
	if s := b.Stats(); s.InFlight != 0 || s.Failures != 8 || s.BlockedNow != 0 || len(b.pendingNets)+len(b.pendingUsers) != 0 {
		t.Fatalf("all done: %+v, pending %v %v", s, b.pendingNets, b.pendingUsers)
	}

	// The per-name limit: 5 logins of carol in flight from 5 networks
	// refuse a 6th from a 6th network, but not from a network carol
	// logged in from.
	home := ip("198.51.100.9")
	b.Record(home, "carol", []byte("right"), OK)
	held = held[:0]
	for i := 0; i < 5; i++ {
		d := b.Check(ip(fmt.Sprintf("203.0.113.%d", i+1)), "carol")
		if d.Blocked {
			t.Fatalf("carol %d refused: %+v", i, d)
		}
		held = append(held, d)
	}
	if d := b.Check(ip("203.0.113.99"), "carol"); !d.Blocked || !strings.Contains(d.Reason, "user") {
		t.Fatalf("6th carol in flight: %+v", d)
	}
	if blocked(b, home, "carol") {
		t.Fatal("carol's own network refused")
	}
	// SetLimits while logins are in flight: their tries are still given back.
	l := noAllow()
	l.MaxFailures, l.MaxUserFailures = 0, 0
	b.SetLimits(l)
	for _, d := range held {
		d.Done(pw(3), WrongPassword)
	}
	if s := b.Stats(); s.InFlight != 0 || len(b.pendingNets)+len(b.pendingUsers) != 0 {
		t.Fatalf("after SetLimits: %+v", s)
	}
}

// TestAcquireWaits: a login refused only for the tries held by logins in
// flight waits for one to end, and is refused (not counted as a failure)
// when its context ends first.
func TestAcquireWaits(t *testing.T) {
	b := New(Limits{MaxFailures: 2, Window: time.Minute, BlockFor: time.Minute, IPv4Prefix: 32, IPv6Prefix: 64, MaxTracked: 100}, Options{})
	ip := netip.MustParseAddr("192.0.2.1")
	held := []Decision{b.Check(ip, "a"), b.Check(ip, "b")}
	if held[0].Blocked || held[1].Blocked {
		t.Fatal("first two logins refused")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if d := b.Acquire(ctx, ip, "c"); !d.Blocked || !strings.Contains(d.Reason, "in progress") {
		t.Fatalf("third login while two are in flight: %+v", d)
	}
	got := make(chan Decision)
	go func() { got <- b.Acquire(t.Context(), ip, "c") }()
	time.Sleep(10 * time.Millisecond)
	held[0].Done(nil, OK)
	if d := <-got; d.Blocked {
		t.Fatalf("after one ended: %+v", d)
	} else {
		d.Done(nil, Failed)
	}
	held[1].Done(nil, Failed)
	if s := b.Stats(); s.InFlight != 0 || s.Failures != 0 || s.Refused != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestAcquireWakesOnlyItsKey: a login ending wakes only the logins
// waiting for a try of its own network or name; waking every waiter made
// each finished login cost as many lock rounds as logins were queued,
// from any network.
func TestAcquireWakesOnlyItsKey(t *testing.T) {
	b := New(Limits{MaxFailures: 1, Window: time.Minute, BlockFor: time.Minute, IPv4Prefix: 32, IPv6Prefix: 64, MaxTracked: 100}, Options{})
	a, other := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	heldA, heldOther := b.Check(a, "x"), b.Check(other, "y")
	got := make(chan Decision)
	go func() { got <- b.Acquire(t.Context(), a, "z") }()
	waiting := func() (c chan struct{}) {
		for range 1000 {
			b.mu.Lock()
			c = b.freedNets[netip.PrefixFrom(a, 32)]
			b.mu.Unlock()
			if c != nil {
				return c
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatal("no waiter for the network")
		return nil
	}
	c := waiting()
	heldOther.Done(nil, OK)
	select {
	case <-c:
		t.Fatal("another network's login woke the waiter")
	case d := <-got:
		t.Fatalf("waiter returned %+v", d)
	default:
	}
	heldA.Done(nil, OK)
	if d := <-got; d.Blocked {
		t.Fatalf("after its network's login ended: %+v", d)
	} else {
		d.Done(nil, OK)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.freedNets)+len(b.freedUsers) != 0 {
		t.Fatalf("wake channels left: %v %v", b.freedNets, b.freedUsers)
	}
}

// TestFloodKeepsBlocks: a flood of new networks or login names, each
// with one wrong password, fills the tables past MaxTracked; it must not
// push out what is blocked, or it would release a login name someone is
// guessing (or the flooder's own networks) early.
func TestFloodKeepsBlocks(t *testing.T) {
	b, _ := strictLimiter(func(l *Limits) { l.MaxUserFailures, l.MaxTracked = 5, 100 })
	for i := range 10 {
		b.Record(ip(fmt.Sprintf("203.0.113.%d", i+1)), "alice", pw(i), WrongPassword)
	}
	bad := ip("198.51.100.7")
	failLogins(b, bad, "bob", 0, 10, WrongPassword)
	if !blocked(b, ip("192.0.2.200"), "alice") || !blocked(b, bad, "carol") {
		t.Fatal("not blocked before the flood")
	}
	for i := range 5000 {
		b.Record(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), fmt.Sprint("user", i), pw(i), WrongPassword)
	}
	if s := b.Stats(); s.TrackedNets > 100 || s.TrackedUsers > 100 {
		t.Fatalf("tables past MaxTracked: %+v", s)
	}
	if !blocked(b, ip("192.0.2.200"), "alice") {
		t.Error("login name released by a flood of other names")
	}
	if !blocked(b, bad, "carol") {
		t.Error("network released by a flood of other networks")
	}
}
