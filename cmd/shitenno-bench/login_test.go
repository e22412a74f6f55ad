package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shitenno/shitenno/pkg/bridge"
	"github.com/shitenno/shitenno/pkg/bruteforce"
	"github.com/shitenno/shitenno/pkg/mailauth"
	"github.com/shitenno/shitenno/pkg/policy"
	"github.com/shitenno/shitenno/pkg/remote"
	"github.com/shitenno/shitenno/pkg/sasl"
)

func TestParseLoginRequest(t *testing.T) {
	for _, tc := range []struct {
		verb, body string
		idx        int
		ok         bool
	}{
		{"sasl", `{"Verb":"sasl","Object":` + string(directObject("sasl", 1)) + `}`, 1, true},
		{"sasl", `{"Verb":"sasl","Object":{"Mechanism":"PLAIN","User":"u1@bench.example","Password":"pw-2","Secured":true}}`, -1, true},
		{"sasl", `{"Verb":"sasl","Object":{"Mechanism":"LOGIN","User":"u1@bench.example","Password":"pw-1"}}`, -1, true},
		{"sasl", `{"Verb":"sasl","Object":{"Mechanism":"PLAIN","User":"u15@bench.example","Password":"pw-15"}}`, 15, true},   // unknown: known() decides
		{"sasl", `{"Verb":"sasl","Object":{ "Password" : "pw-3", "User":"u3@bench.example","Mechanism":"PLAIN"}}`, 3, true},  // slow path
		{"sasl", `{"Verb":"sasl","Object":{"Mechanism":"PLAIN","User":"u\u0033@bench.example","Password":"pw-3"}}`, 3, true}, // escaped
		{"sasl", `{"Verb":"sasl","Object":{"Mechanism":"PLAIN","User":"u1@bench.example"}}`, 0, false},
		{"sasl", `{"Verb":"sasl","Object":{"Mechanism":"PLAIN","User":"u1@bench.example","Password":1}}`, 0, false},
		{"sasl", `{"Verb":"sasl","Object":{"Mechanism":"PLAIN","User":true,"Password":"pw-1"}}`, 0, false},
		{"sasl", `{"Verb":"sasl","Object":"u1@bench.example"}`, 0, false},
		{"policy", `{"Verb":"policy","Object":` + string(directObject("policy", 7)) + `}`, 7, true},
		{"policy", `{"Verb":"policy","Object":{"recipient":"nobody@example.org"}}`, -1, true},
		{"policy", `{"Verb":"policy","Object":{"request":"smtpd_access_policy"}}`, 0, false},
		{"policy", `{"Verb":"policy","Object":{"recipient":"u7@bench.example","size":0}}`, 0, false},
		{"policy", `{"Verb":"policy","Object":{"recipient":"u7@bench.example",}}`, 0, false},
		{"nginx", `{"Verb":"nginx","Object":` + string(directObject("nginx", 9)) + `}`, 9, true},
		{"nginx", `{"Verb":"nginx","Object":{"Auth-Method":"plain","Auth-User":"u9@bench.example","Auth-Pass":"pw-8"}}`, -1, true},
		{"nginx", `{"Verb":"nginx","Object":{"Auth-Method":"cram-md5","Auth-User":"u9@bench.example","Auth-Pass":"pw-9"}}`, -1, true},
		{"nginx", `{"Verb":"nginx","Object":{"Auth-Method":"plain","Auth-User":"u9@bench.example","Auth-Pass":"pw-9","Secured":true}}`, 0, false},
		{"nginx", `{"Verb":"sasl","Object":` + string(directObject("nginx", 9)) + `}`, 0, false},
	} {
		i, obj, ok := parseBackendRequest(tc.verb, []byte(tc.body))
		if ok != tc.ok || (ok && i != tc.idx) {
			t.Errorf("%s: %d %v, want %d %v", tc.body, i, ok, tc.idx, tc.ok)
		}
		if ok && !strings.Contains(tc.body, string(obj)) {
			t.Errorf("%s: echoed object %s is not from the request", tc.body, obj)
		}
	}
}

