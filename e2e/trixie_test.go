package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Debian 13 users run postfix 3.10 and nginx 1.26 (PROTOCOLS.md §7): these
// tests run them from the trixie root against the real shitenno-postfix and
// shitenno-nginx on the host, whose sockets live inside the root.

// trixieRequireVersion fails when the root's peer is not the release the
// test claims to cover (a mirror serving another suite would silently test
// the wrong thing).
func trixieRequireVersion(t *testing.T, root, want string, args ...string) {
	t.Helper()
	out, errOut, code := trixieRun(t, root, 30*time.Second, args...)
	if got := strings.TrimSpace(out + errOut); code != 0 || !strings.Contains(got, want) {
		t.Fatalf("%s: exit %d, %q; want %s", strings.Join(args, " "), code, got, want)
	}
}

// TestTrixiePostmap runs postfix 3.10's postmap against shitenno-postfix:
// found, not found, backend failure, and keys and values byte for byte.
func TestTrixiePostmap(t *testing.T) {
	t.Parallel()
	root := trixieRoot(t)
	trixieRequireVersion(t, root, "mail_version = 3.10.", "postconf", "-d", "mail_version")
	big := strings.Repeat("0123456789", 5000)
	fb := virtualBackend(t, func(r BackendRequest, key string) (int, string) {
		switch key {
		case "big":
			return 200, okReply(r, "OK", big)
		case "nobody@example.org":
			return 200, okReply(r, "KO", nil)
		case "fail@example.org":
			return 500, `{"error":"boom"}`
		case "empty@example.org":
			return 200, okReply(r, "OK", "")
		}
		return 200, okReply(r, "OK", "got:"+key)
	})
	dir := trixieDir(t, root)
	d := startDaemon(t, dir, "postfix", fb.BaseURL())
	pd := trixiePostmapDir(t, root, dir)

	t.Run("found", func(t *testing.T) {
		out, errOut, code := trixiePostmap(t, root, pd, d.Socket, "virtual", "alice@example.org")
		if code != 0 || out != "got:alice@example.org\n" {
			t.Errorf("exit %d, stdout %q, stderr %q; want 0 and the value", code, out, errOut)
		}
	})
	t.Run("not found", func(t *testing.T) {
		out, errOut, code := trixiePostmap(t, root, pd, d.Socket, "virtual", "nobody@example.org")
		if code != 1 || out != "" || errOut != "" {
			t.Errorf("exit %d, stdout %q, stderr %q; want 1 and no output", code, out, errOut)
		}
	})
	t.Run("keys byte-exact", func(t *testing.T) {
		for _, key := range []string{"Foo Bar@Example.COM", "josé@exämple.org", "a b  c"} {
			out, errOut, code := trixiePostmap(t, root, pd, d.Socket, "virtual", key)
			if code != 0 || out != "got:"+key+"\n" {
				t.Errorf("key %q: exit %d, stdout %q, stderr %q", key, code, out, errOut)
			}
		}
		want := `{"Verb":"virtual","Object":"josé@exämple.org"}`
		found := false
		for _, r := range fb.Requests() {
			found = found || string(r.Body) == want
		}
		if !found {
			t.Errorf("backend never received %s", want)
		}
	})
	t.Run("50 kB value", func(t *testing.T) {
		out, errOut, code := trixiePostmap(t, root, pd, d.Socket, "virtual", "big")
		if code != 0 || out != big+"\n" {
			t.Errorf("exit %d, %d bytes out (want %d), stderr %q", code, len(out), len(big)+1, errOut)
		}
	})
	// Each failure costs postmap's fatal-exit second: run them side by side.
	t.Run("failures", func(t *testing.T) {
		t.Run("backend failure is temporary", func(t *testing.T) {
			t.Parallel()
			// 3.10 changed the "query error:" suffix (stale errno text),
			// not the warning line or the exit status (PROTOCOLS.md §7.1).
			out, errOut, code := trixiePostmap(t, root, pd, d.Socket, "virtual", "fail@example.org")
			if code != 1 || out != "" || !strings.Contains(errOut, "temporary error") {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1 with a temporary error", code, out, errOut)
			}
		})
		t.Run("empty Data is temporary, never a bare OK", func(t *testing.T) {
			t.Parallel()
			// From 3.10.9 a bare "OK" (and "OK ") is "found, empty": a
			// configuration error, not "not found" (PROTOCOLS.md §7.1).
			out, errOut, code := trixiePostmap(t, root, pd, d.Socket, "virtual", "empty@example.org")
			if code != 1 || out != "" || !strings.Contains(errOut, "temporary error") ||
				strings.Contains(errOut, "result is not allowed") {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1 with a temporary error", code, out, errOut)
			}
		})
		t.Run("lowered socketmap_max_reply_size", func(t *testing.T) {
			t.Parallel()
			// Postfix >= 3.10 makes the reply limit configurable; a value
			// longer than a lowered limit is a lookup error (retry), not
			// "not found": shitenno's own cap is the default 100000.
			low := filepath.Dir(trixieWrite(t, root, dir, "postmap-low/main.cf",
				"compatibility_level = 3.6\nsocketmap_max_reply_size = 20\n"))
			out, errOut, code := trixiePostmap(t, root, low, d.Socket, "virtual", "alice@example.org")
			if code != 1 || out != "" || !strings.Contains(errOut, "input exceeds size limit") {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1 with input exceeds size limit", code, out, errOut)
			}
		})
	})
}

