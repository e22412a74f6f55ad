package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// nginxSetup is one private nginx in front of shitenno-nginx, a recording
// backend and three upstream mail servers.
type nginxSetup struct {
	dir                    string
	backend                *FakeBackend
	daemon                 *Daemon
	upstreams              map[string]*mailUpstream
	imap, pop3, smtp, http int
}

// nginxUsersPlain are the logins the recording backend accepts. The
// passwords carry what nginx escapes (space, %) and what it must not
// touch (+, quotes, backslash, UTF-8, DEL).
var nginxUsersPlain = map[string]string{
	"alice":          "secret",
	"space user":     "pass with spaces",
	"percent":        "100%25% sure",
	"plus":           "a+b+c",
	"quotes":         `say "hi" it's`,
	"utf8":           "pässwörd ✓ 日本",
	"backslash":      `back\slash\\`,
	"blank edges":    " lead and trail ",
	"user@example.o": "x%20y+z",
	"del":            "pa\x7fss", // nginx sends DEL raw; net/http refuses it (mailauth rewrites it)
}

// newNginxSetup starts everything; form selects how nginx reaches
// shitenno: "unix" (auth_http unix:SOCK:/auth), "tcp" (auth_http to the
// daemon's Listen address) or "proxy" (auth_http to a local http{} server
// that proxy_passes to an upstream with server unix:SOCK).
func newNginxSetup(t *testing.T, form string) *nginxSetup {
	t.Helper()
	return newNginxSetupWith(t, form, "")
}

// newNginxSetupWith is newNginxSetup with top-level lines (top) in the
// daemon's configuration.
func newNginxSetupWith(t *testing.T, form, top string) *nginxSetup {
	t.Helper()
	requireTool(t, "nginx")
	s := &nginxSetup{dir: testDir(t), upstreams: map[string]*mailUpstream{}}
	ports := map[string]int{}
	for _, p := range []string{"imap", "pop3", "smtp"} {
		s.upstreams[p] = startUpstream(t, p)
		ports[p] = s.upstreams[p].port
	}
	s.backend = newFakeBackend(t, nginxUsers(t, nginxUsersPlain, ports, nil))
	s.imap, s.pop3, s.smtp = freePort(t), freePort(t), freePort(t)
	var authHTTP, httpBody string
	switch form {
	case "unix":
		s.daemon = startDaemonWith(t, s.dir, "nginx", s.backend.BaseURL(), top, "")
		authHTTP = "unix:" + s.daemon.Socket + ":/auth"
	case "tcp":
		lp := freePort(t)
		s.daemon = startDaemonWith(t, s.dir, "nginx", s.backend.BaseURL(), top, fmt.Sprintf("Listen = \"127.0.0.1:%d\"", lp))
		waitDial(t, "tcp", fmt.Sprintf("127.0.0.1:%d", lp))
		authHTTP = fmt.Sprintf("127.0.0.1:%d/auth", lp)
	case "proxy":
		s.daemon = startDaemonWith(t, s.dir, "nginx", s.backend.BaseURL(), top, "")
		s.http = freePort(t)
		authHTTP = fmt.Sprintf("127.0.0.1:%d/auth", s.http)
		httpBody = proxyHTTP(t, s.daemon.Socket, s.http)
	default:
		t.Fatalf("unknown form %q", form)
	}
	wait := []int{s.imap, s.pop3, s.smtp}
	if s.http != 0 {
		wait = append(wait, s.http)
	}
	startNginx(t, s.dir, mailServers(t, authHTTP, s.imap, s.pop3, s.smtp), httpBody, wait...)
	return s
}

// lastNginxRequest returns the Object of the backend's latest request
// for user.
func (s *nginxSetup) lastRequestFor(t *testing.T, user string) map[string]string {
	t.Helper()
	reqs := s.backend.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if o := nginxObject(t, reqs[i]); o["Auth-User"] == user {
			return o
		}
	}
	t.Fatalf("backend never asked about %q", user)
	return nil
}

func last(lines []string) string { return lines[len(lines)-1] }

// imapLoginOK logs in through nginx and checks that the session is then
// served by the upstream.
func imapLoginOK(t *testing.T, s *nginxSetup, user, pass string) {
	t.Helper()
	c := dialMail(t, s.imap)
	if got := c.imapLogin("a1", user, pass); !strings.HasPrefix(last(got), "a1 OK") {
		t.Fatalf("LOGIN %q: got %q, want a1 OK", user, got)
	}
	c.send("a2 NOOP\r\n")
	got := c.tagged("a2")
	if len(got) != 2 || got[0] != "* OK upstream session of "+user || !strings.HasPrefix(got[1], "a2 OK") {
		t.Fatalf("NOOP after login: got %q, want the upstream's answer", got)
	}
}

