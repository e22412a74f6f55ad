package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Exit statuses of doveadm (sysexits.h), PROTOCOLS.md §3.8.
const (
	exOK       = 0
	exNoUser   = 67 // doveadm user: unknown user
	exTempFail = 75 // doveadm user: temporary failure
	exNoPerm   = 77 // doveadm auth test: any authentication failure
)

// TestDovecotExampleBackend is the README's `make run` path: the example
// backend's users through shitenno-dovecot, checked with doveadm.
func TestDovecotExampleBackend(t *testing.T) {
	requireTool(t, "dovecot")
	dir := testDir(t)
	d := startDaemon(t, dir, "dovecot", exampleBackend(t))
	dv := startDovecot(t, dir, d.Socket)

	// alice's password is stored as {SHA256}: dovecot verifies it.
	if out, code := dv.authTest(t, "alice@example.org", "secret"); code != exOK || !strings.Contains(out, "auth succeeded") {
		t.Errorf("auth test alice: exit %d\n%s", code, out)
	}
	if out, code := dv.authTest(t, "bob@example.org", "bob's password"); code != exOK {
		t.Errorf("auth test bob: exit %d\n%s", code, out)
	}
	out, code := dv.user(t, "alice@example.org")
	if code != exOK || !strings.Contains(out, "/var/vmail/example.org/alice") || !strings.Contains(out, "*:storage=1G") {
		t.Errorf("user alice: exit %d\n%s", code, out)
	}
	// auth_username_format lowercases by default: the backend sees the
	// canonical name.
	if out, code := dv.user(t, "Alice@Example.ORG"); code != exOK {
		t.Errorf("user Alice@Example.ORG: exit %d\n%s", code, out)
	}
	if out, code := dv.user(t, "nobody@example.org"); code != exNoUser {
		t.Errorf("user nobody: exit %d, want %d\n%s", code, exNoUser, out)
	}
}

