package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shitenno/shitenno/pkg/bruteforce"
	"github.com/shitenno/shitenno/pkg/mailauth"
	"github.com/shitenno/shitenno/pkg/remote"
	"github.com/shitenno/shitenno/pkg/sasl"
)

// slowBackend answers after delay, the way a real backend keeps logins
// in flight: OK for the password "right", KO for any other, or a
// failure when fail is set. It counts the lookups per Client-IP.
type slowBackend struct {
	delay time.Duration
	fail  atomic.Bool
	mu    sync.Mutex
	asked map[string]int
	// busy and most: lookups in progress now and at most.
	busy, most int
}

func newSlowBackend() *slowBackend {
	return &slowBackend{delay: 50 * time.Millisecond, asked: map[string]int{}}
}

func (b *slowBackend) Lookup(ctx context.Context, verb string, object any) (remote.Result, error) {
	o, err := json.Marshal(object)
	if err != nil {
		return remote.Result{}, err
	}
	return b.LookupRaw(ctx, verb, o)
}

func (b *slowBackend) LookupRaw(ctx context.Context, _ string, object json.RawMessage) (remote.Result, error) {
	var m map[string]any
	if err := json.Unmarshal(object, &m); err != nil {
		return remote.Result{}, err
	}
	ip, _ := m["Client-IP"].(string)
	pass, _ := m["Auth-Pass"].(string) // nginx
	if p, ok := m["Password"].(string); ok {
		pass = p // SASL
	}
	b.mu.Lock()
	b.asked[ip]++
	b.busy++
	b.most = max(b.most, b.busy)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.busy--
		b.mu.Unlock()
	}()
	select {
	case <-time.After(b.delay):
	case <-ctx.Done():
		return remote.Result{}, ctx.Err()
	}
	switch {
	case b.fail.Load():
		return remote.Result{}, remote.Failf("down")
	case pass == "right":
		return remote.Result{Status: remote.Found, Data: json.RawMessage(`{"Auth-Server":"127.0.0.1","Auth-Port":143}`)}, nil
	}
	return remote.Result{Status: remote.NotFound}, nil
}

func (b *slowBackend) LookupObject(ctx context.Context, verb string, o remote.Object) (remote.Result, error) {
	return b.LookupRaw(ctx, verb, o.JSON())
}

func (b *slowBackend) count(ip string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.asked[ip]
}

// mostAtOnce is the largest number of lookups the backend had in
// progress at once.
func (b *slowBackend) mostAtOnce() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.most
}

// ngxLogin is one nginx IMAP login of alice from ip with password pass.
func ngxLogin(n *Nginx, ip, pass string) mailauth.Reply {
	req := ngxRequest("imap", "plain")
	req.ClientIP, req.Fields["Client-IP"] = ip, ip
	req.Pass = mailauth.Secret(pass)
	rep, _ := n.ServeAuth(context.Background(), req)
	return rep
}

// parallel runs n logins at once and returns their replies' statuses.
func parallel(n int, login func(i int) string) []string {
	out := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i] = login(i)
		}()
	}
	close(start)
	wg.Wait()
	return out
}

func tally(statuses []string) map[string]int {
	m := map[string]int{}
	for _, s := range statuses {
		m[s]++
	}
	return m
}

const attacker, neighbour = "192.0.2.7", "198.51.100.9"

// TestNginxConcurrentWrongPasswords: 200 wrong passwords sent at once
// from one network, while the backend takes 50 ms to answer each, reach
// the backend at most MaxFailures times; the others are refused as
// blocked without asking. Right passwords from another network sent at
// the same time all get in (as many at once as MaxFailures: a network's
// logins in flight are capped at its tries left, whatever the password).
func TestNginxConcurrentWrongPasswords(t *testing.T) {
	lim := limiter()
	b := newSlowBackend()
	n := &Nginx{Backend: b, Limiter: lim}
	var others []string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		others = parallel(bruteforce.DefaultMaxFailures, func(int) string { return ngxLogin(n, neighbour, "right").Status })
	}()
	got := tally(parallel(200, func(i int) string { return ngxLogin(n, attacker, fmt.Sprint("wrong", i)).Status }))
	wg.Wait()
	asked := b.count(attacker)
	if asked > bruteforce.DefaultMaxFailures {
		t.Errorf("backend asked %d times for one network, want at most MaxFailures = %d", asked, bruteforce.DefaultMaxFailures)
	}
	if got[StatusBlocked] != 200-asked || got[mailauth.Denied(ngxRequest("imap", "plain")).Status] != asked {
		t.Errorf("replies %v with %d asked", got, asked)
	}
	if o := tally(others); o[mailauth.StatusOK] != bruteforce.DefaultMaxFailures || b.count(neighbour) != bruteforce.DefaultMaxFailures {
		t.Errorf("another network's right passwords: %v, %d asked", o, b.count(neighbour))
	}
	if s := lim.Stats(); s.Failures != uint64(asked) || s.BlockedNow != 1 {
		t.Errorf("stats %+v", s)
	}
	if rep := ngxLogin(n, attacker, "right"); rep.Status != StatusBlocked {
		t.Errorf("after the burst: %+v", rep)
	}
}

