package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// postmapDir writes the minimal main.cf postmap needs (TESTING.md).
func postmapDir(t testing.TB, dir string) string {
	t.Helper()
	pd := filepath.Join(dir, "postmap")
	if err := os.MkdirAll(pd, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pd, "main.cf"), []byte("compatibility_level = 3.6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return pd
}

// postmapQuery runs postmap -q KEY socketmap:unix:SOCK:TABLE (-f keeps
// the key's case) and returns stdout, stderr and the exit status.
func postmapQuery(t testing.TB, confDir, sock, table, key string) (string, string, int) {
	t.Helper()
	postmap := requireTool(t, "postmap")
	return run(t, 30*time.Second, postmap, "-c", confDir, "-f", "-q", key, "socketmap:unix:"+sock+":"+table)
}

func TestPostmapExampleBackend(t *testing.T) {
	requireTool(t, "postmap")
	dir := testDir(t)
	d := startDaemon(t, dir, "postfix", exampleBackend(t))
	pd := postmapDir(t, dir)

	out, errOut, code := postmapQuery(t, pd, d.Socket, "virtual", "sales@example.org")
	if code != 0 || out != "alice@example.org,bob@example.org\n" {
		t.Errorf("found: got exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, errOut, code = postmapQuery(t, pd, d.Socket, "virtual", "nobody@example.org")
	if code != 1 || out != "" || errOut != "" {
		t.Errorf("not found: got exit %d, stdout %q, stderr %q; want 1 and no output", code, out, errOut)
	}
	// Several keys over one connection (postmap -q - reads stdin).
	cmd := exec.Command(requireTool(t, "postmap"), "-c", pd, "-q", "-", "socketmap:unix:"+d.Socket+":domains")
	cmd.Stdin = strings.NewReader("example.org\nnope.example\nexample.net\n")
	got, err := cmd.Output()
	if err != nil && cmd.ProcessState.ExitCode() > 1 {
		t.Fatalf("postmap -q -: %v", err)
	}
	if string(got) != "example.org\tOK\nexample.net\tOK\n" {
		t.Errorf("postmap -q -: got %q", got)
	}
}

// TestPostmapKeysAndValues checks what crosses the socket byte for byte:
// keys with spaces and UTF-8 reach the backend unchanged, a 50 kB value
// reaches postfix whole.
func TestPostmapKeysAndValues(t *testing.T) {
	requireTool(t, "postmap")
	big := strings.Repeat("0123456789", 5000)
	fb := newFakeBackend(t, func(r BackendRequest) (int, string) {
		var key string
		if err := json.Unmarshal(r.Object, &key); err != nil {
			return 400, "bad object"
		}
		switch key {
		case "big":
			return 200, okReply(r, "OK", big)
		case "toobig":
			return 200, okReply(r, "OK", big+big)
		}
		return 200, okReply(r, "OK", "got:"+key)
	})
	dir := testDir(t)
	d := startDaemon(t, dir, "postfix", fb.BaseURL())
	pd := postmapDir(t, dir)

	for _, key := range []string{"Foo Bar@Example.COM", "josé@exämple.org", "a b  c", "quote\"d@x"} {
		out, errOut, code := postmapQuery(t, pd, d.Socket, "virtual", key)
		if code != 0 || out != "got:"+key+"\n" {
			t.Errorf("key %q: exit %d, stdout %q, stderr %q", key, code, out, errOut)
		}
	}
	out, errOut, code := postmapQuery(t, pd, d.Socket, "virtual", "big")
	if code != 0 || out != big+"\n" {
		t.Errorf("50 kB value: exit %d, %d bytes out, stderr %q", code, len(out), errOut)
	}
	// 100000 bytes is over postfix's limit once "OK " is added: shitenno
	// must refuse it itself rather than send a frame postfix rejects.
	_, errOut, code = postmapQuery(t, pd, d.Socket, "virtual", "toobig")
	if code != 1 || !strings.Contains(errOut, "permanent error") {
		t.Errorf("oversize value: exit %d, stderr %q; want PERM", code, errOut)
	}

	// The backend saw the exact verb, path and key.
	reqs := fb.Requests()
	if len(reqs) == 0 {
		t.Fatal("backend received nothing")
	}
	r := reqs[0]
	if r.Path != "/virtual" || string(r.Body) != `{"Verb":"virtual","Object":"Foo Bar@Example.COM"}` {
		t.Errorf("backend request: path %q body %s", r.Path, r.Body)
	}
}

// TestPostmapBackendFailures: every backend failure is a temporary error
// for postfix, never "not found".
func TestPostmapBackendFailures(t *testing.T) {
	requireTool(t, "postmap")
	for name, fault := range backendFaults {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fb := newFakeBackend(t, fault)
			dir := testDir(t)
			d := startDaemon(t, dir, "postfix", fb.BaseURL())
			pd := postmapDir(t, dir)
			begin := time.Now()
			out, errOut, code := postmapQuery(t, pd, d.Socket, "virtual", "alice@example.org")
			if code != 1 || out != "" || !strings.Contains(errOut, "temporary error") {
				t.Errorf("exit %d, stdout %q, stderr %q; want a temporary error", code, out, errOut)
			}
			// Timeout is 2s and postmap's fatal exit sleeps about 1s; a
			// hang would last until postfix's own 100s limit.
			if el := time.Since(begin); el > 8*time.Second {
				t.Errorf("took %s", el)
			}
		})
	}
	t.Run("down", func(t *testing.T) {
		t.Parallel()
		dir := testDir(t)
		d := startDaemon(t, dir, "postfix", fmt.Sprintf("http://127.0.0.1:%d/", freePort(t)))
		_, errOut, code := postmapQuery(t, postmapDir(t, dir), d.Socket, "virtual", "alice@example.org")
		if code != 1 || !strings.Contains(errOut, "temporary error") {
			t.Errorf("backend down: exit %d, stderr %q", code, errOut)
		}
	})
}

// TestPostfixShutdown: SIGTERM ends the daemon with status 0 and removes
// the socket it created.
func TestPostfixShutdown(t *testing.T) {
	checkShutdown(t, "postfix", "")
}

// postfixInstance is a private postfix (master + smtpd + proxymap) whose
// virtual alias table is shitenno.
type postfixInstance struct {
	dir  string
	port int
}

// startPostfix starts the private postfix; extra lines are appended to
// its main.cf (later settings win in main.cf), or to master.cf when they
// start with masterCFLine.
func startPostfix(t *testing.T, dir, sock string, extra ...string) *postfixInstance {
	t.Helper()
	postconf := requireTool(t, "postconf")
	requireTool(t, "postfix")
	pf := &postfixInstance{dir: filepath.Join(dir, "pf"), port: freePort(t)}
	for _, sub := range []string{"", "queue", "data", "log"} {
		if err := os.MkdirAll(filepath.Join(pf.dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mainExtra, masterExtra := splitCF(extra)
	mainCF := postfixMainCF(pf.dir, sock) + mainExtra
	masterCF := postfixMasterCF(pf.port) + masterExtra
	// postfix wants its data directory owned by mail_owner.
	if out, errOut, code := run(t, 10*time.Second, "chown", "postfix", filepath.Join(pf.dir, "data")); code != 0 {
		t.Fatalf("chown postfix data: %s %s", out, errOut)
	}
	for name, body := range map[string]string{"main.cf": mainCF, "master.cf": masterCF} {
		if err := os.WriteFile(filepath.Join(pf.dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code := run(t, 10*time.Second, postconf, "-c", pf.dir, "-h", "daemon_directory")
	if code != 0 {
		t.Fatalf("postconf -h daemon_directory: %s", errOut)
	}
	master := filepath.Join(strings.TrimSpace(out), "master")
	if out, errOut, code := run(t, 60*time.Second, requireTool(t, "postfix"), "-c", pf.dir, "check"); code != 0 {
		t.Fatalf("postfix check: %s %s", out, errOut)
	}
	start(t, master, "-c", pf.dir, "-d")
	logOnFailure(t, "postfix log", filepath.Join(pf.dir, "log", "postfix.log"), 0)
	waitDial(t, "tcp", fmt.Sprintf("127.0.0.1:%d", pf.port))
	return pf
}

// masterCFLine marks an extra argument of startPostfix that is a
// master.cf line rather than main.cf text.
const masterCFLine = "master.cf: "

// splitCF sorts startPostfix's extra arguments into main.cf text and
// master.cf lines.
func splitCF(extra []string) (mainCF, masterCF string) {
	for _, e := range extra {
		if line, ok := strings.CutPrefix(e, masterCFLine); ok {
			masterCF += line + "\n"
		} else {
			mainCF += e
		}
	}
	return mainCF, masterCF
}

// postfixMainCF is the main.cf of a private test instance in dir whose
// smtpd checks recipients through proxy:socketmap on sock (TESTING.md:
// 127.0.0.1 stays out of mynetworks, or every RCPT would be a relay 250).
func postfixMainCF(dir, sock string) string {
	return fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
maillog_file = %[1]s/log/postfix.log
maillog_file_prefixes = %[1]s/log
myhostname = mx.test.invalid
mydomain = test.invalid
mydestination =
mynetworks = 192.0.2.0/24
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtpd_peername_lookup = no
smtpd_banner = $myhostname ESMTP test
virtual_alias_domains = example.org
virtual_alias_maps = proxy:socketmap:unix:%[2]s:virtual
smtpd_relay_restrictions = reject_unauth_destination
smtputf8_enable = no
biff = no
`, dir, sock)
}

// postfixMasterCF is its master.cf: smtpd on 127.0.0.1:port, every
// service unchrooted (the sockets and files live outside any chroot).
func postfixMasterCF(port int) string {
	return fmt.Sprintf(`127.0.0.1:%d inet n - n - - smtpd
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
local     unix - n n - - local
virtual   unix - n n - - virtual
lmtp      unix - - n - - lmtp
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`, port)
}

// rcpt opens an SMTP session and returns the reply code to RCPT TO.
func (pf *postfixInstance) rcpt(t *testing.T, to string) (int, string) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", pf.port), 10*time.Second)
	if err != nil {
		t.Fatalf("smtp dial: %v", err)
	}
	// net/smtp sets no deadlines: a stuck smtpd must fail the test.
	_ = nc.SetDeadline(time.Now().Add(time.Minute))
	c, err := smtp.NewClient(nc, "127.0.0.1")
	if err != nil {
		nc.Close()
		t.Fatalf("smtp banner: %v", err)
	}
	defer c.Close()
	if err := c.Hello("client.test.invalid"); err != nil {
		t.Fatalf("EHLO: %v", err)
	}
	if err := c.Mail("sender@test.invalid"); err != nil {
		t.Fatalf("MAIL FROM: %v", err)
	}
	err = c.Rcpt(to)
	if err == nil {
		_ = c.Reset()
		return 250, ""
	}
	if te, ok := err.(*textproto.Error); ok {
		return te.Code, te.Msg
	}
	t.Fatalf("RCPT TO: %v", err)
	return 0, ""
}

// TestPostfixSMTPD runs a private postfix whose smtpd validates
// recipients through proxy:socketmap → shitenno → backend.
func TestPostfixSMTPD(t *testing.T) {
	needRoot(t, "the private postfix")
	fb := newFakeBackend(t, nil)
	aliases := map[string]string{"alice@example.org": "alice@example.net"}
	fb.SetAnswer(func(r BackendRequest) (int, string) {
		var key string
		_ = json.Unmarshal(r.Object, &key)
		if v, ok := aliases[strings.ToLower(key)]; ok {
			return 200, okReply(r, "OK", v)
		}
		return 200, okReply(r, "KO", nil)
	})
	dir := testDir(t)
	d := startDaemon(t, dir, "postfix", fb.BaseURL())
	pf := startPostfix(t, dir, d.Socket)

	if code, msg := pf.rcpt(t, "alice@example.org"); code != 250 {
		t.Errorf("known alias: %d %s; want 250", code, msg)
	}
	if code, msg := pf.rcpt(t, "nobody@example.org"); code != 550 || !strings.Contains(msg, "5.1.1") {
		t.Errorf("unknown user: %d %s; want 550 5.1.1", code, msg)
	}
	fb.SetAnswer(func(r BackendRequest) (int, string) { return 500, "down" })
	if code, msg := pf.rcpt(t, "alice@example.org"); code != 451 || !strings.Contains(msg, "4.3.0") {
		t.Errorf("backend failure: %d %s; want 451 4.3.0", code, msg)
	}
}
