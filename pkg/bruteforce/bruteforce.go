// Package bruteforce counts wrong passwords per client network (and
// optionally per login name) and tells the bridges when to refuse a login
// without asking the backend.
//
// State lives in memory only: a restart forgets it, a reload (SetLimits)
// keeps it. Passwords are never stored; a wrong password is remembered as
// 8 bytes of HMAC-SHA256 under a random per-process key, only so that a
// client retrying the same stale password counts once.
//
// A login holds one of its network's (and login name's) remaining tries
// from Check until its Decision's Done, so logins sent at once cannot
// get more guesses to the backend than sequential ones: Check refuses
// when the failures counted plus the logins in flight reach the limit.
//
// Memory: one tracked network or login name costs about 250 bytes plus
// 8 bytes per distinct wrong password remembered (at most MaxFailures), so
// the default MaxTracked = 100000 with MaxFailures = 10 stays under about
// 35 MB per table in the worst case.
package bruteforce

import (
	"container/list"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shitenno/shitenno/pkg/config"
)

// Defaults of the [BruteForce] section: pkg/config's, written once there.
const (
	DefaultMaxFailures = config.DefaultBruteForceMaxFailures
	DefaultWindow      = config.DefaultBruteForceWindow
	DefaultBlockFor    = config.DefaultBruteForceBlockFor
	DefaultIPv4Prefix  = config.DefaultBruteForceIPv4Prefix
	DefaultIPv6Prefix  = config.DefaultBruteForceIPv6Prefix
	DefaultMaxTracked  = config.DefaultBruteForceMaxTracked
)

// DefaultAllowNets are never counted nor blocked (config's
// DefaultBruteForceAllowNets): the proxy itself and local webmail or
// monitoring usually log in from loopback.
func DefaultAllowNets() []netip.Prefix {
	c := config.BruteForce{AllowNets: config.DefaultBruteForceAllowNets}
	return c.Nets()
}

// Limits are the tunables; SetLimits swaps them without losing state.
type Limits struct {
	// MaxFailures distinct wrong passwords from one network within Window
	// block it for BlockFor; 0 turns the limiter off.
	MaxFailures int
	Window      time.Duration
	BlockFor    time.Duration
	// IPv4Prefix and IPv6Prefix group client addresses into networks.
	IPv4Prefix int
	IPv6Prefix int
	// AllowNets are never counted and never blocked.
	AllowNets []netip.Prefix
	// MaxUserFailures is the per-login-name limit across networks; 0 is off.
	MaxUserFailures int
	// MaxTracked bounds each table (networks, names); the least recently
	// touched entry is evicted first.
	MaxTracked int
}

// DefaultLimits returns the documented defaults.
func DefaultLimits() Limits {
	return Limits{
		MaxFailures: DefaultMaxFailures, Window: DefaultWindow, BlockFor: DefaultBlockFor,
		IPv4Prefix: DefaultIPv4Prefix, IPv6Prefix: DefaultIPv6Prefix,
		AllowNets: DefaultAllowNets(), MaxTracked: DefaultMaxTracked,
	}
}

// FieldError is one problem of Limits, named by its config key so that
// pkg/config can point at the file line.
type FieldError struct {
	Key string // key inside [BruteForce], e.g. "Window"
	Msg string
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Msg }

// Validate reports every problem of l, one *FieldError per key, joined.
func (l Limits) Validate() error {
	var errs []error
	if l.MaxFailures < 0 {
		errs = append(errs, &FieldError{Key: "MaxFailures", Msg: "must be >= 0"})
	}
	if l.MaxUserFailures < 0 {
		errs = append(errs, &FieldError{Key: "MaxUserFailures", Msg: "must be >= 0"})
	}
	if l.MaxFailures > 0 || l.MaxUserFailures > 0 {
		if l.Window <= 0 {
			errs = append(errs, &FieldError{Key: "Window", Msg: "must be > 0"})
		}
		if l.BlockFor <= 0 {
			errs = append(errs, &FieldError{Key: "BlockFor", Msg: "must be > 0"})
		}
		if l.MaxTracked <= 0 {
			errs = append(errs, &FieldError{Key: "MaxTracked", Msg: "must be > 0"})
		}
	}
	if l.IPv4Prefix < 1 || l.IPv4Prefix > 32 {
		errs = append(errs, &FieldError{Key: "IPv4Prefix", Msg: "must be within 1..32"})
	}
	if l.IPv6Prefix < 1 || l.IPv6Prefix > 128 {
		errs = append(errs, &FieldError{Key: "IPv6Prefix", Msg: "must be within 1..128"})
	}
	return errors.Join(errs...)
}

