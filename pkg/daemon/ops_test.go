package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"

	"github.com/shitenno/shitenno/pkg/bridge"
	"github.com/shitenno/shitenno/pkg/config"
	"github.com/shitenno/shitenno/pkg/connserver"
	"github.com/shitenno/shitenno/pkg/socketmap"
)

// waitLog waits until the captured log matches re and returns the match.
func waitLog(t *testing.T, b *testutil.SyncBuffer, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := rx.FindStringSubmatch(b.String()); m != nil {
			return m
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("log never matched %q:\n%s", re, b.String())
	return nil
}

// notifySocket is a test NOTIFY_SOCKET receiver.
type notifySocket struct {
	msgs chan string
}

func listenNotify(t *testing.T, dir string) *notifySocket {
	t.Helper()
	path := filepath.Join(dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{msgs: make(chan string, 10000)}
	testutil.ReadPackets(t, c, 4096, n.msgs)
	t.Setenv("NOTIFY_SOCKET", path)
	return n
}

// expect waits for a datagram containing every state, skipping others
// (watchdog pings, say); it returns the datagram.
func (n *notifySocket) expect(t *testing.T, states ...string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-n.msgs:
			ok := true
			for _, s := range states {
				if !strings.Contains("\n"+m+"\n", "\n"+s+"\n") {
					ok = false
				}
			}
			if ok {
				return m
			}
		case <-timeout:
			t.Fatalf("no sd_notify message with %q", states)
			return ""
		}
	}
}