// TestDirectObjectsAreShitennos: the direct scenario sends the backend
// the very bytes shitenno's bridges send for the same request, so that
// "through shitenno / direct" compares like with like.
func TestDirectObjectsAreShitennos(t *testing.T) {
	authTail, _ := saslWire()
	pw := policyWire()
	nreq, _ := nginxWire()
	for _, i := range []int{0, 15, 4095} {
		// What the SASL server hands the bridge for this AUTH line.
		got := make(chan *sasl.Request, 1)
		sock := serveSASL(t, sasl.HandlerFunc(func(_ context.Context, r *sasl.Request) sasl.Result {
			c := *r
			c.Password = append([]byte(nil), r.Password...)
			got <- &c
			return sasl.Result{Verdict: sasl.Reject}
		}))
		c, err := dialSASL("unix", sock, authTail, make([][]byte, numKeys))()
		if err != nil {
			t.Fatal(err)
		}
		_ = c.lookup(i, time.Now())
		c.close()
		if o := bridge.SASLObject(<-got); string(o) != string(directObject("sasl", i)) {
			t.Errorf("sasl %d: bridge sends %s, direct %s", i, o, directObject("sasl", i))
		}

		req, err := policy.ReadRequest(policy.NewReader(strings.NewReader(string(pw.req[i]))))
		if err != nil {
			t.Fatal(err)
		}
		if o := bridge.PolicyObject(req); string(o) != string(directObject("policy", i)) {
			t.Errorf("policy %d: bridge sends %s, direct %s", i, o, directObject("policy", i))
		}

		hr, err := http.ReadRequest(bufioReader(nreq[i]))
		if err != nil {
			t.Fatal(err)
		}
		mr, err := mailauth.ParseRequest(hr.Header)
		if err != nil {
			t.Fatal(err)
		}
		if o, _ := json.Marshal(mr.Object()); string(o) != string(directObject("nginx", i)) {
			t.Errorf("nginx %d: bridge sends %s, direct %s", i, o, directObject("nginx", i))
		}
		if a, err := netip.ParseAddr(mr.ClientIP); err != nil || a.IsLoopback() {
			t.Errorf("nginx Client-IP %q must be outside the limiter's default AllowNets", mr.ClientIP)
		}
	}
}

func serveSASL(t *testing.T, h sasl.Handler) string {
	t.Helper()
	srv := &sasl.Server{Handler: h}
	return serveOn(t, srv.Serve, func() { srv.Close() })
}

// serveOn runs serve on a new unix socket until the test ends, then
// calls stop and closes the listener (if stop has not).
func serveOn(t *testing.T, serve func(net.Listener) error, stop func()) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = serve(l) }()
	t.Cleanup(func() { stop(); l.Close() })
	return sock
}