// largestReplyOK logs in as "maxreply": the backend's OK is the largest
// reply shitenno sends, and nginx must still act on it.
func largestReplyOK(t *testing.T, s *nginxSetup) {
	t.Helper()
	imapLoginOK(t, s, "maxreply", "any")
	want := upLogin{"maxreply", maxReplyPass(s.upstreams["imap"].port)}
	ls := s.upstreams["imap"].Logins()
	if len(ls) == 0 || ls[len(ls)-1] != want {
		t.Fatalf("upstream did not get the %d-byte Auth-Pass", len(want.Pass))
	}
}

func TestNginxIMAP(t *testing.T) {
	s := newNginxSetup(t, "unix")

	t.Run("largest reply fits nginx", func(t *testing.T) { largestReplyOK(t, s) })

	t.Run("good login is proxied", func(t *testing.T) {
		imapLoginOK(t, s, "alice", "secret")
		o := s.lastRequestFor(t, "alice")
		want := map[string]string{"Auth-Method": "plain", "Auth-User": "alice", "Auth-Pass": "secret",
			"Auth-Protocol": "imap", "Auth-Login-Attempt": "1", "Client-IP": "127.0.0.1"}
		for k, v := range want {
			if o[k] != v {
				t.Errorf("backend Object[%q] = %q, want %q (Object %q)", k, o[k], v, o)
			}
		}
		for k := range o {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected key %q in %q", k, o) // e.g. Go's "Client-Ip" spelling
			}
		}
		if ls := s.upstreams["imap"].Logins(); len(ls) == 0 || ls[len(ls)-1] != (upLogin{"alice", "secret"}) {
			t.Errorf("upstream logins %q", ls)
		}
	})

	t.Run("passwords arrive byte-exact", func(t *testing.T) {
		for user, pass := range nginxUsersPlain {
			t.Run(user, func(t *testing.T) {
				t.Parallel()
				imapLoginOK(t, s, user, pass)
				if o := s.lastRequestFor(t, user); o["Auth-Pass"] != pass {
					t.Errorf("backend got Auth-Pass %q, want %q", o["Auth-Pass"], pass)
				}
				found := false
				for _, l := range s.upstreams["imap"].Logins() {
					found = found || l == upLogin{user, pass}
				}
				if !found {
					t.Errorf("upstream never saw %q/%q: %q", user, pass, s.upstreams["imap"].Logins())
				}
			})
		}
	})

	t.Run("bad login is NO, Auth-Wait keeps the session", func(t *testing.T) {
		c := dialMail(t, s.imap)
		start := time.Now()
		got := c.imapLogin("a1", "alice", "wrong")
		if last(got) != "a1 NO Invalid login or password" {
			t.Fatalf("got %q", got)
		}
		if d := time.Since(start); d < 2500*time.Millisecond || d > 6*time.Second {
			t.Errorf("NO after %v, want about Auth-Wait 3s", d)
		}
		// Same connection, second attempt: nginx counts it.
		imapSecond := c.imapLogin("a2", "alice", "secret")
		if !strings.HasPrefix(last(imapSecond), "a2 OK") {
			t.Fatalf("second attempt: %q", imapSecond)
		}
		if o := s.lastRequestFor(t, "alice"); o["Auth-Login-Attempt"] != "2" {
			t.Errorf("Auth-Login-Attempt = %q, want 2", o["Auth-Login-Attempt"])
		}
	})

	t.Run("unknown user is NO", func(t *testing.T) {
		c := dialMail(t, s.imap)
		if got := c.imapLogin("a1", "nobody", "x"); last(got) != "a1 NO Invalid login or password" {
			t.Fatalf("got %q", got)
		}
	})

	t.Run("backend failures are temporary", func(t *testing.T) {
		const timeout, wait = 2 * time.Second, 3 * time.Second // daemonConfig's Timeout, DefaultWait
		for kind := range backendFaults {
			t.Run(kind, func(t *testing.T) {
				t.Parallel()
				c := dialMail(t, s.imap)
				start := time.Now()
				got := c.imapLogin("a1", "fault-"+kind, "pw")
				d := time.Since(start)
				if last(got) != "a1 NO Temporary server problem, try again later" {
					t.Fatalf("got %q", got)
				}
				// The NO is held for Auth-Wait; the answer itself must come
				// within Timeout + 1 s even when the backend hangs.
				if d > timeout+wait+time.Second {
					t.Errorf("NO after %v, want at most Timeout+Auth-Wait+1s", d)
				}
			})
		}
	})
}

