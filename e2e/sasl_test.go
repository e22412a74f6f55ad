package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
)

// saslBackend answers the sasl verb: alice@example.org / "right pw" is
// accepted as herself, renamed / "pw" under another name; fault, when
// set, replaces every answer (an outage).
type saslBackend struct {
	fb    *FakeBackend
	mu    sync.Mutex
	fault func(BackendRequest) (int, string)
}

func newSASLBackend(t *testing.T) *saslBackend {
	b := &saslBackend{}
	b.fb = newFakeBackend(t, func(r BackendRequest) (int, string) {
		b.mu.Lock()
		fault := b.fault
		b.mu.Unlock()
		if fault != nil {
			return fault(r)
		}
		var o struct{ User, Password, Mechanism string }
		if err := json.Unmarshal(r.Object, &o); err != nil || r.Verb != "sasl" {
			return 400, "bad request"
		}
		switch {
		case o.User == "alice@example.org" && o.Password == "right pw":
			return 200, okReply(r, "OK", nil)
		case o.User == "renamed" && o.Password == "pw":
			return 200, okReply(r, "OK", map[string]string{"User": "canonical@example.org"})
		}
		return 200, okReply(r, "KO", nil)
	})
	return b
}

func (b *saslBackend) setFault(f func(BackendRequest) (int, string)) {
	b.mu.Lock()
	b.fault = f
	b.mu.Unlock()
}

// smtpSession is a hand-driven SMTP session, for what swaks cannot send
// (AUTH PLAIN without an initial response, an unknown mechanism).
type smtpSession struct {
	t *testing.T
	c *textproto.Conn
}

func dialSMTP(t *testing.T, port int) *smtpSession {
	t.Helper()
	return dialSMTPFrom(t, "", port)
}

// dialSMTPFrom is dialSMTP from a loopback source address other than
// 127.0.0.1 ("" for the default), so smtpd sees another client network.
func dialSMTPFrom(t *testing.T, src string, port int) *smtpSession {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	nc, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("smtp dial: %v", err)
	}
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	s := &smtpSession{t: t, c: textproto.NewConn(nc)}
	t.Cleanup(func() { s.c.Close() })
	if code, msg := s.reply(); code != 220 {
		t.Fatalf("banner %d %s", code, msg)
	}
	return s
}

func (s *smtpSession) reply() (int, string) {
	code, msg, err := s.c.ReadResponse(0)
	if err != nil {
		if _, ok := err.(*textproto.Error); !ok {
			s.t.Fatalf("smtp read: %v", err)
		}
	}
	return code, msg
}

// cmd sends one line and returns the reply.
func (s *smtpSession) cmd(line string) (int, string) {
	s.t.Helper()
	if err := s.c.PrintfLine("%s", line); err != nil {
		s.t.Fatalf("smtp write: %v", err)
	}
	return s.reply()
}

