package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
)

// Dovecot 2.4 runs from the Debian 13 root of trixie_helpers_test.go:
// Debian 12 has no dovecot 2.4 (PROTOCOLS.md §3.10). shitenno-dovecot runs
// on the host with its socket inside that root, where dovecot sees it at
// the same path minus the root.

// dovecot24 is a private dovecot 2.4 instance running in the root.
type dovecot24 struct {
	root string // the trixie root on the host
	dir  string // the instance directory (host path, inside root)
	conf string // dovecot.conf as dovecot sees it
	port int    // IMAP port on 127.0.0.1
	proc *Proc
}

// in turns a host path inside the root into the path dovecot sees.
func (d *dovecot24) in(hostPath string) string { return trixieIn(d.root, hostPath) }

// dovecot24Opts choose what the instance talks to.
type dovecot24Opts struct {
	Socket     string // shitenno-dovecot's socket, host path inside the root
	LuaTimeout string // lua_settings timeout (seconds)
	JSON       string // lua_settings json (cjson, dkjson); empty: the default
	Extra      string // more lua_settings lines
}

// exampleConf reads conf/dovecot/NAME and replaces each old string by its
// new one, failing when an old string is missing: the shipped examples
// are what the tests run, so they cannot drift apart.
func exampleConf(t *testing.T, name string, oldnew ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "conf", "dovecot", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(oldnew); i += 2 {
		if !strings.Contains(s, oldnew[i]) {
			t.Fatalf("conf/dovecot/%s no longer contains %q", name, oldnew[i])
		}
		s = strings.ReplaceAll(s, oldnew[i], oldnew[i+1])
	}
	return s
}