// TestNginxConcurrentBackendFailures: logins the backend could not
// answer count nothing and hold nothing once answered. Those sent at once
// queue for the network's tries instead of being refused: each gets the
// backend's answer (a temporary failure), never more than MaxFailures at
// the backend at a time; afterwards MaxFailures logins at once all reach
// it.
func TestNginxConcurrentBackendFailures(t *testing.T) {
	lim := limiter()
	b := newSlowBackend()
	b.delay = 10 * time.Millisecond
	b.fail.Store(true)
	n := &Nginx{Backend: b, Limiter: lim}
	got := tally(parallel(40, func(i int) string { return ngxLogin(n, attacker, fmt.Sprint("wrong", i)).Status }))
	// A failure is no reply of the bridge's own (mailauth makes it the
	// temporary one): an empty status.
	if asked := b.count(attacker); asked != 40 || got[""] != 40 {
		t.Errorf("backend asked %d times, replies %v; want 40 failures, none refused", asked, got)
	}
	if m := b.mostAtOnce(); m > bruteforce.DefaultMaxFailures {
		t.Errorf("%d logins of one network at the backend at once, want at most %d", m, bruteforce.DefaultMaxFailures)
	}
	if s := lim.Stats(); s.Failures != 0 || s.BlockedNow != 0 || s.InFlight != 0 {
		t.Fatalf("backend failures counted or held: %+v", s)
	}
	b.fail.Store(false)
	before := b.count(attacker)
	got = tally(parallel(bruteforce.DefaultMaxFailures, func(int) string { return ngxLogin(n, attacker, "right").Status }))
	if got[mailauth.StatusOK] != bruteforce.DefaultMaxFailures || b.count(attacker)-before != bruteforce.DefaultMaxFailures {
		t.Fatalf("after the failures: %v", got)
	}
}

// TestNginxBurstOfRightPasswords: more right passwords at once from one
// network (a webmail host, a NAT) than it has tries all get in: they wait
// for the logins in flight instead of being refused.
func TestNginxBurstOfRightPasswords(t *testing.T) {
	lim := limiter()
	b := newSlowBackend()
	b.delay = 10 * time.Millisecond
	n := &Nginx{Backend: b, Limiter: lim}
	got := tally(parallel(50, func(int) string { return ngxLogin(n, attacker, "right").Status }))
	if got[mailauth.StatusOK] != 50 {
		t.Fatalf("50 right passwords at once: %v", got)
	}
	if m := b.mostAtOnce(); m > bruteforce.DefaultMaxFailures {
		t.Errorf("%d logins of one network at the backend at once, want at most %d", m, bruteforce.DefaultMaxFailures)
	}
}

// TestNginxConcurrentSuccessReleases: successful logins hold nothing once
// answered, and a success still resets the network's count.
func TestNginxConcurrentSuccessReleases(t *testing.T) {
	lim := limiter()
	b := newSlowBackend()
	b.delay = 5 * time.Millisecond
	n := &Nginx{Backend: b, Limiter: lim}
	for i := range bruteforce.DefaultMaxFailures - 1 {
		ngxLogin(n, attacker, fmt.Sprint("wrong", i))
	}
	parallel(50, func(int) string { return ngxLogin(n, attacker, "right").Status })
	// The count was reset and nothing is held: MaxFailures - 1 wrong
	// passwords at once all reach the backend and do not block.
	before := b.count(attacker)
	parallel(bruteforce.DefaultMaxFailures-1, func(i int) string { return ngxLogin(n, attacker, fmt.Sprint("again", i)).Status })
	if d := b.count(attacker) - before; d != bruteforce.DefaultMaxFailures-1 {
		t.Fatalf("%d of %d reached the backend", d, bruteforce.DefaultMaxFailures-1)
	}
	if rep := ngxLogin(n, attacker, "right"); rep.Status != mailauth.StatusOK {
		t.Fatalf("blocked after a success and %d failures: %+v", bruteforce.DefaultMaxFailures-1, rep)
	}
}

