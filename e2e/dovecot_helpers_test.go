package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// dovecotInstance is a private dovecot 2.3 (master, auth, imap) whose
// passdb and userdb are the dict driver talking to shitenno-dovecot.
type dovecotInstance struct {
	dir      string // the instance's own directory
	conf     string // dovecot.conf
	imapPort int
	doveadm  string
}

// dovecotSeq makes instance names unique inside this test binary; the pid
// makes them unique across parallel runs.
var dovecotSeq atomic.Int32

// startDovecot writes a self-contained configuration (own base_dir,
// state_dir, logs, loopback IMAP port; TESTING.md) using sock as the dict
// socket, starts dovecot in the foreground and waits until IMAP and the
// auth sockets answer. extra is appended to dovecot.conf (a later
// setting replaces an earlier one).
func startDovecot(t *testing.T, dir, sock string, extra ...string) *dovecotInstance {
	t.Helper()
	dovecot := requireTool(t, "dovecot")
	dv := &dovecotInstance{dir: filepath.Join(dir, "dovecot"), imapPort: freePort(t), doveadm: requireTool(t, "doveadm")}
	dovecotDirs(t, dv.dir)
	// The documented configuration (docs/dovecot.md), with this test's paths.
	dictConf := filepath.Join(dv.dir, "dovecot-dict-auth.conf.ext")
	dictBlock := docReplace(t, dovecotDocBlock(t, "dict-auth"), "/run/shitenno-dovecot", sock)
	authBlock := docReplace(t, dovecotDocBlock(t, "auth"), "/etc/dovecot/dovecot-dict-auth.conf.ext", dictConf)
	if err := os.WriteFile(dictConf, []byte(dictBlock), 0o644); err != nil {
		t.Fatal(err)
	}
	dv.conf = filepath.Join(dv.dir, "dovecot.conf")
	conf := dovecotConfHead(dv.dir, fmt.Sprintf("shitenno-e2e-%d-%d", os.Getpid(), dovecotSeq.Add(1))) + fmt.Sprintf(`info_log_path = %[1]s/dovecot.log
disable_plaintext_auth = no
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
auth_failure_delay = 0
auth_verbose = yes
mail_location = maildir:~/Maildir
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[2]d
  }
  inet_listener imaps {
    port = 0
  }
}
%[3]s%[4]s`, dv.dir, dv.imapPort, authBlock, strings.Join(extra, ""))
	if err := os.WriteFile(dv.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := run(t, 10*time.Second, requireTool(t, "doveconf"), "-c", dv.conf, "-n"); code != 0 {
		t.Fatalf("doveconf -n: %s", errOut)
	}
	p := start(t, dovecot, "-F", "-c", dv.conf)
	logOnFailure(t, "dovecot log", filepath.Join(dv.dir, "dovecot.log"), 0)
	waitFor(t, 15*time.Second, "dovecot IMAP and auth sockets", func() bool {
		if p.Exited() {
			t.Fatalf("dovecot exited: %s", p.Output.String())
		}
		for _, s := range []string{"auth-client", "auth-userdb"} {
			if _, err := os.Stat(filepath.Join(dv.dir, "run", s)); err != nil {
				return false
			}
		}
		return dialable("tcp", dv.imapAddr())
	})
	return dv
}

// dovecotDirs makes a private instance's run, state and home directories
// under dir. Mail processes run with the userdb uid (nobody): home is
// 1777, so that they can create the users' homes in it.
func dovecotDirs(t *testing.T, dir string) {
	t.Helper()
	for _, sub := range []string{"run", "state", "home"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "home"), 0o1777); err != nil {
		t.Fatal(err)
	}
}