// Outcome is what the backend said about one login.
type Outcome int

const (
	// Failed means the backend could not answer; it never counts.
	Failed Outcome = iota
	// OK is a successful login; it resets the network's count.
	OK
	// WrongPassword is a definitive KO; it counts.
	WrongPassword
)

// Decision is the answer of Check. One that is not Blocked holds a
// reservation until its Done is called.
type Decision struct {
	Blocked bool
	// Until is when the block ends; a login refused because as many
	// logins are in flight as tries are left has Until = now.
	Until time.Time
	// Reason is a short text for logs and SASL FAIL replies.
	Reason string

	// What Done gives back and records; b is nil when Blocked.
	b        *Limiter
	ip       netip.Addr
	user     string
	nw       netip.Prefix // the network reserved; invalid when none
	userHeld bool         // a try of user's is reserved
}

// Done ends a login Check let through with the backend's answer: it gives
// the reservation back and counts o as Record does, in one step so that
// no other Check sees the try neither reserved nor counted. It must be
// called exactly once for every Decision that is not Blocked, whatever
// happens to the login (a backend failure, a cancelled request or a
// panic: Failed); a second call would give back another login's try.
// Done of a Blocked Decision does nothing.
func (d Decision) Done(password []byte, o Outcome) {
	if d.b != nil {
		d.b.done(&d, password, o)
	}
}

// Block describes one blocked network or login name, for `blocked`.
type Block struct {
	Network  netip.Prefix // invalid for a login-name block
	User     string       // empty for a network block
	Failures int
	Until    time.Time
}

// String formats b as one line of the `blocked` listing.
func (b Block) String() string {
	what := b.Network.String()
	if b.User != "" {
		what = "user " + b.User
	}
	return fmt.Sprintf("%s failures=%d until=%s", what, b.Failures, b.Until.UTC().Format(time.RFC3339))
}

// Stats are monotonic counters for metrics.
type Stats struct {
	Failures     uint64 // wrong passwords counted
	Refused      uint64 // logins refused without asking the backend
	InFlight     int    // logins Check let through whose Done is still to come
	BlockedNow   int    // networks and names blocked at the time of the call
	TrackedNets  int
	TrackedUsers int
}

// Options are the dependencies of a Limiter.
type Options struct {
	// Now is the clock; nil means time.Now (tests pass a fake one).
	Now func() time.Time
	// Logger receives the block/release lines; nil discards them.
	Logger *slog.Logger
	// Key is the HMAC key for password hashes; nil means 32 random bytes.
	Key []byte
}

// entry is the state of one network or one login name.
type entry struct {
	key         string
	failures    int
	windowStart time.Time
	until       time.Time           // zero when not blocked
	seen        map[uint64]struct{} // truncated HMACs of wrong passwords
	okNets      map[netip.Prefix]time.Time
	elem        *list.Element
}

// table is a map with least-recently-touched eviction.
type table struct {
	m     map[string]*entry
	order *list.List // front = most recent
}

func newTable() *table { return &table{m: map[string]*entry{}, order: list.New()} }

func (t *table) get(k string) *entry { return t.m[k] }

// maxBlockedSkips bounds how many blocked entries one eviction passes
// over, so that a table full of blocks still costs little per touch.
const maxBlockedSkips = 16

// touch returns the entry of k, creating it when missing and evicting
// the least recently touched entry past max, one that is not blocked at
// now if one of the next maxBlockedSkips is: a flood of new networks or
// login names, each with one wrong password, must not push out the
// blocks it would otherwise release (the flooder's own networks, a login
// name being guessed). A blocked entry passed over goes to the front.
func (t *table) touch(k string, max int, now time.Time) *entry {
	if e := t.m[k]; e != nil {
		t.order.MoveToFront(e.elem)
		return e
	}
	for skips := 0; max > 0 && len(t.m) >= max; {
		old := t.order.Back().Value.(*entry)
		if skips < maxBlockedSkips && old.until.After(now) && len(t.m) > 1 {
			t.order.MoveToFront(old.elem)
			skips++
			continue
		}
		t.del(old)
	}
	e := &entry{key: k}
	e.elem = t.order.PushFront(e)
	t.m[k] = e
	return e
}

