package e2e

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDaemonKilled: what each real peer sees while its shitenno daemon is
// dead (SIGKILL: the socket file stays, nobody accepts on it), and that a
// restarted daemon takes the stale socket over and serves again.
func TestDaemonKilled(t *testing.T) {
	requireTool(t, "postmap")
	requireTool(t, "dovecot")
	requireTool(t, "nginx")
	backend := exampleBackend(t, "--quiet")

	kill := func(t *testing.T, d *Daemon) {
		t.Helper()
		if err := syscall.Kill(d.Cmd.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "the daemon to die", d.Exited)
		if st := supStat(d.Socket); !st.IsSocket {
			t.Fatalf("socket gone after SIGKILL: %+v", st)
		}
	}
	restart := func(t *testing.T, dir, proto string) *Daemon {
		t.Helper()
		return startDaemon(t, dir, proto, backend) // must remove the stale socket itself
	}

	t.Run("postfix", func(t *testing.T) {
		t.Parallel()
		dir := testDir(t)
		d := startDaemon(t, dir, "postfix", backend)
		pd := postmapDir(t, dir)
		kill(t, d)
		out, errOut, code := postmapQuery(t, pd, d.Socket, "virtual", "alice@example.org")
		if code != 1 || out != "" || !strings.Contains(errOut, "query error: Connection refused") {
			t.Errorf("postmap with the daemon dead: exit %d stdout %q stderr %q; want exit 1, query error", code, out, errOut)
		}
		if os.Geteuid() == 0 { // the private smtpd needs root
			pf := startPostfix(t, dir, d.Socket)
			if code, msg := pf.rcpt(t, "alice@example.org"); code != 451 || !strings.Contains(msg, "4.3.0") {
				t.Errorf("smtpd RCPT with the daemon dead: %d %s; want 451 4.3.0", code, msg)
			}
		}
		restart(t, dir, "postfix")
		if out, errOut, code := postmapQuery(t, pd, d.Socket, "virtual", "alice@example.org"); code != 0 || out != "alice@example.org\n" {
			t.Errorf("after restart: exit %d %q %s", code, out, errOut)
		}
	})

	t.Run("dovecot", func(t *testing.T) {
		t.Parallel()
		dir := testDir(t)
		d := startDaemon(t, dir, "dovecot", backend)
		dv := startDovecot(t, dir, d.Socket)
		kill(t, d)
		out, code := dv.user(t, "alice@example.org")
		if code != exTempFail {
			t.Errorf("doveadm user with the daemon dead: exit %d, want %d\n%s", code, exTempFail, out)
		}
		out, code = dv.authTest(t, "alice@example.org", "secret")
		if code != exNoPerm || !strings.Contains(out, "temp_fail") {
			t.Errorf("doveadm auth test with the daemon dead: exit %d, want %d with code=temp_fail\n%s", code, exNoPerm, out)
		}
		line := dv.imapLogin(t, "127.0.0.21", "alice@example.org", "secret")
		if !strings.HasPrefix(line, "a1 NO") || !strings.Contains(line, "UNAVAILABLE") {
			t.Errorf("LOGIN: %s; want NO [UNAVAILABLE]", line)
		}
		restart(t, dir, "dovecot")
		if out, code := dv.authTest(t, "alice@example.org", "secret"); code != exOK {
			t.Errorf("after restart: exit %d\n%s", code, out)
		}
	})

	t.Run("nginx", func(t *testing.T) {
		t.Parallel()
		dir := testDir(t)
		up := startUpstream(t, "imap")
		fb := newFakeBackend(t, nginxUsers(t, map[string]string{"alice": "secret"}, map[string]int{"imap": up.port}, nil))
		d := startDaemon(t, dir, "nginx", fb.BaseURL())
		imap, smtp := freePort(t), freePort(t)
		startNginx(t, dir, mailServers(t, "unix:"+d.Socket+":/auth", imap, freePort(t), smtp), "", imap, smtp)
		kill(t, d)
		c := dialMail(t, imap)
		if got := c.imapLogin("a1", "alice", "secret"); got[0] != "* BAD internal server error" {
			t.Errorf("IMAP LOGIN through nginx with the daemon dead: %q; want nginx's * BAD internal server error", got)
		}
		if r := dialMail(t, smtp).smtpAuthPlain("alice", "secret"); last(r) != "451 4.3.2 Internal server error" {
			t.Errorf("SMTP AUTH through nginx with the daemon dead: %q; want 451 4.3.2 Internal server error", r)
		}
		startDaemon(t, dir, "nginx", fb.BaseURL())
		c = dialMail(t, imap)
		if got := c.imapLogin("a1", "alice", "secret"); !strings.HasPrefix(last(got), "a1 OK") {
			t.Errorf("after restart: %q", got)
		}
	})
}

// TestTLSRefusedAllDaemons: a backend whose certificate is not trusted, or
// whose key does not match the pin, gets no request, and each daemon's
// client gets its temporary failure (postfix's postmap case is
// TestPostmapOverHTTPS).
func TestTLSRefusedAllDaemons(t *testing.T) {
	answer := func(r BackendRequest) (int, string) { return 200, okReply(r, "OK", "x") }
	for _, p := range protocols {
		for _, kind := range []string{"untrusted CA", "pin mismatch"} {
			t.Run(p.name+"/"+kind, func(t *testing.T) {
				t.Parallel()
				dir := testDir(t)
				fb, caFile, _ := tlsFakeBackend(t, dir, answer)
				top := "SystemCertPool = true\n" // the test CA is not in it
				if kind == "pin mismatch" {
					top = fmt.Sprintf("CertPool = %q\nHPKP = [%q]\n", caFile, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
				}
				d := startDaemonWith(t, dir, p.name, fb.BaseURL(), top, "")
				ans, err := p.lookupOnce(d.Socket, 10*time.Second)
				if err != nil || p.verdict(ans) != "temp" {
					t.Errorf("got %q %v, want a temporary failure", ans, err)
				}
				if n := len(fb.Requests()); n != 0 {
					t.Errorf("backend got %d requests over a refused TLS connection", n)
				}
			})
		}
	}
}