func TestNginxPOP3AndSMTP(t *testing.T) {
	s := newNginxSetup(t, "unix")

	t.Run("pop3", func(t *testing.T) {
		c := dialMail(t, s.pop3)
		c.send("USER alice\r\n")
		if l := c.line(); !strings.HasPrefix(l, "+OK") {
			t.Fatalf("USER: %q", l)
		}
		c.send("PASS secret\r\n")
		if l := c.line(); !strings.HasPrefix(l, "+OK") {
			t.Fatalf("PASS: %q", l)
		}
		c.send("STAT\r\n")
		if l := c.line(); l != "+OK 0 0 upstream session of alice" {
			t.Fatalf("STAT through nginx: %q", l)
		}
		if o := s.lastRequestFor(t, "alice"); o["Auth-Protocol"] != "pop3" || o["Auth-Pass"] != "secret" {
			t.Errorf("backend Object %q", o)
		}
		if ls := s.upstreams["pop3"].Logins(); len(ls) != 1 || ls[0] != (upLogin{"alice", "secret"}) {
			t.Errorf("upstream logins %q", ls)
		}
	})

	t.Run("smtp auth plain", func(t *testing.T) {
		c := dialMail(t, s.smtp)
		c.send("EHLO client.test\r\n")
		if r := c.smtpReply(); !strings.HasPrefix(last(r), "250") {
			t.Fatalf("EHLO: %q", r)
		}
		c.send("AUTH PLAIN " + plainAuth("quotes", nginxUsersPlain["quotes"]) + "\r\n")
		if r := c.smtpReply(); !strings.HasPrefix(last(r), "235") {
			t.Fatalf("AUTH PLAIN: %q", r)
		}
		c.send("MAIL FROM:<a@b.test>\r\n")
		if r := c.smtpReply(); last(r) != "250 2.1.0 upstream accepts FROM:<a@b.test>" {
			t.Fatalf("MAIL FROM through nginx: %q", r)
		}
		o := s.lastRequestFor(t, "quotes")
		if o["Auth-Protocol"] != "smtp" || o["Auth-Pass"] != nginxUsersPlain["quotes"] {
			t.Errorf("backend Object %q", o)
		}
	})

	t.Run("smtp refusal and failure codes", func(t *testing.T) {
		for _, tc := range []struct{ user, want string }{
			{"alice", "535 5.7.8 Invalid login or password"},
			{"fault-http500", "451 4.3.0 Temporary server problem, try again later"},
		} {
			t.Run(tc.user, func(t *testing.T) {
				t.Parallel()
				if r := dialMail(t, s.smtp).smtpAuthPlain(tc.user, "wrong"); last(r) != tc.want {
					t.Fatalf("got %q, want %q", r, tc.want)
				}
			})
		}
	})
}

// TestNginxAuthHTTPForms logs in once through each way nginx can reach
// shitenno-nginx besides the unix socket: TCP Listen, and an http{}
// upstream with proxy_pass (the original project's documented form).
func TestNginxAuthHTTPForms(t *testing.T) {
	for _, form := range []string{"tcp", "proxy"} {
		t.Run(form, func(t *testing.T) {
			t.Parallel()
			s := newNginxSetup(t, form)
			imapLoginOK(t, s, "utf8", nginxUsersPlain["utf8"])
			largestReplyOK(t, s)
			c := dialMail(t, s.imap)
			if got := c.imapLogin("a1", "fault-garbage", "x"); last(got) != "a1 NO Temporary server problem, try again later" {
				t.Fatalf("failure: got %q", got)
			}
		})
	}
}

// TestNginxQueryExampleBackend checks the example backend's nginx verb
// through `shitenno-nginx query` (what `make run` suggests trying).
func TestNginxQueryExampleBackend(t *testing.T) {
	dir := testDir(t)
	conf := daemonConfig(t, dir, "nginx", exampleBackend(t), "", "")
	bin := binary(t, "shitenno-nginx")
	out, errOut, code := run(t, 20*time.Second, bin, "--config", conf, "query", "alice@example.org", "secret")
	if code != 0 || out != "Auth-Status: OK\nAuth-Server: 127.0.0.1\nAuth-Port: 10143\n" {
		t.Errorf("good password: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, errOut, code = run(t, 20*time.Second, bin, "--config", conf, "query", "bob@example.org", "nope", "smtp")
	if code != 1 || out != "Auth-Status: Invalid login or password\nAuth-Wait: 3\nAuth-Error-Code: 535 5.7.8\n" {
		t.Errorf("bad password: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