func (t *table) del(e *entry) {
	t.order.Remove(e.elem)
	delete(t.m, e.key)
}

// Limiter is safe for concurrent use.
type Limiter struct {
	mu     sync.Mutex
	lim    Limits
	nets   *table
	users  *table
	now    func() time.Time
	log    *slog.Logger
	key    []byte
	failed atomic.Uint64
	refuse atomic.Uint64
	// Tries reserved by logins in flight, per network and login name. A
	// key lives only while a login holds it, so these stay as small as
	// the logins in progress (each of which also holds a connection and
	// a goroutine); MaxTracked does not apply.
	pendingNets  map[netip.Prefix]int
	pendingUsers map[string]int
	inFlight     int
	// Per network and login name, a channel closed when a login gives
	// back a try of that key: Acquire's waiters for it then decide
	// again. Made only when one waits, and dropped when closed, so a
	// finished login wakes only the logins waiting for its own network
	// or name, not every one waiting.
	freedNets  map[netip.Prefix]chan struct{}
	freedUsers map[string]chan struct{}
}

// waitOn names what a busy check waits for: a try of network nw, or else
// of login name user.
type waitOn struct {
	nw   netip.Prefix
	user string
}

// busy reports whether the check must wait (it names a key).
func (w waitOn) busy() bool { return w.nw.IsValid() || w.user != "" }

// waitChan returns the channel closed when w's key gets a try back;
// b.mu is held.
func (b *Limiter) waitChan(w waitOn) <-chan struct{} {
	if w.nw.IsValid() {
		return chanFor(b.freedNets, w.nw)
	}
	return chanFor(b.freedUsers, w.user)
}

// chanFor returns m[k], made if missing.
func chanFor[K comparable](m map[K]chan struct{}, k K) chan struct{} {
	c := m[k]
	if c == nil {
		c = make(chan struct{})
		m[k] = c
	}
	return c
}

// wake closes and drops m[k], if any.
func wake[K comparable](m map[K]chan struct{}, k K) {
	if c := m[k]; c != nil {
		close(c)
		delete(m, k)
	}
}

// New builds a Limiter; l should have passed Validate.
func New(l Limits, o Options) *Limiter {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Key == nil {
		o.Key = make([]byte, 32)
		if _, err := rand.Read(o.Key); err != nil {
			panic(err) // crypto/rand does not fail on supported systems
		}
	}
	return &Limiter{lim: l, nets: newTable(), users: newTable(), now: o.Now, log: o.Logger, key: o.Key,
		pendingNets: map[netip.Prefix]int{}, pendingUsers: map[string]int{},
		freedNets: map[netip.Prefix]chan struct{}{}, freedUsers: map[string]chan struct{}{}}
}

// SetLimits applies new limits (SIGHUP) and keeps the counted state.
func (b *Limiter) SetLimits(l Limits) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lim = l
}

// Limits returns the limits in force.
func (b *Limiter) Limits() Limits {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lim
}

func (b *Limiter) enabled() bool { return b.lim.MaxFailures > 0 || b.lim.MaxUserFailures > 0 }

// network groups ip by the configured prefix; ok is false for an invalid
// address or one in AllowNets.
func (b *Limiter) network(ip netip.Addr) (netip.Prefix, bool) {
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap() // ::ffff:a.b.c.d is the IPv4 client
	for _, n := range b.lim.AllowNets {
		if n.Contains(ip) {
			return netip.Prefix{}, false
		}
	}
	bits := b.lim.IPv6Prefix
	if ip.Is4() {
		bits = b.lim.IPv4Prefix
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return netip.Prefix{}, false
	}
	return p, true
}