// fakeBackend answers the contract for verb "virtual": keys starting
// with "found" are OK with Data = prefix+key, "missing…" are KO, anything
// else is a 500.
func fakeBackend(t *testing.T, prefix string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Verb   string
			Object json.RawMessage
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad", 400)
			return
		}
		if len(req.Object) > 0 && req.Object[0] == '{' {
			// Objects (not strings) are echoed as found, password and all.
			fmt.Fprintf(w, `{"Status":"OK","Data":%s}`, req.Object)
			return
		}
		var key string
		_ = json.Unmarshal(req.Object, &key)
		switch {
		case strings.HasPrefix(key, "found"):
			d, _ := json.Marshal(prefix + key)
			fmt.Fprintf(w, `{"Status":"OK","Data":%s}`, d)
		case strings.HasPrefix(key, "missing"):
			fmt.Fprint(w, `{"Status":"KO"}`)
		default:
			http.Error(w, "boom", 500)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func shortDir(t *testing.T) string {
	t.Helper()
	return testutil.ShortTempDir(t, "shd")
}

func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func postfixConfig(backendURL, sock, extra string) string {
	return fmt.Sprintf("RemoteURL = %q\nTimeout = \"2s\"\n%s\n[Postfix]\nSocket = %q\nMode = \"0600\"\n", backendURL+"/api/", extra, sock)
}

// postfixProgram is cmd/shitenno-postfix's wiring, for tests.
func postfixProgram() Program {
	return Program{
		Name: "postfix",
		Build: func(env *Env) (Server, error) {
			return &socketmap.Server{
				Handler: &bridge.Postfix{Backend: env.Backend, Record: env.Record},
				Server:  connserver.Server{Logger: env.Logger, ConnState: env.ConnState},
			}, nil
		},
	}
}

// running is a daemon started by startProgram.
type running struct {
	sigc   chan os.Signal
	code   chan int
	stderr *testutil.SyncBuffer
}

func startProgram(t *testing.T, p Program, cfgPath string) *running {
	t.Helper()
	t.Setenv("JOURNAL_STREAM", "")
	r := &running{sigc: make(chan os.Signal, 1), code: make(chan int, 1), stderr: &testutil.SyncBuffer{}}
	go func() { r.code <- p.run([]string{"--config", cfgPath}, io.Discard, r.stderr, r.sigc) }()
	t.Cleanup(func() {
		select {
		case r.sigc <- syscall.SIGTERM:
		default:
		}
		select {
		case <-r.code:
		case <-time.After(15 * time.Second):
			t.Error("daemon did not stop")
		}
	})
	return r
}

func (r *running) stop(t *testing.T) int {
	t.Helper()
	r.sigc <- syscall.SIGTERM
	select {
	case c := <-r.code:
		r.code <- c // let Cleanup find it
		return c
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop")
		return -1
	}
}

// socketmapClient keeps one connection, like postfix's proxymap.
type socketmapClient struct {
	c  net.Conn
	br *bufio.Reader
}

func dialSocketmap(t *testing.T, path string) *socketmapClient {
	t.Helper()
	c := testutil.RetryValue(t, 200, 20*time.Millisecond, func() (net.Conn, error) { return net.Dial("unix", path) })
	t.Cleanup(func() { c.Close() })
	return &socketmapClient{c: c, br: bufio.NewReader(c)}
}

func (s *socketmapClient) query(t *testing.T, name, key string) string {
	t.Helper()
	p := name + " " + key
	_ = s.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(s.c, "%d:%s,", len(p), p); err != nil {
		t.Fatal(err)
	}
	b, err := socketmap.ReadNetstring(s.br, nil, 100000)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestNotifyAndReload runs the postfix daemon with a test NOTIFY_SOCKET,
// reloads it with a bad and a good configuration, and checks that the
// socket and an open connection survive both.
func TestNotifyAndReload(t *testing.T) {
	dir := shortDir(t)
	n := listenNotify(t, dir)
	a, b := fakeBackend(t, "a:"), fakeBackend(t, "b:")
	sock := filepath.Join(dir, "pf.sock")
	cfgPath := filepath.Join(dir, "shitenno.conf")
	writeConfig(t, cfgPath, postfixConfig(a.URL, sock, "")+"HealthListen = \"127.0.0.1:0\"\n")

	r := startProgram(t, postfixProgram(), cfgPath)
	n.expect(t, "READY=1")
	addr := waitLog(t, r.stderr, `health endpoint listening" addr=(http://[0-9.:]+)`)[1]
	fi1, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	c := dialSocketmap(t, sock)
	if got := c.query(t, "virtual", "found1"); got != "OK a:found1" {
		t.Fatalf("first lookup %q", got)
	}

	// A bad configuration is logged and changes nothing.
	writeConfig(t, cfgPath, "RemoteURL = [\n")
	r.sigc <- syscall.SIGHUP
	m := n.expect(t, "RELOADING=1")
	if !regexp.MustCompile(`\nMONOTONIC_USEC=\d+`).MatchString(m) {
		t.Errorf("RELOADING without MONOTONIC_USEC: %q", m)
	}
	n.expect(t, "READY=1")
	waitLog(t, r.stderr, `level=ERROR msg="reload failed; keeping the previous configuration".*shitenno.conf:\d`)
	if got := c.query(t, "virtual", "found2"); got != "OK a:found2" {
		t.Fatalf("after a bad reload: %q", got)
	}
	if _, body := httpGet(t, addr+"/metrics"); !strings.Contains(body, `shitenno_config_reloads_total{result="error"} 1`) ||
		!strings.Contains(body, "shitenno_config_last_reload_successful 0") {
		t.Errorf("failed reload not in metrics:\n%s", testutil.GrepLines(body, "reload"))
	}

	// A good one switches backend and log level on the same socket and
	// the same connection.
	writeConfig(t, cfgPath, postfixConfig(b.URL, sock, `LogLevel = "debug"`)+"HealthListen = \"127.0.0.1:0\"\n")
	r.sigc <- syscall.SIGHUP
	n.expect(t, "RELOADING=1")
	n.expect(t, "READY=1")
	waitLog(t, r.stderr, `msg="configuration reloaded"`)
	if got := c.query(t, "virtual", "found3"); got != "OK b:found3" {
		t.Fatalf("after a good reload, same connection: %q", got)
	}
	waitLog(t, r.stderr, `level=DEBUG msg=lookup msgid=lookup verb=virtual outcome=found`)
	fi2, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(fi1, fi2) {
		t.Error("the socket file was re-created by the reload")
	}
	if got := dialSocketmap(t, sock).query(t, "virtual", "missing"); got != "NOTFOUND " {
		t.Errorf("new connection after reload: %q", got)
	}

	if code := r.stop(t); code != 0 {
		t.Errorf("exit status %d", code)
	}
	n.expect(t, "STOPPING=1")
}

func TestHealthAndMetrics(t *testing.T) {
	dir := shortDir(t)
	a := fakeBackend(t, "a:")
	sock := filepath.Join(dir, "pf.sock")
	cfgPath := filepath.Join(dir, "shitenno.conf")
	writeConfig(t, cfgPath, postfixConfig(a.URL, sock, "")+"HealthListen = \"127.0.0.1:0\"\n")
	r := startProgram(t, postfixProgram(), cfgPath)
	addr := waitLog(t, r.stderr, `health endpoint listening" addr=(http://[0-9.:]+)`)[1]
	c := dialSocketmap(t, sock)
	c.query(t, "virtual", "found1")
	c.query(t, "virtual", "missing1")
	c.query(t, "virtual", "boom")
	if code, body := httpGet(t, addr+"/healthz"); code != 200 {
		t.Errorf("/healthz %d %q", code, body)
	}
	if code, body := httpGet(t, addr+"/readyz"); code != 200 {
		t.Errorf("/readyz %d %q", code, body)
	}
	_, body := httpGet(t, addr+"/metrics")
	for _, want := range []string{
		`shitenno_lookups_total{listener="socketmap",outcome="found",verb="virtual"} 1`,
		`shitenno_lookups_total{listener="socketmap",outcome="not_found",verb="virtual"} 1`,
		`shitenno_lookups_total{listener="socketmap",outcome="failed",verb="virtual"} 1`,
		`shitenno_lookup_duration_seconds_count{listener="socketmap"} 3`,
		`shitenno_client_connections 1`,
		`shitenno_backend_request_duration_seconds_count{result="ok"} 2`,
		`shitenno_backend_request_duration_seconds_count{result="error"} 1`,
		`shitenno_build_info{daemon="postfix",version="dev"} 1`,
		`shitenno_log_records_dropped_total 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// One warning per failure, with the cause.
	waitLog(t, r.stderr, `level=WARN msg="lookup failed" msgid=lookup verb=virtual err="backend HTTP status 500" kind=http`)
}

// blockingServer is a minimal Server whose serve loop can be wedged: after
// accepting a connection it waits on hold when wedge is set.
type blockingServer struct {
	wedge atomic.Bool
	hold  chan struct{}
	mu    sync.Mutex
	ls    []net.Listener
}

func (s *blockingServer) Serve(l net.Listener) error {
	s.mu.Lock()
	s.ls = append(s.ls, l)
	s.mu.Unlock()
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		c.Close()
		if s.wedge.Load() {
			<-s.hold
		}
	}
}

func (s *blockingServer) Shutdown(context.Context) error { return s.Close() }

func (s *blockingServer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.ls {
		l.Close()
	}
	return nil
}

// TestWatchdogStopsWhenServeLoopWedged checks that WATCHDOG=1 pings flow
// while the serve loop is idle in Accept, stop while it is stuck, and
// resume when it recovers.
func TestWatchdogStopsWhenServeLoopWedged(t *testing.T) {
	dir := shortDir(t)
	n := listenNotify(t, dir)
	const wd = 400 * time.Millisecond
	t.Setenv("WATCHDOG_USEC", strconv.Itoa(int(wd/time.Microsecond)))
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	a := fakeBackend(t, "a:")
	sock := filepath.Join(dir, "pf.sock")
	cfgPath := filepath.Join(dir, "shitenno.conf")
	writeConfig(t, cfgPath, postfixConfig(a.URL, sock, "")+"HealthListen = \"127.0.0.1:0\"\n")
	srv := &blockingServer{hold: make(chan struct{})}
	p := Program{Name: "postfix", Build: func(*Env) (Server, error) { return srv, nil }}
	r := startProgram(t, p, cfgPath)
	// Runs before startProgram's cleanup: a failing test must not leave
	// the loop stuck, or the daemon cannot stop.
	var release sync.Once
	unwedge := func() { srv.wedge.Store(false); release.Do(func() { close(srv.hold) }) }
	t.Cleanup(unwedge)
	n.expect(t, "READY=1")
	addr := waitLog(t, r.stderr, `health endpoint listening" addr=(http://[0-9.:]+)`)[1]

	// Idle: pings keep coming (several watchdog periods' worth).
	for range 6 {
		n.expect(t, "WATCHDOG=1")
	}

	srv.wedge.Store(true)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitLog(t, r.stderr, `msg="serve loop wedged; withholding watchdog pings"`)
	// Let pings sent before the loop was found stuck drain, then listen
	// for three watchdog periods: none may come.
	drain(n, wd/2)
	pings := countPings(n, 3*wd)
	if pings != 0 {
		t.Errorf("%d watchdog pings while the serve loop was wedged", pings)
	}
	if code, body := httpGet(t, addr+"/healthz"); code != 503 || !strings.Contains(body, "not seen") {
		t.Errorf("/healthz while wedged: %d %q", code, body)
	}

	unwedge()
	n.expect(t, "WATCHDOG=1")
	if code, body := httpGet(t, addr+"/healthz"); code != 200 {
		t.Errorf("/healthz after recovery: %d %q", code, body)
	}
	if code := r.stop(t); code != 0 {
		t.Errorf("exit status %d", code)
	}
}

func drain(n *notifySocket, d time.Duration) {
	deadline := time.After(d)
	for {
		select {
		case <-n.msgs:
		case <-deadline:
			return
		}
	}
}

func countPings(n *notifySocket, d time.Duration) int {
	deadline := time.After(d)
	k := 0
	for {
		select {
		case m := <-n.msgs:
			if strings.Contains(m, "WATCHDOG=1") {
				k++
			}
		case <-deadline:
			return k
		}
	}
}

func TestNoWatchdogWithoutSystemd(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "")
	if d := watchdogInterval(nil); d != 0 {
		t.Errorf("watchdog interval %v without WATCHDOG_USEC", d)
	}
	t.Setenv("WATCHDOG_USEC", "1000000")
	t.Setenv("WATCHDOG_PID", "1")
	if d := watchdogInterval(nil); d != 0 {
		t.Errorf("watchdog meant for pid 1 accepted: %v", d)
	}
}

func TestQueryExitCodesAndRedaction(t *testing.T) {
	dir := shortDir(t)
	a := fakeBackend(t, "a:")
	cfgPath := filepath.Join(dir, "shitenno.conf")
	writeConfig(t, cfgPath, postfixConfig(a.URL, filepath.Join(dir, "unused.sock"), ""))
	p := postfixProgram()
	p.QueryUsage = "TABLE KEY"
	p.Query = func(ctx context.Context, env *Env, args []string) int {
		if args[0] == "login" {
			res, err := env.Backend.Lookup(ctx, "nginx", map[string]string{"Auth-User": "alice", "Auth-Pass": "s3cret-pw"})
			if err != nil {
				return ExitTempFail
			}
			fmt.Fprintf(env.Stdout, "%s\n", res.Status)
			return ExitOK
		}
		h := &bridge.Postfix{Backend: env.Backend, Record: env.Record}
		rep := h.ServeSocketmap(ctx, socketmap.Request{Name: []byte(args[0]), Key: []byte(args[1])})
		fmt.Fprintf(env.Stdout, "%s\n", socketmap.AppendReply(nil, rep))
		switch rep.Kind {
		case socketmap.OK:
			return ExitOK
		case socketmap.NotFound:
			return ExitNotFound
		}
		return ExitTempFail
	}
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		trace  []string
	}{
		{[]string{"virtual", "found-x"}, 0, "12:OK a:found-x,\n", []string{`> POST ` + a.URL + `/api/virtual`, `> {"Object":"found-x","Verb":"virtual"}`, `< HTTP/1.1 200 OK`, `< {"Data":"a:found-x","Status":"OK"}`}},
		{[]string{"virtual", "missing-x"}, 1, "9:NOTFOUND ,\n", []string{`< {"Status":"KO"}`}},
		{[]string{"virtual", "other"}, 75, "28:TEMP backend HTTP status 500,\n", []string{`< HTTP/1.1 500 Internal Server Error`, `(5 bytes, not JSON)`}},
		{[]string{"login", "x"}, 0, "found\n", []string{`"Auth-Pass":"[redacted]"`, `"Auth-User":"alice"`}},
	} {
		t.Run(strings.Join(tc.args, "_"), func(t *testing.T) {
			var out, errb testutil.SyncBuffer
			code := p.Run(append([]string{"--config", cfgPath, "query"}, tc.args...), &out, &errb)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, errb.String())
			}
			if out.String() != tc.stdout {
				t.Errorf("stdout %q, want %q", out.String(), tc.stdout)
			}
			for _, w := range tc.trace {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errb.String())
				}
			}
			if strings.Contains(errb.String()+out.String(), "s3cret-pw") {
				t.Errorf("password printed:\n%s", errb.String())
			}
		})
	}
	// Backend down: temporary failure, 75.
	a.Close()
	var out, errb testutil.SyncBuffer
	if code := p.Run([]string{"--config", cfgPath, "query", "virtual", "found"}, &out, &errb); code != ExitTempFail {
		t.Errorf("backend down: exit %d, want 75", code)
	}
	if !strings.Contains(errb.String(), "< error after") {
		t.Errorf("transport error not shown:\n%s", errb.String())
	}
}