// TestSASLConcurrentWrongPasswords is TestNginxConcurrentWrongPasswords
// through the postfix SASL bridge.
func TestSASLConcurrentWrongPasswords(t *testing.T) {
	lim := limiter()
	b := newSlowBackend()
	s := &SASL{Backend: b, Verb: "sasl", Limiter: LoginGuard{lim}}
	login := func(ip, pass string) sasl.Result {
		req := saslReq("alice", "", pass)
		req.ClientIP = ip
		res, _, _ := s.Check(context.Background(), req)
		return res
	}
	var others []string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		others = parallel(bruteforce.DefaultMaxFailures, func(int) string { return fmt.Sprint(login(neighbour, "right").Verdict) })
	}()
	got := tally(parallel(200, func(i int) string { return login(attacker, fmt.Sprint("wrong", i)).Reason }))
	wg.Wait()
	asked := b.count(attacker)
	if asked > bruteforce.DefaultMaxFailures || got[ReasonBlocked] != 200-asked || got[ReasonWrongPassword] != asked {
		t.Errorf("backend asked %d times for one network (want at most %d); replies %v", asked, bruteforce.DefaultMaxFailures, got)
	}
	if o := tally(others); o[fmt.Sprint(sasl.Accept)] != bruteforce.DefaultMaxFailures {
		t.Errorf("another network's right passwords: %v", o)
	}
	if r := login(attacker, "right"); r.Reason != ReasonBlocked || !strings.Contains(r.Reason, "later") {
		t.Errorf("after the burst: %+v", r)
	}
}

// panicBackend panics on every lookup.
type panicBackend struct{}

func (panicBackend) LookupRaw(context.Context, string, json.RawMessage) (remote.Result, error) {
	panic("backend bug")
}

func (b panicBackend) Lookup(ctx context.Context, verb string, object any) (remote.Result, error) {
	return b.LookupRaw(ctx, verb, nil)
}

func (b panicBackend) LookupObject(ctx context.Context, verb string, o remote.Object) (remote.Result, error) {
	return b.LookupRaw(ctx, verb, nil)
}

// TestLimiterReleasedOnPanicAndCancel: a login whose handler panics or
// whose request is cancelled gives its try back and counts nothing.
func TestLimiterReleasedOnPanicAndCancel(t *testing.T) {
	lim := limiter()
	n := &Nginx{Backend: panicBackend{}, Limiter: lim}
	s := &SASL{Backend: panicBackend{}, Verb: "sasl", Limiter: LoginGuard{lim}}
	for i := range 2 * bruteforce.DefaultMaxFailures {
		func() {
			defer func() { _ = recover() }()
			if i%2 == 0 {
				ngxLogin(n, attacker, "right")
			} else {
				_, _, _ = s.Check(context.Background(), saslReq("alice", "", "right"))
			}
		}()
	}
	if st := lim.Stats(); st.InFlight != 0 || st.Failures != 0 || st.Refused != 0 {
		t.Fatalf("after panics: %+v", st)
	}
	b := newSlowBackend()
	b.delay = time.Minute
	n.Backend = b
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range bruteforce.DefaultMaxFailures {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := ngxRequest("imap", "plain")
			req.Pass = mailauth.Secret(fmt.Sprint("wrong", i))
			_, _ = n.ServeAuth(ctx, req)
		}()
	}
	for lim.Stats().InFlight < bruteforce.DefaultMaxFailures {
		time.Sleep(time.Millisecond)
	}
	if rep := ngxLogin(n, attacker, "right"); rep.Status != StatusBlocked {
		t.Fatalf("with MaxFailures logins in flight: %+v", rep)
	}
	cancel()
	wg.Wait()
	if st := lim.Stats(); st.InFlight != 0 || st.Failures != 0 {
		t.Fatalf("after cancelling: %+v", st)
	}
}