// expire releases e when its block is over or its window passed; it
// returns true when e was removed from t.
func (b *Limiter) expire(t *table, e *entry, now time.Time, what string) bool {
	if !e.until.IsZero() {
		if now.Before(e.until) {
			return false
		}
		b.log.Info("brute-force block released", what, e.key, "failures", e.failures)
		e.until = time.Time{}
		e.failures, e.seen = 0, nil
		if len(e.okNets) == 0 {
			t.del(e)
			return true
		}
		return false
	}
	if e.failures > 0 && now.Sub(e.windowStart) >= b.lim.Window {
		e.failures, e.seen = 0, nil
	}
	return false
}

// Check says whether a login of user from ip must be refused without
// asking the backend. It refuses while the network or the login name is
// blocked, and also when the failures counted plus the logins already in
// flight reach the limit: each of those could be one more failure. When
// it lets the login through, that login holds one try until the
// Decision's Done, which must follow.
func (b *Limiter) Check(ip netip.Addr, user string) Decision {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, _ := b.check(ip, user)
	b.counted(d)
	return d
}

// MaxInProgressWait bounds how long Acquire waits for a try to free up.
const MaxInProgressWait = 2 * time.Second

// Acquire is Check for a login that may wait: while it is refused only
// because as many logins are in flight as tries are left, it waits for
// one of them to end, then decides again, for at most MaxInProgressWait
// and while ctx lasts. A burst of right passwords from one network (a
// webmail host, a NAT) then queues instead of being refused, and wrong
// ones still get no more tries than MaxFailures: the network is blocked
// once they are counted, and the waiters are refused.
func (b *Limiter) Acquire(ctx context.Context, ip netip.Addr, user string) Decision {
	var wait *time.Timer
	defer func() {
		if wait != nil {
			wait.Stop()
		}
	}()
	for {
		b.mu.Lock()
		d, w := b.check(ip, user)
		if !w.busy() || ctx.Err() != nil {
			b.counted(d)
			b.mu.Unlock()
			return d
		}
		freed := b.waitChan(w)
		b.mu.Unlock()
		if wait == nil {
			wait = time.NewTimer(MaxInProgressWait)
		}
		select {
		case <-freed:
		case <-ctx.Done():
		case <-wait.C:
			b.mu.Lock()
			b.counted(d)
			b.mu.Unlock()
			return d
		}
	}
}

// counted counts d when it is a refusal.
func (b *Limiter) counted(d Decision) {
	if d.Blocked {
		b.refuse.Add(1)
	}
}

// check is Check without counting a refusal; a busy waitOn reports a
// refusal only for the tries held by logins in flight of the key it
// names, which may end soon.
//
// Complexity: the network and the login name each have a block and a
// reservation rule, and nothing is reserved before both passed.
func (b *Limiter) check(ip netip.Addr, user string) (Decision, waitOn) {
	d := Decision{b: b, ip: ip, user: user}
	if !b.enabled() {
		return d, waitOn{}
	}
	nw, ok := b.network(ip)
	if !ok {
		return d, waitOn{}
	}
	now := b.now()
	holdNet := b.lim.MaxFailures > 0
	failures := 0
	if e := b.nets.get(nw.String()); e != nil && !b.expire(b.nets, e, now, "network") {
		if !e.until.IsZero() {
			return refusal(e.until, "too many failed logins from "+nw.String()), waitOn{}
		}
		failures = e.failures
	}
	// Only logins in flight make a network wait: failures alone reach the
	// limit unblocked only after a reload lowered it, and then the next
	// login decides (a wrong password blocks, a right one resets) instead
	// of every login waiting for a login that will never end.
	if p := b.pendingNets[nw]; holdNet && p > 0 && failures+p >= b.lim.MaxFailures {
		return refusal(now, "too many logins in progress from "+nw.String()), waitOn{nw: nw}
	}
	holdUser := false
	if b.lim.MaxUserFailures > 0 && user != "" {
		e := b.users.get(user)
		if e != nil && b.expire(b.users, e, now, "user") {
			e = nil
		}
		// A network that logged in as user within Window is exempt from
		// the name's limit, so it takes none of the name's tries either.
		if t, ok := e.okNet(nw); !ok || now.Sub(t) >= b.lim.Window {
			failures = 0
			if e != nil {
				if !e.until.IsZero() {
					return refusal(e.until, "too many failed logins for this user"), waitOn{}
				}
				failures = e.failures
			}
			if p := b.pendingUsers[user]; p > 0 && failures+p >= b.lim.MaxUserFailures {
				return refusal(now, "too many logins in progress for this user"), waitOn{user: user}
			}
			holdUser = true
		}
	}
	if holdNet {
		b.pendingNets[nw]++
		d.nw = nw
	}
	if holdUser {
		b.pendingUsers[user]++
		d.userHeld = true
	}
	if holdNet || holdUser {
		b.inFlight++
	}
	return d, waitOn{}
}