func plainResp(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// login runs EHLO and AUTH PLAIN with an initial response and returns
// the AUTH reply.
func login(t *testing.T, port int, user, pass string) (int, string) {
	return loginFrom(t, "", port, user, pass)
}

// loginFrom is login from the source address src.
func loginFrom(t *testing.T, src string, port int, user, pass string) (int, string) {
	s := dialSMTPFrom(t, src, port)
	s.cmd("EHLO client.test.invalid")
	code, msg := s.cmd("AUTH PLAIN " + plainResp(user, pass))
	s.cmd("QUIT")
	return code, msg
}

// swaksAuth runs swaks with --auth MECH and returns its transcript.
// Extra arguments go to swaks as they are (--local-interface …).
func (pf *postfixInstance) swaksAuth(t *testing.T, port int, mech, user, pass string, extra ...string) string {
	t.Helper()
	swaks := requireTool(t, "swaks")
	args := append([]string{"--server", fmt.Sprintf("127.0.0.1:%d", port), "--helo", "client.test.invalid",
		"--auth", mech, "--auth-user", user, "--auth-password", pass, "--quit-after", "AUTH", "--timeout", "30"}, extra...)
	out, errOut, _ := run(t, 60*time.Second, swaks, args...)
	return out + errOut
}

// saslMainCF is the README's main.cf for SMTP AUTH (docs/postfix.md)
// with the test's auth socket path or inet:host:port.
func saslMainCF(t *testing.T, path string) string {
	// The connection count limit (50 per client by default) would refuse
	// the parallel logins, all from 127.0.0.1.
	return docReplace(t, docBlock(t, "postfix", "sasl", ""), "private/shitenno-auth", path) +
		"smtpd_client_connection_count_limit = 0\n"
}

// startSASLDaemon starts shitenno-postfix in dir with b's backend, the
// top-level lines top and the [Postfix] lines section, and its SMTP AUTH
// listener on the unix socket asock.
func startSASLDaemon(t *testing.T, dir string, b *saslBackend, top, section string) (d *Daemon, asock string) {
	t.Helper()
	asock = filepath.Join(dir, "auth.sock")
	d = startDaemonWith(t, dir, "postfix", b.fb.BaseURL(), top, fmt.Sprintf("SASLSocket = %q\n", asock)+section)
	waitDial(t, "unix", asock)
	return d, asock
}

// TestSASLPostfixSMTPD: a private postfix 3.7 smtpd with
// smtpd_sasl_type = dovecot on shitenno's unix socket, driven by swaks
// and by hand: PLAIN with and without an initial response, LOGIN, a
// wrong password (535), an unknown mechanism, backend 500 / hang / down
// (454, then 235 again in the same smtpd process once the backend is
// back), and 50 logins at once.
func TestSASLPostfixSMTPD(t *testing.T) {
	needRoot(t, "the private postfix")
	b := newSASLBackend(t)
	dir := testDir(t)
	hp := freePort(t)
	d, asock := startSASLDaemon(t, dir, b, "", fmt.Sprintf("HealthListen = \"127.0.0.1:%d\"\n", hp))
	// A second smtpd with maxproc 1: consecutive sessions reach the same
	// process and its long-lived auth connection (PROTOCOLS.md §8.5).
	single := freePort(t)
	// A third with noplaintext: PLAIN and LOGIN carry the plaintext flag,
	// so smtpd filters both out, has no mechanism left and stops before
	// its banner (postfix: "fatal: no SASL authentication mechanisms";
	// smtpd_tls_auth_only = yes is how AUTH waits for STARTTLS instead).
	noplain := freePort(t)
	pf := startPostfix(t, dir, d.Socket, saslMainCF(t, asock),
		fmt.Sprintf("%s127.0.0.1:%d inet n - n - 1 smtpd", masterCFLine, single),
		fmt.Sprintf("%s127.0.0.1:%d inet n - n - - smtpd -o smtpd_sasl_security_options=noanonymous,noplaintext", masterCFLine, noplain))
	checkSASL(t, pf, b, single)
	if nc, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", noplain), 5*time.Second); err != nil {
		t.Errorf("noplaintext smtpd: %v", err)
	} else {
		_ = nc.SetDeadline(time.Now().Add(15 * time.Second))
		got, _ := io.ReadAll(nc)
		nc.Close()
		if len(got) != 0 {
			t.Errorf("noplaintext smtpd answered %q, want no banner (no mechanism left)", got)
		}
		waitFor(t, 10*time.Second, "smtpd's no-mechanism fatal in the log", func() bool {
			log, _ := os.ReadFile(filepath.Join(pf.dir, "log", "postfix.log"))
			return strings.Contains(string(log), "fatal: no SASL authentication mechanisms")
		})
	}

	// Logins are counted under the SMTP AUTH listener, by outcome.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", hp))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, o := range []string{"found", "not_found", "failed"} {
		if !strings.Contains(string(body), `shitenno_lookups_total{listener="sasl",outcome="`+o+`",verb="sasl"} `) {
			t.Errorf("metrics lack the sasl listener's %s logins:\n%s", o, testutil.GrepLines(string(body), "lookups_total"))
		}
	}
	// Every login is timed under sasl; the socketmap listener saw none.
	if regexp.MustCompile(`(?m)^shitenno_lookup_duration_seconds_count\{listener="sasl"\} [1-9]`).Find(body) == nil ||
		!strings.Contains(string(body), "shitenno_lookup_duration_seconds_count{listener=\"socketmap\"} 0\n") {
		t.Errorf("login latency not under the sasl listener alone:\n%s", testutil.GrepLines(string(body), "lookup_duration_seconds_count"))
	}
}

// TestTrixieSASL is TestSASLPostfixSMTPD on postfix 3.10 (Debian 13
// root) over inet:, where 3.10 reconnects at the next session's start.
func TestTrixieSASL(t *testing.T) {
	t.Parallel()
	root := trixieRoot(t)
	b := newSASLBackend(t)
	dir := trixieDir(t, root)
	inet := loopbackAddr(t)
	d := startDaemonWith(t, dir, "postfix", b.fb.BaseURL(), "", fmt.Sprintf("SASLListen = %q\n", inet))
	waitDial(t, "tcp", inet)
	single := freePort(t)
	pf := startTrixiePostfix(t, root, dir, d.Socket, saslMainCF(t, "inet:"+inet),
		fmt.Sprintf("%s127.0.0.1:%d inet n - n - 1 smtpd", masterCFLine, single))
	checkSASL(t, pf, b, single)
}

