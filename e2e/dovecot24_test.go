package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Users the dovecot 2.4 tests look up. The escaped one has a TAB, which
// the dict protocol escapes and auth_username_chars = "" lets through.
const (
	d24Good    = "good@example.org"
	d24Unknown = "unknown@example.org"
	d24Fail    = "fail@example.org"
	d24Hang    = "hang@example.org"
	d24Escaped = "tab\tuser@example.org"
)

// d24Backend answers like a real backend: passdb gives the password,
// userdb the mail fields (numbers and booleans included), a failing user
// gets HTTP 500, a hanging one no answer at all.
func d24Backend(t *testing.T, home string) *FakeBackend {
	return newFakeBackend(t, func(r BackendRequest) (int, string) {
		var obj struct{ Context, Object string }
		if err := json.Unmarshal(r.Object, &obj); err != nil || obj.Context != "shared" {
			return 400, `{"error":"bad object"}`
		}
		switch obj.Object {
		case d24Good, d24Escaped:
			if r.Verb == "passdb" {
				return 200, okReply(r, "OK", map[string]any{"password": "{PLAIN}secret"})
			}
			return 200, okReply(r, "OK", map[string]any{
				"uid": 65534, "gid": 65534, "home": home + "/good",
				"ratio": 1.5, "flag": true, "big": int64(12345678901),
			})
		case d24Fail:
			return 500, `{"error":"boom"}`
		case d24Hang:
			return 0, ""
		}
		return 200, okReply(r, "KO", nil)
	})
}

// d24Requests returns the bodies the backend received for verb and user.
func d24Requests(fb *FakeBackend, verb, user string) [][]byte {
	var out [][]byte
	for _, r := range fb.Requests() {
		var obj struct{ Object string }
		if r.Verb == verb && json.Unmarshal(r.Object, &obj) == nil && obj.Object == user {
			out = append(out, r.Body)
		}
	}
	return out
}

// d24CheckBody asserts that the backend received exactly the request
// dovecot 2.3's dict driver causes, on the path RemoteURL + verb.
func d24CheckBody(t *testing.T, fb *FakeBackend, verb, user string) {
	t.Helper()
	obj, _ := json.Marshal(user)
	want := fmt.Sprintf(`{"Verb":%q,"Object":{"Context":"shared","Object":%s}}`, verb, obj)
	bodies := d24Requests(fb, verb, user)
	if len(bodies) == 0 {
		var seen []string
		for _, r := range fb.Requests() {
			seen = append(seen, string(bytes.TrimSpace(r.Body)))
		}
		t.Fatalf("backend received no %s request for %q; it received:\n%s", verb, user, strings.Join(seen, "\n"))
	}
	for _, b := range bodies {
		if got := string(bytes.TrimSpace(b)); got != want {
			t.Errorf("backend body = %s, want %s", got, want)
		}
	}
	for _, r := range fb.Requests() {
		if r.Verb == verb && r.Path != "/"+verb {
			t.Errorf("backend path = %q, want /%s", r.Path, verb)
		}
	}
}