// okNet returns when e's name last logged in from nw; e may be nil.
func (e *entry) okNet(nw netip.Prefix) (time.Time, bool) {
	if e == nil {
		return time.Time{}, false
	}
	t, ok := e.okNets[nw]
	return t, ok
}

// refusal is a refusal until the given time.
func refusal(until time.Time, reason string) Decision {
	return Decision{Blocked: true, Until: until, Reason: reason}
}

// done gives back what d reserved and records o, under one lock.
func (b *Limiter) done(d *Decision, password []byte, o Outcome) {
	held := d.nw.IsValid() || d.userHeld
	if !held && o == Failed {
		return // nothing to give back nor to count: no lock
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if held {
		if d.nw.IsValid() {
			release(b.pendingNets, d.nw)
			wake(b.freedNets, d.nw)
		}
		if d.userHeld {
			release(b.pendingUsers, d.user)
			wake(b.freedUsers, d.user)
		}
		b.inFlight--
	}
	b.record(d.ip, d.user, password, o)
}

// release gives back one try of k; a key is kept only while held.
func release[K comparable](m map[K]int, k K) {
	if n := m[k] - 1; n > 0 {
		m[k] = n
	} else {
		delete(m, k)
	}
}

func (b *Limiter) hash(parts ...[]byte) uint64 {
	m := hmac.New(sha256.New, b.key)
	for _, p := range parts {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(p))) // length-prefixed: no ambiguity between user and password
		m.Write(n[:])
		m.Write(p)
	}
	return binary.BigEndian.Uint64(m.Sum(nil))
}

// count adds one distinct failure to e; it reports whether it counted
// and whether e became blocked.
func (b *Limiter) count(e *entry, h uint64, max int, now time.Time) (counted, blocked bool) {
	if !e.until.IsZero() {
		return false, false
	}
	if _, dup := e.seen[h]; dup {
		return false, false
	}
	if e.failures == 0 {
		e.windowStart = now
	}
	if e.seen == nil {
		e.seen = map[uint64]struct{}{}
	}
	e.seen[h] = struct{}{}
	e.failures++
	if e.failures >= max {
		e.until = now.Add(b.lim.BlockFor)
		e.seen = nil // nothing more to dedupe until released
		return true, true
	}
	return true, false
}

