// Package e2e runs shitenno's daemons against the real postfix, dovecot
// and nginx on loopback. Each test builds what it needs, starts private
// peer instances in its own temporary directory and stops them by PID.
//
// A missing peer (or root, or the Debian 13 root) fails the test: `make
// test` installs the peers first (scripts/install-peers.sh), and a run that
// skipped them has not tested shitenno against them. SHITENNO_ALLOW_SKIP=1
// turns those failures into skips, for a machine that cannot have them;
// make test's summary (internal/testsummary) still counts them.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/loopport"
	"github.com/shitenno/shitenno/internal/testutil"
)

var (
	binOnce sync.Map // binary name -> *binResult
	binDir  string
)

type binResult struct {
	once sync.Once
	path string
	err  error
}

// TestMain runs nothing under -short: `go test -short ./...` is the quick
// loop (make check), and these tests need root, the real peers and
// minutes. make test runs them, never with -short.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: not run under -short (make test runs them)")
		os.Exit(0)
	}
	d, err := os.MkdirTemp("", "shitenno-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// repoRoot is the module root (the parent of this package's directory).
func repoRoot(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the repository")
	}
	return filepath.Dir(filepath.Dir(file))
}

// binary builds ./cmd/<name> once per test run and returns its path.
func binary(t testing.TB, name string) string {
	t.Helper()
	v, _ := binOnce.LoadOrStore(name, &binResult{})
	r := v.(*binResult)
	r.once.Do(func() {
		r.path = filepath.Join(binDir, name)
		cmd := exec.Command("go", "build", "-o", r.path, "./cmd/"+name)
		cmd.Dir = repoRoot(t)
		out, err := cmd.CombinedOutput()
		if err != nil {
			r.err = fmt.Errorf("go build %s: %v\n%s", name, err, out)
		}
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.path
}

// inCI reports whether a missing peer must fail the test: always, unless
// SHITENNO_ALLOW_SKIP=1. (The name is historical: CI and a developer's
// `make test` follow the same rule.)
func inCI() bool { return !allowSkip() }

// allowSkip reports whether SHITENNO_ALLOW_SKIP=1 lets a test skip for a
// missing peer.
func allowSkip() bool { return os.Getenv("SHITENNO_ALLOW_SKIP") == "1" }

// needRoot fails (in CI, which runs the e2e suite as root) or skips a
// test when not root; what names what needs it.
func needRoot(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if inCI() {
			t.Fatal(what + " needs root")
		}
		t.Skip(what + " needs root")
	}
}

// requireTool returns the path of a peer program, failing (see inCI) and
// skipping only with SHITENNO_ALLOW_SKIP=1, when it is missing.
func requireTool(t testing.TB, name string, dirs ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range append(dirs, "/usr/sbin", "/usr/lib/postfix/sbin", "/sbin") {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if inCI() {
		t.Fatalf("%s is not installed: run scripts/install-peers.sh as root (SHITENNO_ALLOW_SKIP=1 skips instead)", name)
	}
	t.Skipf("%s is not installed", name)
	return ""
}

// testDir makes a private directory every peer user can traverse:
// postfix, dovecot and nginx workers run as other users (TESTING.md).
func testDir(t testing.TB) string {
	t.Helper()
	return peerDir(t, "")
}

// peerDir is testDir under parent ("": the system's temporary directory).
func peerDir(t testing.TB, parent string) string {
	t.Helper()
	d, err := os.MkdirTemp(parent, "shitenno-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// freePort returns a loopback TCP port that was free a moment ago and
// not handed out before (loopport.Pick).
func freePort(t testing.TB) int {
	t.Helper()
	port, err := loopport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// loopbackAddr is "127.0.0.1:PORT" with a port that was free a moment ago.
func loopbackAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", freePort(t))
}

// cleanEnv is the environment for children: no proxy variables, so that
// loopback requests stay direct.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// Proc is a child process stopped at cleanup.
type Proc struct {
	Cmd    *exec.Cmd
	Output *testutil.SyncBuffer
	done   chan struct{} // closed once the process has exited
	gone   atomic.Bool   // set just before done is closed, for Exited
	err    error
}

// start runs a command in the background; it is stopped with SIGTERM (then
// SIGKILL) at cleanup, and its output is logged when the test failed.
func start(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return startCmd(t, cmd, name)
}

// startCmd is start for a prepared command (its SysProcAttr must set
// Setpgid); what names it in a failure.
func startCmd(t testing.TB, cmd *exec.Cmd, what string) *Proc {
	t.Helper()
	p := &Proc{Cmd: cmd, Output: &testutil.SyncBuffer{}, done: make(chan struct{})}
	p.Cmd.Env = cleanEnv()
	p.Cmd.Stdout = p.Output
	p.Cmd.Stderr = p.Output
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", what, err)
	}
	go func() { p.err = p.Cmd.Wait(); p.gone.Store(true); close(p.done) }()
	t.Cleanup(func() {
		p.Stop(syscall.SIGTERM, 10*time.Second)
		if t.Failed() {
			t.Logf("output of %s:\n%s", filepath.Base(cmd.Args[0]), p.Output.String())
		}
	})
	return p
}

// logOnFailure logs the file at path under the heading what at cleanup,
// when the test has failed: its last max bytes (0: all of it).
func logOnFailure(t testing.TB, what, path string, max int) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		b, _ := os.ReadFile(path)
		s := string(b)
		if max > 0 {
			s = trixieTail(s, max)
		}
		t.Logf("%s:\n%s", what, s)
	})
}