// TestDovecotAuth covers the passdb/userdb outcomes dovecot can tell
// apart, a real IMAP login, and what the backend receives.
func TestDovecotAuth(t *testing.T) {
	requireTool(t, "dovecot")
	dir := testDir(t)
	home := filepath.Join(dir, "dovecot", "home")
	users := map[string]string{"alice@example.org": "secret", "odd@example.org": "p a%ss\"w\\d é€"}
	fb := newFakeBackend(t, dovecotUsers(users, home))
	d := startDaemon(t, dir, "dovecot", fb.BaseURL())
	dv := startDovecot(t, dir, d.Socket)

	t.Run("auth test good password", func(t *testing.T) {
		out, code := dv.authTest(t, "alice@example.org", "secret")
		if code != exOK || !strings.Contains(out, "auth succeeded") {
			t.Errorf("exit %d\n%s", code, out)
		}
	})
	t.Run("auth test wrong password", func(t *testing.T) {
		out, code := dv.authTest(t, "alice@example.org", "wrong")
		if code != exNoPerm || !strings.Contains(out, "auth failed") || strings.Contains(out, "temp_fail") {
			t.Errorf("exit %d, want %d without temp_fail\n%s", code, exNoPerm, out)
		}
	})
	t.Run("auth test unknown user", func(t *testing.T) {
		out, code := dv.authTest(t, "nobody@example.org", "secret")
		if code != exNoPerm || strings.Contains(out, "temp_fail") {
			t.Errorf("exit %d, want %d without temp_fail\n%s", code, exNoPerm, out)
		}
	})
	t.Run("password with space, quote, backslash, UTF-8", func(t *testing.T) {
		// (dovecot itself refuses passwords with a tab before any lookup.)
		out, code := dv.authTest(t, "odd@example.org", users["odd@example.org"])
		if code != exOK {
			t.Errorf("exit %d\n%s", code, out)
		}
	})
	t.Run("user found", func(t *testing.T) {
		out, code := dv.user(t, "alice@example.org")
		if code != exOK || !strings.Contains(out, filepath.Join(home, "alice@example.org")) || !strings.Contains(out, "65534") {
			t.Errorf("exit %d\n%s", code, out)
		}
	})
	t.Run("user not found", func(t *testing.T) {
		out, code := dv.user(t, "nobody@example.org")
		if code != exNoUser || !strings.Contains(out, "doesn't exist") {
			t.Errorf("exit %d, want %d\n%s", code, exNoUser, out)
		}
	})
	t.Run("user iteration is empty", func(t *testing.T) {
		// The documented iterate_disable = yes: doveadm user '*' lists
		// nothing and does not hang.
		out, errOut, code := run(t, 30*time.Second, dv.doveadm, "-c", dv.conf, "user", "*")
		if strings.TrimSpace(out) != "" {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
	t.Run("imap login ok", func(t *testing.T) {
		if line := dv.imapLogin(t, "127.0.0.11", "alice@example.org", "secret"); !strings.HasPrefix(line, "a1 OK") {
			t.Errorf("LOGIN: %s", line)
		}
	})
	t.Run("imap login no", func(t *testing.T) {
		line := dv.imapLogin(t, "127.0.0.12", "alice@example.org", "wrong")
		if !strings.HasPrefix(line, "a1 NO") || !strings.Contains(line, "AUTHENTICATIONFAILED") {
			t.Errorf("LOGIN: %s", line)
		}
	})
	t.Run("backend request", func(t *testing.T) {
		// The contract, byte for byte: the first thing dovecot asked about
		// alice was her passdb entry.
		want := `{"Verb":"passdb","Object":{"Context":"shared","Object":"alice@example.org"}}`
		for _, r := range fb.Requests() {
			if r.Verb != "passdb" {
				continue
			}
			if r.Path != "/passdb" || string(r.Body) != want {
				t.Errorf("first passdb request: path %q body %s\nwant /passdb %s", r.Path, r.Body, want)
			}
			return
		}
		t.Error("the backend received no passdb request")
	})
}

// TestDovecotBackendFailures: every backend failure is a temporary failure
// for dovecot (temp_fail / 75), never "unknown user" or a wrong password.
func TestDovecotBackendFailures(t *testing.T) {
	requireTool(t, "dovecot")
	dir := testDir(t)
	fb := newFakeBackend(t, nil)
	d := startDaemon(t, dir, "dovecot", fb.BaseURL())
	dv := startDovecot(t, dir, d.Socket)

	faults := map[string]func(BackendRequest) (int, string){
		"nested data": func(r BackendRequest) (int, string) {
			return 200, okReply(r, "OK", map[string]any{"password": map[string]string{"x": "y"}})
		},
		"string data": func(r BackendRequest) (int, string) { return 200, okReply(r, "OK", "{PLAIN}secret") },
	}
	for name, f := range backendFaults {
		faults[name] = f
	}
	for name, fault := range faults {
		t.Run(name, func(t *testing.T) {
			fb.SetAnswer(fault)
			begin := time.Now()
			out, code := dv.authTest(t, "alice@example.org", "secret")
			if code != exNoPerm || !strings.Contains(out, "temp_fail") {
				t.Errorf("auth test: exit %d, want %d with code=temp_fail\n%s", code, exNoPerm, out)
			}
			out, code = dv.user(t, "alice@example.org")
			if code != exTempFail {
				t.Errorf("user: exit %d, want %d\n%s", code, exTempFail, out)
			}
			// Timeout is 2 s; a hang must not last until dovecot's own 30 s.
			if el := time.Since(begin); el > 15*time.Second {
				t.Errorf("took %s", el)
			}
		})
	}
	t.Run("imap login with backend down", func(t *testing.T) {
		fb.SetAnswer(backendFaults["http500"])
		line := dv.imapLogin(t, "127.0.0.13", "alice@example.org", "secret")
		if !strings.HasPrefix(line, "a1 NO") || !strings.Contains(line, "UNAVAILABLE") {
			t.Errorf("LOGIN: %s; want NO [UNAVAILABLE]", line)
		}
	})
}

// TestDovecotReadOnlyDict drives the proxy dict client of doveadm directly:
// a commit is refused with shitenno's reason, an iteration is empty, a
// lookup works.
func TestDovecotReadOnlyDict(t *testing.T) {
	doveadm := requireTool(t, "doveadm")
	dir := testDir(t)
	fb := newFakeBackend(t, func(r BackendRequest) (int, string) {
		return 200, okReply(r, "OK", map[string]any{"v": "1"})
	})
	d := startDaemon(t, dir, "dovecot", fb.BaseURL())
	uri := "proxy:" + d.Socket + ":somewhere"
	// A config of its own: the machine's /etc/dovecot plays no part.
	conf := filepath.Join(dir, "doveadm.conf")
	if err := os.WriteFile(conf, []byte("base_dir = "+dir+"\nstate_dir = "+dir+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	doveadmDict := func(args ...string) (string, string, int) {
		return run(t, 30*time.Second, doveadm, append([]string{"-c", conf, "dict"}, args...)...)
	}

	out, errOut, code := doveadmDict("set", uri, "shared/passdb/x", "y")
	if code == exOK || !strings.Contains(out+errOut, "read-only") {
		t.Errorf("dict set: exit %d, stdout %q, stderr %q; want a failure naming the read-only dict", code, out, errOut)
	}
	// I: an empty iteration, answered at once.
	out, errOut, code = doveadmDict("iter", uri, "shared/passdb/")
	// doveadm prints its table header even for no rows.
	if code != exOK || strings.TrimPrefix(out, "key\tvalue\n") != "" {
		t.Errorf("dict iter: exit %d, stdout %q, stderr %q; want an empty list", code, out, errOut)
	}
	out, errOut, code = doveadmDict("get", uri, "shared/passdb/x")
	if code != exOK || strings.TrimSpace(out) != `{"v":"1"}` {
		t.Errorf("dict get: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	var o struct{ Context, Object string }
	reqs := fb.Requests()
	if len(reqs) != 1 || json.Unmarshal(reqs[0].Object, &o) != nil || o.Object != "x" || reqs[0].Verb != "passdb" {
		t.Errorf("backend requests: %+v", reqs)
	}
}

// TestDovecotShutdown: SIGTERM ends the daemon with status 0 and removes
// the socket it created, even with a client connected.
func TestDovecotShutdown(t *testing.T) {
	checkShutdown(t, "dovecot", "H3\t2\t0\t\tsomewhere\n")
}