func TestRedactJSON(t *testing.T) {
	for in, want := range map[string]string{
		`{"password":"x","user":"u","nested":{"userPassword":"{SHA}abc","n":12345678901234567890}}`: `{"nested":{"n":12345678901234567890,"userPassword":"[redacted]"},"password":"[redacted]","user":"u"}`,
		`{"nopassword":true,"list":[{"Auth-Pass":"p"}]}`:                                            `{"list":[{"Auth-Pass":"[redacted]"}],"nopassword":true}`,
		`not json password=1`: `(19 bytes, not JSON)`,
		`{"a":1} {"b":2}`:     `(15 bytes, not JSON)`,
		``:                    `(empty body)`,
	} {
		if got := redactJSON([]byte(in)); got != want {
			t.Errorf("redactJSON(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestProbeListenerClose(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := newProbeListener(l, time.Now)
	done := make(chan error, 1)
	go func() {
		for {
			c, err := p.Accept()
			if err != nil {
				done <- err
				return
			}
			c.Close()
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	p.probe()
	p.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}

// TestStalledLogReceiverDoesNotSlowLookups logs every lookup (debug) to a
// unix datagram receiver that never reads: all lookups must still be
// answered, and the lost records show up in the drop counter.
func TestStalledLogReceiverDoesNotSlowLookups(t *testing.T) {
	dir := shortDir(t)
	logSock := filepath.Join(dir, "log")
	lc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: logSock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close() // never read
	a := fakeBackend(t, "a:")
	sock := filepath.Join(dir, "pf.sock")
	cfgPath := filepath.Join(dir, "shitenno.conf")
	extra := fmt.Sprintf("DevLog = %q\nLogLevel = \"debug\"", logSock)
	// The health address cannot be read from the (stalled) log: pick it.
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	healthAddr := hl.Addr().String()
	hl.Close()
	writeConfig(t, cfgPath, postfixConfig(a.URL, sock, extra)+fmt.Sprintf("HealthListen = %q\n", healthAddr))
	n := listenNotify(t, dir)
	r := startProgram(t, postfixProgram(), cfgPath)
	n.expect(t, "READY=1")
	c := dialSocketmap(t, sock)
	const lookups = 3000
	for i := range lookups {
		if got := c.query(t, "virtual", "missing"+strconv.Itoa(i)); got != "NOTFOUND " {
			t.Fatalf("lookup %d: %q", i, got)
		}
	}
	_, body := httpGet(t, "http://"+healthAddr+"/metrics")
	if !strings.Contains(body, fmt.Sprintf(`shitenno_lookups_total{listener="socketmap",outcome="not_found",verb="virtual"} %d`, lookups)) {
		t.Errorf("lookups not all counted:\n%s", testutil.GrepLines(body, "lookups_total"))
	}
	m := regexp.MustCompile(`(?m)^shitenno_log_records_dropped_total (\d+)$`).FindStringSubmatch(body)
	if m == nil || m[1] == "0" {
		t.Errorf("no dropped log records counted: %q", m)
	}
	if code := r.stop(t); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestExtraEndpoints: a program with a second listener serves both from
// one process; a handler panic on the second closes only that client's
// connection, and the main listener keeps answering. --check-config
// names both.
func TestExtraEndpoints(t *testing.T) {
	dir := shortDir(t)
	a := fakeBackend(t, "a:")
	sock, extra := filepath.Join(dir, "pf.sock"), filepath.Join(dir, "extra.sock")
	cfgPath := filepath.Join(dir, "shitenno.conf")
	writeConfig(t, cfgPath, postfixConfig(a.URL, sock, ""))
	p := postfixProgram()
	p.Extra = func(*config.Config) []Endpoint {
		return []Endpoint{{Name: "extra", Socket: extra, Build: func(env *Env) (Server, error) {
			return &socketmap.Server{Handler: socketmap.HandlerFunc(func(_ context.Context, req socketmap.Request) socketmap.Reply {
				if string(req.Key) == "boom" {
					panic("handler bug")
				}
				return socketmap.Reply{Kind: socketmap.OK, Text: "extra:" + string(req.Key)}
			}), Server: connserver.Server{Logger: env.Logger}}, nil
		}}}
	}
	var out bytes.Buffer
	if code := p.run([]string{"--config", cfgPath, "--check-config"}, &out, io.Discard, nil); code != 0 ||
		!strings.Contains(out.String(), "listen: unix:"+sock+" (socketmap,") || !strings.Contains(out.String(), "listen: unix:"+extra+" (extra,") {
		t.Fatalf("check-config exit %d: %s", code, out.String())
	}
	r := startProgram(t, p, cfgPath)
	m, e := dialSocketmap(t, sock), dialSocketmap(t, extra)
	if got := e.query(t, "x", "k"); got != "OK extra:k" {
		t.Fatalf("extra listener: %q", got)
	}
	if got := m.query(t, "virtual", "found1"); got != "OK a:found1" {
		t.Fatalf("main listener: %q", got)
	}
	p2 := "x boom"
	_ = e.c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(e.c, "%d:%s,", len(p2), p2)
	if _, err := e.br.ReadByte(); err == nil {
		t.Fatal("connection survived a handler panic")
	}
	waitLog(t, r.stderr, `connection handler panicked`)
	if got := m.query(t, "virtual", "found2"); got != "OK a:found2" {
		t.Fatalf("main listener after a panic on the other: %q", got)
	}
	if got := dialSocketmap(t, extra).query(t, "x", "k2"); got != "OK extra:k2" {
		t.Fatalf("extra listener after a panic: %q", got)
	}
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, s := range []string{sock, extra} {
		if _, err := os.Lstat(s); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", s, err)
		}
	}
}