// TestDovecot24Lua runs dovecot 2.4.1 (Debian 13) with the shipped
// shitenno.lua and example configuration against the real
// shitenno-dovecot and a recording backend.
func TestDovecot24Lua(t *testing.T) {
	t.Parallel()
	root := trixieRoot(t)
	dir := trixieDir(t, root)
	d := &dovecot24{root: root}
	fb := d24Backend(t, d.in(filepath.Join(dir, "home")))
	sd := startDaemon(t, dir, "dovecot", fb.BaseURL()) // Timeout = 2s
	dv := startDovecot24(t, root, dir, dovecot24Opts{Socket: sd.Socket, LuaTimeout: "3"})

	t.Run("AuthTestGood", func(t *testing.T) {
		out, code := dv.authTest(t, d24Good, "secret")
		if code != 0 || !strings.Contains(out, "auth succeeded") {
			t.Errorf("doveadm auth test: exit %d\n%s", code, out)
		}
		d24CheckBody(t, fb, "passdb", d24Good)
	})
	t.Run("AuthTestWrongPassword", func(t *testing.T) {
		out, code := dv.authTest(t, d24Good, "wrong")
		if code != 77 || strings.Contains(out, "temp_fail") {
			t.Errorf("doveadm auth test: exit %d, want 77 without temp_fail\n%s", code, out)
		}
	})
	t.Run("AuthTestUnknownUser", func(t *testing.T) {
		out, code := dv.authTest(t, d24Unknown, "secret")
		if code != 77 || strings.Contains(out, "temp_fail") {
			t.Errorf("doveadm auth test: exit %d, want 77 without temp_fail\n%s", code, out)
		}
		d24CheckBody(t, fb, "passdb", d24Unknown)
	})
	t.Run("AuthTestBackendFailure", func(t *testing.T) {
		// dovecot 2.4.1 exits 75 here (2.3 used 77); code=temp_fail is
		// what marks the temporary failure in both.
		out, code := dv.authTest(t, d24Fail, "secret")
		if code != 75 || !strings.Contains(out, "code=temp_fail") {
			t.Errorf("doveadm auth test: exit %d, want 75 with code=temp_fail\n%s", code, out)
		}
	})
	t.Run("AuthTestBackendHang", func(t *testing.T) {
		// shitenno's Timeout (2s) fires before the script's (3s).
		t0 := time.Now()
		out, code := dv.authTest(t, d24Hang, "secret")
		if code != 75 || !strings.Contains(out, "code=temp_fail") {
			t.Errorf("doveadm auth test: exit %d, want 75 with code=temp_fail\n%s", code, out)
		}
		if el := time.Since(t0); el > 15*time.Second {
			t.Errorf("hanging backend took %s to surface", el)
		}
	})
	t.Run("UserFound", func(t *testing.T) {
		out, code := dv.userLookup(t, d24Good)
		if code != 0 {
			t.Fatalf("doveadm user: exit %d\n%s", code, out)
		}
		// Numbers keep their JSON text (dovecot itself would truncate
		// 1.5 to an integer), booleans become dovecot's yes/no.
		for _, f := range []string{"uid\t65534", "gid\t65534", "ratio\t1.5", "big\t12345678901", "flag\tyes", "home\t" + dv.in(dir) + "/home/good"} {
			if !strings.Contains(out, f+"\n") {
				t.Errorf("doveadm user output lacks %q:\n%s", f, out)
			}
		}
		d24CheckBody(t, fb, "userdb", d24Good)
	})
	t.Run("UserUnknown", func(t *testing.T) {
		if out, code := dv.userLookup(t, d24Unknown); code != 67 {
			t.Errorf("doveadm user: exit %d, want 67\n%s", code, out)
		}
	})
	t.Run("UserBackendFailure", func(t *testing.T) {
		if out, code := dv.userLookup(t, d24Fail); code != 75 {
			t.Errorf("doveadm user: exit %d, want 75\n%s", code, out)
		}
	})
	t.Run("AuthTestEscaped", func(t *testing.T) {
		// The TAB travels tab-escaped in both the key and the user field;
		// the backend must see the raw byte. (doveadm auth test carries it
		// in SASL PLAIN; doveadm user cannot pass a TAB to auth.)
		if out, code := dv.authTest(t, d24Escaped, "secret"); code != 0 {
			t.Errorf("doveadm auth test: exit %d\n%s", code, out)
		}
		d24CheckBody(t, fb, "passdb", d24Escaped)
	})
	t.Run("IMAPLogin", func(t *testing.T) {
		if got := dv.imapLogin(t, "127.0.0.2", d24Good, "secret"); !strings.HasPrefix(got, "a1 OK") {
			t.Errorf("LOGIN good: %q", got)
		}
		if got := dv.imapLogin(t, "127.0.0.3", d24Good, "wrong"); !strings.HasPrefix(got, "a1 NO [AUTHENTICATIONFAILED]") {
			t.Errorf("LOGIN wrong password: %q", got)
		}
		if got := dv.imapLogin(t, "127.0.0.6", d24Unknown, "secret"); !strings.HasPrefix(got, "a1 NO [AUTHENTICATIONFAILED]") {
			t.Errorf("LOGIN unknown user: %q", got)
		}
		if got := dv.imapLogin(t, "127.0.0.4", d24Fail, "secret"); !strings.HasPrefix(got, "a1 NO [UNAVAILABLE]") {
			t.Errorf("LOGIN backend failure: %q", got)
		}
	})
	t.Run("DictGet", func(t *testing.T) {
		// dovecot's own 2.4 dict client (hello H4) through the
		// dict proxy { } block of dict-shitenno.2.4.conf.ext.
		before := len(d24Requests(fb, "passdb", d24Good))
		out, errOut, code := dv.doveadm(t, "dict", "get", "mail_attribute", "shared/passdb/"+d24Good)
		if code != 0 || strings.TrimSpace(out) != `{"password":"{PLAIN}secret"}` {
			t.Errorf("doveadm dict get: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if n := len(d24Requests(fb, "passdb", d24Good)); n != before+1 {
			t.Errorf("backend saw %d new requests, want 1", n-before)
		}
		d24CheckBody(t, fb, "passdb", d24Good)
		// With -u the user travels in the lookup's user field too.
		out, errOut, code = dv.doveadm(t, "dict", "get", "-u", d24Good, "mail_attribute", "shared/userdb/"+d24Good)
		if code != 0 || !strings.Contains(out, `"big":12345678901`) {
			t.Errorf("doveadm dict get -u: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if _, errOut, code = dv.doveadm(t, "dict", "get", "mail_attribute", "shared/passdb/"+d24Unknown); code != 68 {
			t.Errorf("doveadm dict get unknown: exit %d, want 68 (%q)", code, errOut)
		}
		if _, errOut, code = dv.doveadm(t, "dict", "get", "mail_attribute", "shared/passdb/"+d24Fail); code != 75 {
			t.Errorf("doveadm dict get failing: exit %d, want 75 (%q)", code, errOut)
		}
		// The configuration-free form documented for operators.
		out, errOut, code = dv.doveadm(t, "-o", "dict=proxy", "-o", "dict_proxy_socket_path="+dv.in(sd.Socket),
			"-o", "dict_proxy_name=shitenno", "dict", "get", "", "shared/passdb/"+d24Good)
		if code != 0 || strings.TrimSpace(out) != `{"password":"{PLAIN}secret"}` {
			t.Errorf("doveadm -o dict=proxy dict get: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
	t.Run("ReconnectAfterRestart", func(t *testing.T) {
		// Warm the auth-worker's persistent connection, restart
		// shitenno-dovecot, then the very next lookup must succeed: the
		// script notices the closed connection and reconnects once.
		if out, code := dv.authTest(t, d24Good, "secret"); code != 0 {
			t.Fatalf("before restart: exit %d\n%s", code, out)
		}
		if err := sd.Stop(syscall.SIGTERM, 10*time.Second); err != nil {
			t.Logf("shitenno-dovecot stop: %v", err)
		}
		sd2 := startDaemon(t, dir, "dovecot", fb.BaseURL())
		if sd2.Socket != sd.Socket {
			t.Fatalf("socket moved: %s != %s", sd2.Socket, sd.Socket)
		}
		if out, code := dv.authTest(t, d24Good, "secret"); code != 0 {
			t.Errorf("first lookup after restart: exit %d\n%s", code, out)
		}
		if out, code := dv.userLookup(t, d24Good); code != 0 {
			t.Errorf("first userdb lookup after restart: exit %d\n%s", code, out)
		}
	})
}

// TestDovecot24ShitennoHangs points the script at a dict server that
// reads but never answers: the lookup must end as a temporary failure
// after the script's own timeout, never as "user unknown".
func TestDovecot24ShitennoHangs(t *testing.T) {
	t.Parallel()
	root := trixieRoot(t)
	dir := trixieDir(t, root)
	sock := filepath.Join(dir, "silent.sock")
	lookups := silentDictServer(t, sock)
	dv := startDovecot24(t, root, dir, dovecot24Opts{Socket: sock, LuaTimeout: "1"})

	t0 := time.Now()
	out, code := dv.authTest(t, d24Good, "secret")
	if code != 75 || !strings.Contains(out, "code=temp_fail") {
		t.Errorf("doveadm auth test: exit %d, want 75 with code=temp_fail\n%s", code, out)
	}
	if el := time.Since(t0); el < time.Second || el > 15*time.Second {
		t.Errorf("took %s, want about the 1s script timeout", el)
	}
	if out, code := dv.userLookup(t, d24Good); code != 75 {
		t.Errorf("doveadm user: exit %d, want 75\n%s", code, out)
	}
	if got := dv.imapLogin(t, "127.0.0.5", d24Good, "secret"); !strings.HasPrefix(got, "a1 NO [UNAVAILABLE]") {
		t.Errorf("LOGIN: %q", got)
	}
	if n := lookups(); n < 3 {
		t.Errorf("silent server saw %d lookups, want at least 3", n)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
	if !strings.Contains(string(log), "shitenno passdb lookup failed: timeout") {
		t.Errorf("dovecot log does not name the timeout")
	}
}

// TestDovecot23ExampleConfig runs the host's dovecot 2.3 (Debian 12) with
// the shipped conf/dovecot/auth-shitenno.2.3.conf.ext and
// dovecot-dict-auth.conf.ext, so that the 2.3 examples stay tested next to
// the 2.4 ones, with the same backend and the same expectations.
func TestDovecot23ExampleConfig(t *testing.T) {
	t.Parallel()
	dovecot := requireTool(t, "dovecot")
	doveadm := requireTool(t, "doveadm")
	if out, _, _ := run(t, 10*time.Second, dovecot, "--version"); !strings.HasPrefix(out, "2.3.") {
		if inCI() {
			t.Fatalf("host dovecot is %q, want 2.3 (Debian 12)", out)
		}
		t.Skipf("host dovecot is %q, not 2.3", out)
	}
	dir := testDir(t)
	fb := d24Backend(t, filepath.Join(dir, "home"))
	sd := startDaemon(t, dir, "dovecot", fb.BaseURL())
	dovecotDirs(t, dir)
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dictExt := write("dovecot-dict-auth.conf.ext", exampleConf(t, "dovecot-dict-auth.conf.ext",
		"proxy:/run/shitenno-dovecot:", "proxy:"+sd.Socket+":"))
	authExt := write("auth-shitenno.conf.ext", exampleConf(t, "auth-shitenno.2.3.conf.ext",
		"/etc/dovecot/dovecot-dict-auth.conf.ext", dictExt))
	port := freePort(t)
	conf := write("dovecot.conf", dovecotConfHead(dir, filepath.Base(dir))+fmt.Sprintf(`disable_plaintext_auth = no
auth_failure_delay = 0
auth_verbose = yes
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = maildir:~/Maildir
service imap-login {
  inet_listener imap {
    port = %[1]d
  }
}
!include %[2]s
`, port, authExt))
	logOnFailure(t, "dovecot 2.3 log", filepath.Join(dir, "dovecot.log"), 20000)
	p := start(t, dovecot, "-F", "-c", conf)
	waitFor(t, 30*time.Second, "dovecot 2.3 auth socket", func() bool {
		if p.Exited() {
			t.Fatalf("dovecot exited: %s", p.Output.String())
		}
		_, err := os.Stat(filepath.Join(dir, "run", "auth-userdb"))
		return err == nil
	})
	adm := func(args ...string) (string, int) {
		out, errOut, code := run(t, time.Minute, doveadm, append([]string{"-c", conf}, args...)...)
		return out + errOut, code
	}
	if out, code := adm("auth", "test", "-x", "no-penalty", d24Good, "secret"); code != 0 {
		t.Errorf("auth test good: exit %d\n%s", code, out)
	}
	d24CheckBody(t, fb, "passdb", d24Good)
	if out, code := adm("auth", "test", "-x", "no-penalty", d24Good, "wrong"); code != 77 || strings.Contains(out, "temp_fail") {
		t.Errorf("auth test wrong password: exit %d\n%s", code, out)
	}
	if out, code := adm("auth", "test", "-x", "no-penalty", d24Fail, "secret"); code != 77 || !strings.Contains(out, "code=temp_fail") {
		t.Errorf("auth test backend failure: exit %d\n%s", code, out)
	}
	out, code := adm("user", d24Good)
	if code != 0 || !strings.Contains(out, "ratio\t1.5\n") || !strings.Contains(out, "big\t12345678901\n") {
		t.Errorf("user good: exit %d\n%s", code, out)
	}
	d24CheckBody(t, fb, "userdb", d24Good)
	if out, code := adm("user", d24Unknown); code != 67 {
		t.Errorf("user unknown: exit %d\n%s", code, out)
	}
	if out, code := adm("user", d24Fail); code != 75 {
		t.Errorf("user backend failure: exit %d\n%s", code, out)
	}
}

// d24Esc tab-escapes s like dovecot's str_append_tabescaped.
func d24Esc(s string) string {
	return strings.NewReplacer("\x01", "\x011", "\t", "\x01t", "\n", "\x01n", "\r", "\x01r", "\x00", "\x010").Replace(s)
}

// TestDovecot24LuaReplies feeds the script reply lines shitenno itself
// never sends (a scripted dict server), with both JSON decoders: every
// malformed or unexpected reply must become a temporary failure, never an
// unknown user, and odd but valid forms must still work.
func TestDovecot24LuaReplies(t *testing.T) {
	t.Parallel()
	root := trixieRoot(t)
	for _, decoder := range []string{"cjson", "dkjson"} {
		t.Run(decoder, func(t *testing.T) {
			t.Parallel()
			dir := trixieDir(t, root)
			home := "/" + strings.TrimPrefix(strings.TrimPrefix(dir, root), "/") + "/home/x"
			base := fmt.Sprintf(`"uid":65534,"gid":65534,"home":%q`, home)
			sock := filepath.Join(dir, "scripted.sock")
			counts := scriptedDictServer(t, sock, map[string]string{
				// Only scalars pass: null, arrays and objects are dropped.
				"mixed": "O" + d24Esc(`{`+base+`,"s":"x y","f":false,"n":null,"arr":[1],"obj":{"a":1}}`),
				// Dovecot's own server appends timing fields.
				"timing": "O" + d24Esc(`{`+base+`}`) + "\t1\t2\t3\t4",
				// An escaped TAB between members: valid only once unescaped.
				"tabbed": "O" + d24Esc("{"+base+",\t\"t\":\"ok\"}"),
				// Several values: the first one counts.
				"multi":    "M" + d24Esc(d24Esc(`{`+base+`,"which":"first"}`)+"\t"+d24Esc(`{"which":"second"}`)),
				"badjson":  "O" + d24Esc(`{`+base),
				"string":   "O" + d24Esc(`"just a string"`),
				"array":    "O" + d24Esc(`[1,2]`),
				"empty":    "O",
				"trailing": "O" + d24Esc(`{`+base+`} x`),
				"fail":     "F",
				"letter":   "Zwhat",
				"long":     "O" + d24Esc(`{`+base+`,"pad":"`+strings.Repeat("x", 70000)+`"}`),
			})
			dv := startDovecot24(t, root, dir, dovecot24Opts{Socket: sock, LuaTimeout: "3", JSON: decoder, Extra: "sockett = /typo"})

			// One persistent connection per auth-worker Lua state: a
			// series of lookups must not open a connection each.
			for i := 0; i < 5; i++ {
				if out, code := dv.userLookup(t, "timing"); code != 0 {
					t.Fatalf("timing: exit %d\n%s", code, out)
				}
			}
			if conns, lookups := counts(); lookups != 5 || conns > 2 {
				t.Errorf("5 lookups used %d connections for %d lookups; want one kept open", conns, lookups)
			}

			ok := map[string][]string{
				"mixed":  {"s\tx y\n", "f\tno\n"},
				"timing": {"uid\t65534\n"},
				"tabbed": {"t\tok\n"},
				"multi":  {"which\tfirst\n"},
			}
			for user, want := range ok {
				out, code := dv.userLookup(t, user)
				if code != 0 {
					t.Errorf("%s: exit %d\n%s", user, code, out)
					continue
				}
				for _, w := range want {
					if !strings.Contains(out, w) {
						t.Errorf("%s: output lacks %q:\n%s", user, w, out)
					}
				}
				for _, absent := range []string{"\nn\t", "\narr\t", "\nobj\t"} {
					if strings.Contains(out, absent) {
						t.Errorf("%s: output has %q:\n%s", user, absent, out)
					}
				}
			}
			for _, user := range []string{"badjson", "string", "array", "empty", "trailing", "fail", "letter", "long"} {
				if out, code := dv.userLookup(t, user); code != 75 {
					t.Errorf("%s: exit %d, want 75 (temporary failure)\n%s", user, code, out)
				}
				// The connection the failure left behind must not poison
				// the next lookup.
				if out, code := dv.userLookup(t, "timing"); code != 0 {
					t.Errorf("lookup after %s: exit %d\n%s", user, code, out)
				}
			}
			if out, code := dv.userLookup(t, "nobody"); code != 67 {
				t.Errorf("nobody: exit %d, want 67\n%s", code, out)
			}
			if out, code := dv.authTest(t, "letter", "x"); code != 75 || !strings.Contains(out, "code=temp_fail") {
				t.Errorf("auth test letter: exit %d\n%s", code, out)
			}
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			if !strings.Contains(string(log), "unknown lua_settings key sockett") {
				t.Errorf("no warning about the misspelt lua_settings key")
			}
		})
	}
}