// Stop signals the process and waits up to d, then kills its group.
func (p *Proc) Stop(sig syscall.Signal, d time.Duration) error {
	if p.Exited() {
		return p.err
	}
	_ = p.Cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(d):
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	return p.err
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool { return p.gone.Load() }

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitDial waits until something accepts connections at network/addr.
func waitDial(t testing.TB, network, addr string) {
	t.Helper()
	waitFor(t, 10*time.Second, network+" "+addr, func() bool {
		return dialable(network, addr)
	})
}

// dialable reports whether something accepts connections at network/addr
// now.
func dialable(network, addr string) bool {
	c, err := net.DialTimeout(network, addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// exampleBackend starts cmd/shitenno-example-backend on a free port with
// conf/example-backend.toml and returns its base URL.
func exampleBackend(t testing.TB, args ...string) string {
	t.Helper()
	addr := loopbackAddr(t)
	args = append([]string{"--listen", addr, "--data", filepath.Join(repoRoot(t), "conf/example-backend.toml")}, args...)
	start(t, binary(t, "shitenno-example-backend"), args...)
	waitDial(t, "tcp", addr)
	return "http://" + addr + "/"
}

// BackendRequest is one request a FakeBackend received.
type BackendRequest struct {
	Path   string
	Verb   string
	Object json.RawMessage
	Body   []byte
}

// FakeBackend is an httptest backend speaking the contract's raw JSON
// (deliberately not pkg/remote's types). Answer decides each reply.
type FakeBackend struct {
	*httptest.Server
	mu       sync.Mutex
	requests []BackendRequest
	// Answer returns the HTTP status and body for a request; set before use.
	Answer func(r BackendRequest) (int, string)
	// Hang, when closed channel is nil, makes the backend never answer
	// until the test ends.
	hang chan struct{}
	// ended is set at cleanup, after which Up does nothing.
	ended bool
}

// newFakeBackend starts a backend whose replies come from answer.
func newFakeBackend(t testing.TB, answer func(r BackendRequest) (int, string)) *FakeBackend {
	f := &FakeBackend{Answer: answer, hang: make(chan struct{})}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		f.mu.Lock()
		f.ended = true
		f.mu.Unlock()
		close(f.hang)
		f.Server.CloseClientConnections()
		f.Server.Close()
	})
	return f
}

// Down makes the backend unreachable the way a stopped backend process
// is: its listener closes, so connections are refused, and open ones
// are cut.
func (f *FakeBackend) Down() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Server.Listener.Close()
	f.Server.CloseClientConnections()
}

// Up listens again on the address Down released, so the daemons'
// RemoteURL reaches the same backend again.
func (f *FakeBackend) Up() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ended {
		return nil
	}
	l, err := net.Listen("tcp", f.Server.Listener.Addr().String())
	if err != nil {
		return err
	}
	// Server.Close closes Listener: the new one, from now on.
	f.Server.Listener = l
	go f.Server.Config.Serve(l)
	return nil
}

// URL is the base URL to use as RemoteURL.
func (f *FakeBackend) BaseURL() string { return f.Server.URL + "/" }

func (f *FakeBackend) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var env struct {
		Verb   string
		Object json.RawMessage
	}
	_ = json.Unmarshal(body, &env)
	req := BackendRequest{Path: r.URL.Path, Verb: env.Verb, Object: env.Object, Body: body}
	f.mu.Lock()
	f.requests = append(f.requests, req)
	answer := f.Answer
	f.mu.Unlock()
	status, reply := answer(req)
	if status == 0 { // hang
		select {
		case <-f.hang:
		case <-r.Context().Done():
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, reply)
}