// startDovecot24 writes a private configuration that includes the shipped
// examples (auth-shitenno.2.4.conf.ext, dict-shitenno.2.4.conf.ext) with
// paths pointing into dir, starts dovecot -F in the root and waits for
// its IMAP port and auth sockets.
func startDovecot24(t *testing.T, root, dir string, o dovecot24Opts) *dovecot24 {
	t.Helper()
	d := &dovecot24{root: root, dir: dir, port: freePort(t)}
	dovecotDirs(t, dir)
	lua, err := os.ReadFile(filepath.Join(repoRoot(t), "conf", "dovecot", "shitenno.lua"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return d.in(p)
	}
	luaPath := write("shitenno.lua", string(lua))
	sock := d.in(o.Socket)
	jsonSetting := ""
	if o.JSON != "" {
		jsonSetting = "\n    json = " + o.JSON
	}
	if o.Extra != "" {
		jsonSetting += "\n    " + o.Extra
	}
	auth := write("auth-shitenno.conf.ext", exampleConf(t, "auth-shitenno.2.4.conf.ext",
		"/usr/local/share/shitenno/dovecot/shitenno.lua", luaPath,
		"socket = /run/shitenno-dovecot", "socket = "+sock,
		"timeout = 6", "timeout = "+o.LuaTimeout+jsonSetting))
	dict := write("dict-shitenno.conf.ext", exampleConf(t, "dict-shitenno.2.4.conf.ext",
		"socket_path = /run/shitenno-dovecot", "socket_path = "+sock))
	in := d.in(dir)
	// dovecot_config_version comes first (dovecot 2.4).
	conf := "dovecot_config_version = 2.4.1\ndovecot_storage_version = 2.4.1\n" +
		dovecotConfHead(in, filepath.Base(dir)) + fmt.Sprintf(`auth_allow_cleartext = yes
# Any byte in user names, so that escaping is exercised end to end.
auth_username_chars =
auth_verbose = yes
auth_failure_delay = 0
auth_internal_failure_delay = 0
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_driver = maildir
mail_path = ~/Maildir
service imap-login {
  inet_listener imap {
    port = %[1]d
  }
}
!include %[2]s
!include %[3]s
`, d.port, auth, dict)
	d.conf = write("dovecot.conf", conf)
	logOnFailure(t, "dovecot 2.4 log", filepath.Join(dir, "dovecot.log"), 20000)
	if out, errOut, code := run(t, time.Minute, "chroot", root, "doveconf", "-c", d.conf, "-n"); code != 0 {
		t.Fatalf("doveconf -n: exit %d\n%s%s", code, out, errOut)
	}
	d.proc = start(t, "chroot", root, "dovecot", "-F", "-c", d.conf)
	waitFor(t, 30*time.Second, "dovecot 2.4 to listen", func() bool {
		if d.proc.Exited() {
			t.Fatalf("dovecot exited: %s", d.proc.Output.String())
		}
		if _, err := os.Stat(filepath.Join(dir, "run", "auth-userdb")); err != nil {
			return false
		}
		return dialable("tcp", fmt.Sprintf("127.0.0.1:%d", d.port))
	})
	return d
}

// doveadm runs doveadm in the root against this instance.
func (d *dovecot24) doveadm(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return run(t, time.Minute, "chroot", append([]string{d.root, "doveadm", "-c", d.conf}, args...)...)
}

// authTest runs doveadm auth test and returns its combined output.
func (d *dovecot24) authTest(t *testing.T, user, pass string) (string, int) {
	t.Helper()
	out, errOut, code := d.doveadm(t, "auth", "test", user, pass)
	return out + errOut, code
}

// userLookup runs doveadm user and returns its combined output.
func (d *dovecot24) userLookup(t *testing.T, user string) (string, int) {
	t.Helper()
	out, errOut, code := d.doveadm(t, "user", user)
	return out + errOut, code
}

// imapLogin connects from src (a 127.0.0.N address: dovecot's auth
// penalty is per client IP), sends LOGIN and returns the tagged reply.
func (d *dovecot24) imapLogin(t *testing.T, src, user, pass string) string {
	t.Helper()
	return imapLoginAt(t, src, fmt.Sprintf("127.0.0.1:%d", d.port), user, pass)
}

// listenUnix listens on the unix socket path, mode 0666 so that the peers'
// unprivileged processes can connect.
func listenUnix(t *testing.T, path string) net.Listener {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	return l
}

// silentDictServer accepts connections on a unix socket and reads what
// the client sends without ever answering: a hung shitenno. It returns
// the number of lookups received so far.
func silentDictServer(t *testing.T, path string) func() int {
	t.Helper()
	var mu sync.Mutex
	lookups := 0
	testutil.Accept(t, listenUnix(t, path), func(c net.Conn) {
		br := bufio.NewReader(io.LimitReader(c, 1<<20))
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if strings.HasPrefix(line, "L") {
				mu.Lock()
				lookups++
				mu.Unlock()
			}
		}
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return lookups
	}
}

// scriptedDictServer answers each lookup with the raw reply line (without
// its "\n") that replies maps the key's last path component (the user)
// to, and "N" for others: replies shitenno never sends, to check how the
// script copes with them. The returned function counts the connections
// and lookups served so far.
func scriptedDictServer(t *testing.T, path string, replies map[string]string) func() (conns, lookups int) {
	t.Helper()
	var mu sync.Mutex
	nlookups := 0
	a := testutil.Accept(t, listenUnix(t, path), func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(io.LimitReader(c, 1<<20))
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if !strings.HasPrefix(line, "L") {
				continue // hello: no reply
			}
			mu.Lock()
			nlookups++
			mu.Unlock()
			key, _, _ := strings.Cut(strings.TrimSuffix(line[1:], "\n"), "\t")
			user := key[strings.LastIndexByte(key, '/')+1:]
			reply, ok := replies[user]
			if !ok {
				reply = "N"
			}
			if _, err := io.WriteString(c, reply+"\n"); err != nil {
				return
			}
		}
	})
	return func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return int(a.Accepted.Load()), nlookups
	}
}