// checkSASL drives pf's smtpd (port pf.port, and single: one process)
// through every SMTP AUTH case.
func checkSASL(t *testing.T, pf *postfixInstance, b *saslBackend, single int) {
	t.Helper()
	for _, c := range []struct{ mech, user, pass, want string }{
		{"PLAIN", "alice@example.org", "right pw", "<-  235 2.7.0 Authentication successful"},
		{"LOGIN", "alice@example.org", "right pw", "<-  235 2.7.0 Authentication successful"},
		{"PLAIN", "alice@example.org", "wrong", "<** 535 5.7.8 Error: authentication failed: Invalid user name or password"},
		{"LOGIN", "nobody@example.org", "x", "<** 535 5.7.8 Error: authentication failed: Invalid user name or password"},
	} {
		if out := pf.swaksAuth(t, pf.port, c.mech, c.user, c.pass); !strings.Contains(out, c.want) {
			t.Errorf("swaks --auth %s %s: want %q in\n%s", c.mech, c.user, c.want, out)
		}
	}
	reqs := b.fb.Requests()
	if len(reqs) == 0 {
		t.Fatal("the backend was never asked")
	}
	var o map[string]any
	_ = json.Unmarshal(reqs[0].Object, &o)
	if o["Mechanism"] != "PLAIN" || o["User"] != "alice@example.org" || o["Password"] != "right pw" || o["Service"] != "smtp" ||
		o["Client-IP"] != "127.0.0.1" || o["Local-IP"] != "127.0.0.1" || o["Secured"] != false {
		t.Errorf("backend object %s", reqs[0].Object)
	}

	// By hand: the mechanisms advertised, PLAIN without an initial
	// response (334 with an empty challenge), the backend's name for the
	// user, an unknown mechanism refused by smtpd itself.
	s := dialSMTP(t, pf.port)
	if _, msg := s.cmd("EHLO client.test.invalid"); !strings.Contains(msg, "\nAUTH PLAIN LOGIN") {
		t.Errorf("EHLO: want AUTH PLAIN LOGIN in\n%s", msg)
	}
	if code, msg := s.cmd("AUTH PLAIN"); code != 334 || msg != "" {
		t.Errorf("AUTH PLAIN: %d %q, want 334 and an empty challenge", code, msg)
	}
	if code, msg := s.cmd(plainResp("renamed", "pw")); code != 235 {
		t.Errorf("PLAIN credentials after 334: %d %s", code, msg)
	}
	s = dialSMTP(t, pf.port)
	s.cmd("EHLO client.test.invalid")
	n := len(b.fb.Requests())
	if code, msg := s.cmd("AUTH CRAM-MD5"); code != 535 || !strings.Contains(msg, "Invalid authentication mechanism") {
		t.Errorf("AUTH CRAM-MD5: %d %s", code, msg)
	}
	if len(b.fb.Requests()) != n {
		t.Error("an unknown mechanism reached the backend")
	}

	// Outages: 454 (temporary) while the backend fails, and 235 at the
	// first login after it is back, through the same smtpd process.
	if code, msg := login(t, single, "alice@example.org", "right pw"); code != 235 {
		t.Fatalf("before the outages: %d %s", code, msg)
	}
	for _, o := range []struct {
		name  string
		fault func(BackendRequest) (int, string)
	}{{"http500", backendFaults["http500"]}, {"hang", backendFaults["hang"]}, {"down", nil}} {
		if o.fault != nil {
			b.setFault(o.fault)
		} else {
			b.fb.Down()
		}
		for range 2 {
			if code, msg := login(t, single, "alice@example.org", "right pw"); code != 454 || !strings.HasPrefix(msg, "4.7.0 Temporary authentication failure") {
				t.Errorf("%s: %d %s, want 454 4.7.0", o.name, code, msg)
			}
		}
		if o.fault != nil {
			b.setFault(nil)
		} else {
			if err := b.fb.Up(); err != nil {
				t.Fatalf("backend up again: %v", err)
			}
		}
		if code, msg := login(t, single, "alice@example.org", "right pw"); code != 235 {
			t.Errorf("%s: first login after recovery: %d %s, want 235", o.name, code, msg)
		}
	}

	// 50 logins at once, each answered on its own merits.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			pass, want := "right pw", 235
			if i%5 == 0 {
				pass, want = "wrong", 535
			}
			if code, msg := login(t, pf.port, "alice@example.org", pass); code != want {
				t.Errorf("parallel login %d: %d %s, want %d", i, code, msg, want)
			}
		})
	}
	wg.Wait()
}