// dovecotConfHead is what every private dovecot.conf (2.3 and 2.4) starts
// with: base_dir, state_dir and log_path in dir (as dovecot sees it), its
// own instance name, IMAP on 127.0.0.1 without TLS (TESTING.md).
func dovecotConfHead(dir, name string) string {
	return fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
instance_name = %[2]s
log_path = %[1]s/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
`, dir, name)
}

// dovecotDocBlock returns the fenced code block that follows the marker
// <!-- dovecot:NAME --> in docs/dovecot.md: the README's configuration is
// the one tested.
func dovecotDocBlock(t *testing.T, name string) string {
	t.Helper()
	return docBlock(t, "dovecot", name, "")
}

// docBlock returns the code block (```lang) that follows the marker
// <!-- DOC:NAME --> in docs/DOC.md.
func docBlock(t *testing.T, doc, name, lang string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", doc+".md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "<!-- "+doc+":"+name+" -->\n```"+lang+"\n")
	block, _, ok2 := strings.Cut(after, "```\n")
	if !ok || !ok2 {
		t.Fatalf("docs/%s.md has no ```%s block after <!-- %s:%s -->", doc, lang, doc, name)
	}
	return block
}

// docReplace replaces a documented path by the test's own, failing when
// the documentation no longer contains it.
func docReplace(t *testing.T, block, old, new string) string {
	t.Helper()
	if !strings.Contains(block, old) {
		t.Fatalf("documented block lacks %q:\n%s", old, block)
	}
	return strings.ReplaceAll(block, old, new)
}

func (dv *dovecotInstance) imapAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(dv.imapPort))
}

// authTest runs doveadm auth test (no auth penalty for the test's address)
// and returns its combined output and exit status.
func (dv *dovecotInstance) authTest(t *testing.T, user, pass string) (string, int) {
	t.Helper()
	out, errOut, code := run(t, 60*time.Second, dv.doveadm, "-c", dv.conf, "auth", "test", "-x", "no-penalty", user, pass)
	return out + errOut, code
}

// user runs doveadm user and returns its combined output and exit status.
func (dv *dovecotInstance) user(t *testing.T, user string) (string, int) {
	t.Helper()
	out, errOut, code := run(t, 60*time.Second, dv.doveadm, "-c", dv.conf, "user", user)
	return out + errOut, code
}

// imapLogin connects from the loopback address src (each test its own, so
// that dovecot's per-IP auth penalty of one test does not slow another),
// sends LOGIN and returns the tagged reply line.
func (dv *dovecotInstance) imapLogin(t *testing.T, src, user, pass string) string {
	t.Helper()
	return imapLoginAt(t, src, dv.imapAddr(), user, pass)
}

// imapLoginAt connects from src to the IMAP server at addr, sends LOGIN
// and returns the tagged reply line (LOGOUT follows an OK).
func imapLoginAt(t *testing.T, src, addr, user, pass string) string {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("imap dial from %s: %v", src, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	greeting, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(greeting, "* OK") {
		t.Fatalf("imap greeting %q: %v", greeting, err)
	}
	fmt.Fprintf(c, "a1 LOGIN %s %s\r\n", imapQuote(user), imapQuote(pass))
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("imap LOGIN reply: %v (got %q)", err, line)
		}
		if strings.HasPrefix(line, "a1 ") {
			if strings.HasPrefix(line, "a1 OK") {
				fmt.Fprintf(c, "a2 LOGOUT\r\n")
			}
			return strings.TrimRight(line, "\r\n")
		}
	}
}

// imapQuote makes an IMAP quoted string (RFC 3501 §4.3) of s.
func imapQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// dovecotUsers is a backend answering passdb/userdb for the given users
// (name → password), with homes under home and uid/gid nobody, the way a
// real backend would: Object.Object is the user name.
func dovecotUsers(users map[string]string, home string) func(BackendRequest) (int, string) {
	return func(r BackendRequest) (int, string) {
		var o struct{ Context, Object string }
		if err := json.Unmarshal(r.Object, &o); err != nil || o.Context != "shared" {
			return 400, `{"error":"bad object"}`
		}
		pass, ok := users[o.Object]
		if !ok {
			return 200, okReply(r, "KO", nil)
		}
		switch r.Verb {
		case "passdb":
			return 200, okReply(r, "OK", map[string]any{"password": "{PLAIN}" + pass})
		case "userdb":
			return 200, okReply(r, "OK", map[string]any{
				"uid": 65534, "gid": 65534, "home": filepath.Join(home, o.Object), "quota_rule": "*:storage=1G",
			})
		}
		return 404, `{"error":"unknown verb"}`
	}
}