// serveConns serves a new unix socket until the test ends, running
// handle on each connection in a goroutine of its own and closing the
// connection when handle returns.
func serveConns(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	return serveOn(t, func(l net.Listener) error {
		for {
			c, err := l.Accept()
			if err != nil {
				return err
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}, func() {})
}

// fastBackendClient serves the built-in backend until the test ends and
// returns its base URL and a shitenno remote client asking it.
func fastBackendClient(t *testing.T) (string, *remote.Client) {
	t.Helper()
	srv := httptest.NewServer(newFastBackend(0))
	t.Cleanup(srv.Close)
	rc, err := remote.New(remote.Options{URLs: []string{srv.URL + "/"}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return srv.URL + "/", rc
}

// loginServers serves the SMTP AUTH, policy and auth_http protocols with
// shitenno's own servers and bridges, asking backend; it returns the
// dial functions of the three load clients.
func loginServers(t *testing.T, backend bridge.Backend, nginxGuard bool) map[string]dialFunc {
	t.Helper()
	ss := &sasl.Server{Handler: &bridge.SASL{Backend: backend, Verb: saslVerb}}
	ps := &policy.Server{Handler: &bridge.Policy{Backend: backend, Verb: policyVerb}}
	nb := &bridge.Nginx{Backend: backend}
	if nginxGuard {
		nb.Limiter = bruteforce.New(bruteforce.DefaultLimits(), bruteforce.Options{})
	}
	hs := mailauth.NewServer(&mailauth.HTTPHandler{Handler: nb, Timeout: 5 * time.Second}, 5*time.Second, nil)
	authTail, okTail := saslWire()
	pw := policyWire()
	nreq, nwant := nginxWire()
	return map[string]dialFunc{
		"sasl":   dialSASL("unix", serveOn(t, ss.Serve, func() { ss.Close() }), authTail, okTail),
		"policy": dialPolicy("unix", serveOn(t, ps.Serve, func() { ps.Close() }), &pw),
		"nginx":  dialNginx("unix", serveOn(t, hs.Serve, func() { hs.Close() }), nreq, nwant),
	}
}

// TestLoginClientsThroughShitenno drives the three clients through
// shitenno's servers and bridges against the built-in backend, and the
// direct clients against the backend alone: every reply must check.
func TestLoginClientsThroughShitenno(t *testing.T) {
	base, rc := fastBackendClient(t)
	for proto, dial := range loginServers(t, rc, false) {
		t.Run(proto, func(t *testing.T) {
			// Enough operations to reach the unknown keys (every
			// notFoundMod-th): counted, not timed, so a slow machine
			// (-race, a loaded CI) only takes longer.
			var ops int64
			for end := time.Now().Add(30 * time.Second); ops < numKeys/notFoundMod && time.Now().Before(end); {
				res := runLoad(dial, 3, 0, 200*time.Millisecond)
				if res.Errors != 0 {
					t.Fatalf("%d errors (%s), %d ops", res.Errors, res.FirstErr, res.Ops)
				}
				ops += res.Ops
			}
			if ops < numKeys/notFoundMod {
				t.Fatalf("only %d ops in 30 s", ops)
			}
		})
		t.Run("direct "+proto, func(t *testing.T) { checkDirect(t, base, proto) })
	}
}

// lyingBackend accepts everything and answers every policy request DUNNO.
type lyingBackend struct{}

func (lyingBackend) Lookup(ctx context.Context, verb string, _ any) (remote.Result, error) {
	return lyingBackend{}.LookupRaw(ctx, verb, nil)
}

func (lyingBackend) LookupRaw(_ context.Context, verb string, _ json.RawMessage) (remote.Result, error) {
	switch verb {
	case policyVerb:
		return remote.Result{Status: remote.Found, Data: json.RawMessage(`"DUNNO"`)}, nil
	case nginxVerb:
		return remote.Result{Status: remote.Found, Data: json.RawMessage(`{"Auth-Server":"127.0.0.1","Auth-Port":10143}`)}, nil
	}
	return remote.Result{Status: remote.Found, Data: json.RawMessage(`{"User":"someone@bench.example"}`)}, nil
}

func (b lyingBackend) LookupObject(ctx context.Context, verb string, o remote.Object) (remote.Result, error) {
	return b.LookupRaw(ctx, verb, o.JSON())
}

// TestLoginClientsCountWrongAnswers: a server that lets everyone in, or
// answers for another key, is counted as errors, never as throughput.
func TestLoginClientsCountWrongAnswers(t *testing.T) {
	for proto, dial := range loginServers(t, lyingBackend{}, false) {
		t.Run(proto, func(t *testing.T) {
			res := runLoad(dial, 1, 0, time.Second)
			if res.Errors == 0 || !strings.Contains(res.FirstErr, "want") {
				t.Fatalf("wrong answers not counted: %d errors, %q", res.Errors, res.FirstErr)
			}
		})
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"Status":"OK","Data":{"User":"x","Auth-Server":"127.0.0.1","Auth-Port":1}}`))
	}))
	defer srv.Close()
	for _, proto := range []string{"sasl", "policy", "nginx"} {
		d, cleanup := dialHTTP(srv.URL+"/", proto)
		res := runLoad(d, 1, 0, time.Second)
		cleanup()
		if res.Errors == 0 {
			t.Errorf("direct %s: wrong backend answers not counted", proto)
		}
	}
	// A SASL server whose handshake lacks PLAIN is refused at connect.
	sock := serveOn(t, func(l net.Listener) error {
		for {
			c, err := l.Accept()
			if err != nil {
				return err
			}
			_, _ = c.Write([]byte("VERSION\t1\t2\nMECH\tLOGIN\tplaintext\nDONE\n"))
			defer c.Close()
		}
	}, func() {})
	authTail, okTail := saslWire()
	if _, err := dialSASL("unix", sock, authTail, okTail)(); err == nil {
		t.Error("a handshake without PLAIN was accepted")
	}
}

// TestNginxLimiterLetsTheMixThrough: with the limiter on at its defaults,
// the data set's wrong logins (one key in 16, each from its own address,
// always the same password) never block anyone, so the limiter-on
// scenario measures the limiter's bookkeeping, not refusals.
func TestNginxLimiterLetsTheMixThrough(t *testing.T) {
	_, rc := fastBackendClient(t)
	c, _ := loginServers(t, rc, true)["nginx"]()
	// Only the wrong logins, twice over (a success would reset a count),
	// then every right one.
	for round := range 2 {
		for i := notFoundMod - 1; i < numKeys; i += notFoundMod {
			if err := c.lookup(i, time.Now()); err != nil {
				t.Fatalf("round %d, key %d: %v", round, i, err)
			}
		}
	}
	for i := 0; i < numKeys; i += 7 {
		if err := c.lookup(i, time.Now()); err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
	}
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

// TestLimiterCost: the limiter's bookkeeping is measured at all, and
// costs something more when on than off.
func TestLimiterCost(t *testing.T) {
	on, off := limiterCost()
	if on <= 0 || off <= 0 || on <= off {
		t.Fatalf("limiter bookkeeping on %v, off %v per login", on, off)
	}
	t.Logf("limiter bookkeeping: on %v, off %v per login", on, off)
}

// TestRunLoadNInterleaves: two servers measured together get the same
// requests (within one per connection), and a failing one is charged
// its own errors, not the other's.
func TestRunLoadNInterleaves(t *testing.T) {
	pw := postfixWire()
	good := dialSocketmap("unix", startNull(t, "postfix"), &pw)
	res := runLoadN([]dialFunc{good, good}, 3, 0, 100*time.Millisecond)
	if d := res[0].Ops - res[1].Ops; res[0].Errors+res[1].Errors != 0 || res[0].Ops == 0 || d < -3 || d > 3 {
		t.Fatalf("ops %d and %d, errors %d and %d", res[0].Ops, res[1].Ops, res[0].Errors, res[1].Errors)
	}
	if res[0].Window != res[1].Window || res[0].MeanLatency() <= 0 {
		t.Fatalf("windows %v %v, mean latency %v", res[0].Window, res[1].Window, res[0].MeanLatency())
	}
	dw := dovecotWire()
	wrong := dialDict("unix", startNull(t, "postfix"), &dw) // dict requests to a socketmap server
	res = runLoadN([]dialFunc{good, wrong}, 2, 0, 100*time.Millisecond)
	if res[0].Errors != 0 || res[0].Ops == 0 || res[1].Errors == 0 || res[1].Ops != 0 {
		t.Fatalf("good: %d ops %d errors; wrong: %d ops %d errors", res[0].Ops, res[0].Errors, res[1].Ops, res[1].Errors)
	}
}

// TestLimiterReport: the on/off ratios come from each interleaved run's
// two halves, and the target fails when the limiter costs 10 %.
func TestLimiterReport(t *testing.T) {
	lat := func(d time.Duration) loadResult {
		return loadResult{Ops: 2, Total: 2, Window: time.Second, Lat: []time.Duration{d, d}}
	}
	mk := func(round int, on, off time.Duration, cpuOn, cpuOff float64) row {
		return row{Proto: "nginx", Scenario: scLimiter, Conns: targetConns, Round: round, Res: lat(on), ServerCPU: cpuOn,
			Pair: &pairRun{Res: lat(off), ServerCPU: cpuOff}}
	}
	o := runOptions{Protocols: []string{"nginx"}, Conns: []int{targetConns}}
	r := report{Opts: o, Rows: []row{mk(0, 110, 100, 110, 100), mk(1, 111, 100, 112, 100), mk(2, 100, 100, 100, 100)}}
	med, lo, hi, ok := r.limiterRatio("nginx", targetConns, limiterSpeed)
	if !ok || lo != 100.0/111 || med != 100.0/110 || hi != 1 {
		t.Fatalf("speed %v %v %v %v", med, lo, hi, ok)
	}
	if med, _, _, _ := r.limiterRatio("nginx", targetConns, limiterCPU); med != 1.1 {
		t.Fatalf("CPU ratio %v", med)
	}
	var b strings.Builder
	r.writeLoginTables(&b)
	if !strings.Contains(b.String(), "❌ 1.10× (1.00–1.12); throughput on / off 0.91× (0.90–1.00)") {
		t.Fatalf("a 10 %% cost passes:\n%s", b.String())
	}
	r.Rows = []row{mk(0, 101, 100, 101, 100)}
	b.Reset()
	r.writeLoginTables(&b)
	if !strings.Contains(b.String(), "✅ 1.01×; throughput on / off 0.99×") {
		t.Fatalf("a 1 %% cost fails:\n%s", b.String())
	}
}

// TestProcCPU: the per-thread schedstat sum follows what getrusage says
// this process spent, at a finer grain than clock ticks.
func TestProcCPU(t *testing.T) {
	pid := os.Getpid()
	if schedstatCPU(pid) < 0 {
		t.Skip("no /proc/pid/task/*/schedstat on this kernel")
	}
	s0, r0 := schedstatCPU(pid), selfCPU()
	x := 0
	// Burn 100 ms of CPU, however long the loaded machine takes for it.
	for selfCPU()-r0 < 100*time.Millisecond {
		for i := range 10000 {
			x += i * i
		}
	}
	ds, dr := schedstatCPU(pid)-s0, selfCPU()-r0
	if x == 42 || ds < 90*time.Millisecond || ds > dr+15*time.Millisecond || ds < dr-15*time.Millisecond {
		t.Fatalf("schedstat says %v, getrusage %v", ds, dr)
	}
}