// TestSASLBruteForce: through a real smtpd, after MaxFailures distinct
// wrong passwords from 127.0.0.2 a login from there gets 535 with the
// "try again later" reason even with the right password, and the backend
// is not asked; 127.0.0.1 still logs in, and `shitenno-postfix blocked`
// and `unblock` reach the running daemon.
func TestSASLBruteForce(t *testing.T) {
	needRoot(t, "the private postfix")
	b := newSASLBackend(t)
	dir := testDir(t)
	// AllowNets empty: by default loopback is never counted.
	d, asock := startSASLDaemon(t, dir, b, "[BruteForce]\nMaxFailures = 3\nAllowNets = []\n", "")
	pf := startPostfix(t, dir, d.Socket, saslMainCF(t, asock))

	const wrong = "535 5.7.8 Error: authentication failed: Invalid user name or password"
	// A repeated stale password counts once, then two distinct ones.
	for _, pass := range []string{"stale", "stale", "wrong1", "wrong2"} {
		if code, msg := loginFrom(t, "127.0.0.2", pf.port, "alice@example.org", pass); fmt.Sprint(code, " ", msg) != wrong {
			t.Fatalf("password %q: %d %s", pass, code, msg)
		}
	}
	before := len(b.fb.Requests())
	// swaks from the blocked address, with the right password.
	out := pf.swaksAuth(t, pf.port, "LOGIN", "alice@example.org", "right pw", "--local-interface", "127.0.0.2")
	if !strings.Contains(out, "<** 535 5.7.8 Error: authentication failed: Too many failed logins, try again later") {
		t.Fatalf("blocked login: want the try-again-later 535 in\n%s", out)
	}
	if n := len(b.fb.Requests()); n != before {
		t.Fatalf("backend asked %d times for a blocked network", n-before)
	}
	if code, msg := login(t, pf.port, "alice@example.org", "right pw"); code != 235 {
		t.Fatalf("another network: %d %s", code, msg)
	}
	if out := d.Proc.Output.String(); !strings.Contains(out, "network=127.0.0.2/32") || strings.Contains(out, "wrong1") {
		t.Errorf("want one block line and no password in the log:\n%s", out)
	}
	bin := binary(t, "shitenno-postfix")
	out, errOut, rc := run(t, 10*time.Second, bin, "--config", d.Config, "blocked")
	if rc != 0 || !strings.Contains(out, "127.0.0.2/32 failures=3") {
		t.Fatalf("blocked: %d %q %q", rc, out, errOut)
	}
	if _, errOut, rc := run(t, 10*time.Second, bin, "--config", d.Config, "unblock", "127.0.0.2"); rc != 0 {
		t.Fatalf("unblock: %d %q", rc, errOut)
	}
	if code, msg := loginFrom(t, "127.0.0.2", pf.port, "alice@example.org", "right pw"); code != 235 {
		t.Fatalf("after unblock: %d %s", code, msg)
	}
}

// TestSASLOverTLS: with smtpd_tls_auth_only = yes smtpd offers AUTH only
// after STARTTLS, and the login then reaches the backend with
// "Secured": true (postfix's secured flag).
func TestSASLOverTLS(t *testing.T) {
	needRoot(t, "the private postfix")
	b := newSASLBackend(t)
	dir := testDir(t)
	d, asock := startSASLDaemon(t, dir, b, "", "")
	cert, key := selfSignedFiles(t, dir, "mx.test.invalid")
	pf := startPostfix(t, dir, d.Socket, saslMainCF(t, asock),
		fmt.Sprintf("smtpd_tls_security_level = may\nsmtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\nsmtpd_tls_auth_only = yes\n", cert, key),
		masterCFLine+"tlsmgr unix - - n 1000? 1 tlsmgr")
	s := dialSMTP(t, pf.port)
	if _, msg := s.cmd("EHLO client.test.invalid"); strings.Contains(msg, "AUTH") || !strings.Contains(msg, "STARTTLS") {
		t.Errorf("EHLO before STARTTLS: want STARTTLS and no AUTH in\n%s", msg)
	}
	out := pf.swaksAuth(t, pf.port, "PLAIN", "alice@example.org", "right pw", "--tls")
	if !strings.Contains(out, "<~  235 2.7.0 Authentication successful") {
		t.Fatalf("AUTH after STARTTLS: want 235 in\n%s", out)
	}
	reqs := b.fb.Requests()
	if len(reqs) != 1 {
		t.Fatalf("backend got %d requests, want 1", len(reqs))
	}
	var o map[string]any
	_ = json.Unmarshal(reqs[0].Object, &o)
	if o["Secured"] != true {
		t.Errorf("backend object %s, want Secured true", reqs[0].Object)
	}
}