// Record tells the limiter what the backend answered for a login that
// holds no reservation: a login Check let through ends with its
// Decision's Done instead, which also gives its try back. password is
// hashed, never kept.
func (b *Limiter) Record(ip netip.Addr, user string, password []byte, o Outcome) {
	if o == Failed {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record(ip, user, password, o)
}

// record is Record with b.mu held.
//
// Complexity: each branch is one rule of what counts (allowed networks,
// success, failure, a repeated password, the per-name limit), kept
// together so their order is visible.
func (b *Limiter) record(ip netip.Addr, user string, password []byte, o Outcome) {
	if o == Failed || !b.enabled() {
		return
	}
	nw, ok := b.network(ip)
	if !ok {
		return
	}
	now := b.now()
	nk := nw.String()
	if o == OK {
		if e := b.nets.get(nk); e != nil && e.until.IsZero() {
			b.nets.del(e)
		}
		if b.lim.MaxUserFailures > 0 && user != "" {
			e := b.users.touch(user, b.lim.MaxTracked, now)
			if e.okNets == nil {
				e.okNets = map[netip.Prefix]time.Time{}
			}
			for n, t := range e.okNets { // keep the map small: only Window matters
				if now.Sub(t) >= b.lim.Window {
					delete(e.okNets, n)
				}
			}
			e.okNets[nw] = now
		}
		return
	}
	if b.lim.MaxFailures > 0 {
		e := b.nets.touch(nk, b.lim.MaxTracked, now)
		if !b.expire(b.nets, e, now, "network") {
			counted, blocked := b.count(e, b.hash([]byte(user), password), b.lim.MaxFailures, now)
			if counted {
				b.failed.Add(1)
			}
			if blocked {
				b.log.Warn("brute-force: network blocked", "network", nk, "failures", e.failures,
					"until", e.until.UTC().Format(time.RFC3339), "user", user)
			}
		}
	}
	if b.lim.MaxUserFailures > 0 && user != "" {
		e := b.users.touch(user, b.lim.MaxTracked, now)
		if !b.expire(b.users, e, now, "user") {
			if _, blocked := b.count(e, b.hash(password), b.lim.MaxUserFailures, now); blocked {
				b.log.Warn("brute-force: login name blocked", "user", user, "failures", e.failures,
					"until", e.until.UTC().Format(time.RFC3339))
			}
		}
	}
}

// Blocked lists what is blocked now; expired blocks are released first.
func (b *Limiter) Blocked() []Block {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	var out []Block
	for _, e := range b.nets.m {
		if !b.expire(b.nets, e, now, "network") && !e.until.IsZero() {
			p, _ := netip.ParsePrefix(e.key)
			out = append(out, Block{Network: p, Failures: e.failures, Until: e.until})
		}
	}
	for _, e := range b.users.m {
		if !b.expire(b.users, e, now, "user") && !e.until.IsZero() {
			out = append(out, Block{User: e.key, Failures: e.failures, Until: e.until})
		}
	}
	return out
}

// Unblock releases the network containing net (grouped like a client
// address when net is a single address) or, with "user:NAME", a login
// name. It reports whether something was blocked.
func (b *Limiter) Unblock(target string) (bool, error) {
	if name, ok := strings.CutPrefix(target, "user:"); ok {
		b.mu.Lock()
		defer b.mu.Unlock()
		e := b.users.get(name)
		if e == nil || e.until.IsZero() {
			return false, nil
		}
		b.log.Info("brute-force block released", "user", name, "failures", e.failures, "by", "unblock")
		e.until, e.failures = time.Time{}, 0
		return true, nil
	}
	p, err := ParseNet(target)
	if err != nil {
		return false, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	found := false
	for _, e := range b.nets.m {
		n, _ := netip.ParsePrefix(e.key)
		if e.until.IsZero() || !(p.Overlaps(n)) {
			continue
		}
		b.log.Info("brute-force block released", "network", e.key, "failures", e.failures, "by", "unblock")
		b.nets.del(e)
		found = true
	}
	return found, nil
}

// Stats returns the counters and the number of blocks in force.
func (b *Limiter) Stats() Stats {
	b.mu.Lock()
	now := b.now()
	n := 0
	for _, e := range b.nets.m {
		if !e.until.IsZero() && now.Before(e.until) {
			n++
		}
	}
	for _, e := range b.users.m {
		if !e.until.IsZero() && now.Before(e.until) {
			n++
		}
	}
	s := Stats{BlockedNow: n, TrackedNets: len(b.nets.m), TrackedUsers: len(b.users.m), InFlight: b.inFlight}
	b.mu.Unlock()
	s.Failures, s.Refused = b.failed.Load(), b.refuse.Load()
	return s
}

// ParseNet reads an address ("192.0.2.7", "2001:db8::1") or a network
// ("192.0.2.0/24") as given to `unblock`; the address is masked.
func ParseNet(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			if !p.IsValid() {
				return netip.Prefix{}, fmt.Errorf("%q: invalid network", s)
			}
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// FromConfig converts the [BruteForce] section (already validated).
func FromConfig(c config.BruteForce) Limits {
	return Limits{
		MaxFailures: c.MaxFailures, Window: c.Window.Duration, BlockFor: c.BlockFor.Duration,
		IPv4Prefix: c.IPv4Prefix, IPv6Prefix: c.IPv6Prefix, AllowNets: c.Nets(),
		MaxUserFailures: c.MaxUserFailures, MaxTracked: c.MaxTracked,
	}
}

// Guard is what a bridge needs of the limiter (*Limiter implements it):
// Acquire before the backend and, when not blocked, the Decision's Done
// after it. A nil Guard in a bridge means no brute-force protection.
type Guard interface {
	Acquire(ctx context.Context, ip netip.Addr, user string) Decision
}