// TestTrixiePostfixSMTPD runs a private postfix 3.10 whose smtpd checks
// recipients through proxy:socketmap → shitenno-postfix → backend.
func TestTrixiePostfixSMTPD(t *testing.T) {
	t.Parallel()
	root := trixieRoot(t)
	fb := newFakeBackend(t, func(r BackendRequest) (int, string) {
		var key string
		_ = json.Unmarshal(r.Object, &key)
		switch strings.ToLower(key) {
		case "alice@example.org":
			return 200, okReply(r, "OK", "alice@example.net")
		case "fail@example.org":
			return 500, `{"error":"boom"}`
		}
		return 200, okReply(r, "KO", nil)
	})
	dir := trixieDir(t, root)
	d := startDaemon(t, dir, "postfix", fb.BaseURL())
	pf := startTrixiePostfix(t, root, dir, d.Socket)

	if code, msg := pf.rcpt(t, "alice@example.org"); code != 250 {
		t.Errorf("known alias: %d %s; want 250", code, msg)
	}
	if code, msg := pf.rcpt(t, "nobody@example.org"); code != 550 || !strings.Contains(msg, "5.1.1") {
		t.Errorf("unknown user: %d %s; want 550 5.1.1", code, msg)
	}
	if code, msg := pf.rcpt(t, "fail@example.org"); code != 451 || !strings.Contains(msg, "4.3.0") {
		t.Errorf("backend failure: %d %s; want 451 4.3.0", code, msg)
	}
}

// TestTrixieNginx runs nginx 1.26's mail proxy (the documented mail{} block
// of docs/nginx.md, module loaded through Debian's modules-enabled) against
// shitenno-nginx's unix socket, with a test IMAP server as the upstream.
func TestTrixieNginx(t *testing.T) {
	t.Parallel()
	root := trixieRoot(t)
	trixieRequireVersion(t, root, "nginx/1.26.", "nginx", "-v")
	dir := trixieDir(t, root)
	up := startUpstream(t, "imap")
	users := map[string]string{"alice": "secret", "utf8": nginxUsersPlain["utf8"]}
	fb := newFakeBackend(t, nginxUsers(t, users, map[string]int{"imap": up.port}, nil))
	d := startDaemon(t, dir, "nginx", fb.BaseURL())
	imap, pop3, smtp := freePort(t), freePort(t), freePort(t)
	authHTTP := "unix:" + trixieIn(root, d.Socket) + ":/auth"
	startTrixieNginx(t, root, dir, mailServers(t, authHTTP, imap, pop3, smtp), imap, pop3, smtp)
	s := &nginxSetup{dir: dir, backend: fb, daemon: d, upstreams: map[string]*mailUpstream{"imap": up}, imap: imap}

	t.Run("good login is proxied", func(t *testing.T) {
		t.Parallel()
		for user, pass := range users {
			imapLoginOK(t, s, user, pass)
			if o := s.lastRequestFor(t, user); o["Auth-Pass"] != pass || o["Auth-Protocol"] != "imap" {
				t.Errorf("backend Object %q", o)
			}
			found := false
			for _, l := range up.Logins() {
				found = found || l == upLogin{user, pass}
			}
			if !found {
				t.Errorf("upstream never saw %q/%q: %q", user, pass, up.Logins())
			}
		}
	})
	// Both answers are held for Auth-Wait (3 s): run them side by side.
	for _, tc := range []struct{ name, user, want string }{
		{"bad login is NO", "alice", "a1 NO Invalid login or password"},
		{"backend failure is NO, temporary", "fault-http500", "a1 NO Temporary server problem, try again later"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dialMail(t, imap)
			if got := c.imapLogin("a1", tc.user, "wrong"); last(got) != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