// Requests returns what the backend received so far.
func (f *FakeBackend) Requests() []BackendRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]BackendRequest(nil), f.requests...)
}

// SetAnswer replaces the reply function.
func (f *FakeBackend) SetAnswer(a func(r BackendRequest) (int, string)) {
	f.mu.Lock()
	f.Answer = a
	f.mu.Unlock()
}

// virtualBackend is a backend for virtual lookups: answer gets each
// request with verb virtual and its key (the Object, a string); any other
// request is a 400.
func virtualBackend(t testing.TB, answer func(r BackendRequest, key string) (int, string)) *FakeBackend {
	return newFakeBackend(t, func(r BackendRequest) (int, string) {
		var key string
		if err := json.Unmarshal(r.Object, &key); err != nil || r.Verb != "virtual" {
			return 400, "bad request"
		}
		return answer(r, key)
	})
}

// okReply builds a contract reply.
func okReply(r BackendRequest, status string, data any) string {
	b, _ := json.Marshal(map[string]any{"Verb": r.Verb, "Object": r.Object, "Status": status, "Data": data})
	return string(b)
}

// Failure modes every daemon must turn into its temporary failure.
var backendFaults = map[string]func(BackendRequest) (int, string){
	"http500": func(BackendRequest) (int, string) { return 500, `{"error":"boom"}` },
	"hang":    func(BackendRequest) (int, string) { return 0, "" },
	"garbage": func(BackendRequest) (int, string) { return 200, "<html>not json" },
	"maybe":   func(r BackendRequest) (int, string) { return 200, okReply(r, "MAYBE", "x") },
}

// Daemon is a running shitenno daemon.
type Daemon struct {
	*Proc
	Socket string
	Config string
}

// daemonConfig writes a configuration for one daemon in dir and returns
// its path. extra is appended to the daemon's section.
func daemonConfig(t testing.TB, dir, proto, remoteURL, top, section string) string {
	t.Helper()
	sec := strings.ToUpper(proto[:1]) + proto[1:]
	conf := fmt.Sprintf("RemoteURL = %q\nSocketPrefix = %q\nTimeout = \"2s\"\n%s\n[%s]\nMode = \"0666\"\n%s\n",
		remoteURL, filepath.Join(dir, "shitenno"), top, sec, section)
	path := filepath.Join(dir, "shitenno-"+proto+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startDaemon runs shitenno-<proto> with a fresh configuration and waits
// for its unix socket.
func startDaemon(t testing.TB, dir, proto, remoteURL string) *Daemon {
	return startDaemonWith(t, dir, proto, remoteURL, "", "")
}

// startDaemonWith is startDaemon with extra top-level and section lines.
func startDaemonWith(t testing.TB, dir, proto, remoteURL, top, section string) *Daemon {
	t.Helper()
	conf := daemonConfig(t, dir, proto, remoteURL, top, section)
	p := start(t, binary(t, "shitenno-"+proto), "--config", conf)
	sock := filepath.Join(dir, "shitenno-"+proto)
	waitFor(t, 10*time.Second, "socket "+sock, func() bool {
		if p.Exited() {
			t.Fatalf("shitenno-%s exited: %s", proto, p.Output.String())
		}
		return dialable("unix", sock)
	})
	return &Daemon{Proc: p, Socket: sock, Config: conf}
}

// checkShutdown starts shitenno-<proto> with the example backend and sends
// it SIGTERM while the test holds an idle client connection (which has
// sent hello): the daemon must exit with status 0 within 3 s and remove
// its socket.
func checkShutdown(t *testing.T, proto, hello string) {
	t.Helper()
	d := startDaemon(t, testDir(t), proto, exampleBackend(t))
	c, err := net.Dial("unix", d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if hello != "" {
		if _, err := io.WriteString(c, hello); err != nil {
			t.Fatal(err)
		}
	}
	begin := time.Now()
	if err := d.Stop(syscall.SIGTERM, 5*time.Second); err != nil {
		t.Fatalf("exit: %v\n%s", err, d.Output.String())
	}
	if el := time.Since(begin); el > 3*time.Second {
		t.Errorf("shutdown took %s with an idle client", el)
	}
	if _, err := os.Lstat(d.Socket); !os.IsNotExist(err) {
		t.Errorf("socket still there after SIGTERM: %v", err)
	}
}

// run runs a command to completion with a bound and returns its output
// and exit status (-1 when it could not run).
func run(t testing.TB, d time.Duration, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = cleanEnv()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = 0
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %v did not finish within %s", name, args, d)
	}
	return o.String(), e.String(), code
}
