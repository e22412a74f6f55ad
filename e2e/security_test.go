package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Security (issue 10): socket files, privileges, framing injection from
// backend replies, and secrets in logs, against the real binaries.

const nobodyID = 65534 // Debian's nobody and nogroup

// requireRoot skips a test that must create sockets for other users or
// switch users. CI runs as root (.ci/run installs packages).
func requireRoot(t *testing.T) {
	t.Helper()
	needRoot(t, "this test")
	if uid, gid, ok := supIDs("nobody", "nogroup"); !ok || uid != nobodyID || gid != nobodyID {
		if inCI() {
			t.Fatalf("nobody:nogroup are not %d:%d on the CI image", nobodyID, nobodyID)
		}
		t.Skipf("nobody:nogroup are not %d:%d here", nobodyID, nobodyID)
	}
}

// writeConf writes a configuration file and returns its path.
func writeConf(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, "shitenno.conf")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// procIDs returns the four uids and gids (real, effective, saved, fs),
// the supplementary groups and the effective capabilities of pid.
func procIDs(t *testing.T, pid int) (uids, gids, groups []string, capEff string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "Uid:":
			uids = f[1:]
		case "Gid:":
			gids = f[1:]
		case "Groups:":
			groups = f[1:]
		case "CapEff:":
			capEff = f[1]
		}
	}
	return
}

// TestSocketOwnerModeAndUserDrop starts each daemon as root with
// UID/GID/Mode/User set: the socket has exactly the configured owner and
// mode from the moment it exists (a watcher stats it in a tight loop from
// before the start: no state with a wider mode may ever show), the process
// then runs as nobody:nogroup with no supplementary group and no
// capability, and still answers lookups.
func TestSocketOwnerModeAndUserDrop(t *testing.T) {
	requireRoot(t)
	backend := exampleBackend(t, "--quiet")
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			dir := testDir(t)
			sec := supSection(p.name)
			conf := writeConf(t, dir, fmt.Sprintf("RemoteURL = %q\nSocketPrefix = %q\nTimeout = \"2s\"\n"+
				"[%s]\nUID = \"nobody\"\nGID = \"nogroup\"\nMode = \"0640\"\nUser = \"nobody\"\n",
				backend, filepath.Join(dir, "shitenno"), sec))
			sock := filepath.Join(dir, "shitenno-"+p.name)

			var (
				mu    sync.Mutex
				seen  = map[supSockStat]int{}
				stop  = make(chan struct{})
				wdone = make(chan struct{})
			)
			go func() {
				defer close(wdone)
				for {
					select {
					case <-stop:
						return
					default:
					}
					if st := supStat(sock); st.Exists {
						st.Ino = 0
						mu.Lock()
						seen[st]++
						mu.Unlock()
					}
				}
			}()
			d := start(t, binary(t, "shitenno-"+p.name), "--config", conf)
			waitFor(t, 10*time.Second, "socket "+sock, func() bool {
				if d.Exited() {
					t.Fatalf("exited: %s", d.Output.String())
				}
				_, err := p.lookupOnce(sock, time.Second)
				return err == nil
			})
			close(stop)
			<-wdone

			want := supSockStat{Mode: 0o640, UID: nobodyID, GID: nobodyID, IsSocket: true, Exists: true}
			if got := supStat(sock); got.Mode != want.Mode || got.UID != want.UID || got.GID != want.GID || !got.IsSocket {
				t.Errorf("socket %+v, want mode 0640 owner nobody:nogroup", got)
			}
			mu.Lock()
			for st, n := range seen {
				if st.Mode&^0o640 != 0 || !st.IsSocket {
					t.Errorf("socket seen %d times as %+v: wider than the configured 0640", n, st)
				}
			}
			t.Logf("socket states seen while starting: %v", seen)
			mu.Unlock()

			// Privileges: dropped for good (saved and filesystem ids too).
			waitFor(t, 5*time.Second, "privilege drop", func() bool {
				uids, _, _, _ := procIDs(t, d.Cmd.Process.Pid)
				return len(uids) > 0 && uids[0] == "65534"
			})
			uids, gids, groups, capEff := procIDs(t, d.Cmd.Process.Pid)
			for _, id := range append(append([]string{}, uids...), gids...) {
				if id != "65534" {
					t.Errorf("Uid %v Gid %v: want 65534 everywhere", uids, gids)
					break
				}
			}
			for _, g := range groups {
				if g != "65534" {
					t.Errorf("supplementary groups %v: root's groups kept", groups)
				}
			}
			if strings.Trim(capEff, "0") != "" {
				t.Errorf("CapEff %s: capabilities kept", capEff)
			}
			for i := 0; i < 3; i++ {
				if ans, err := p.lookupOnce(sock, 5*time.Second); err != nil || p.verdict(ans) != "found" {
					t.Errorf("lookup as nobody: %q %v", ans, err)
				}
			}
			if err := d.Stop(syscall.SIGTERM, 15*time.Second); err != nil {
				t.Errorf("exit after SIGTERM: %v\n%s", err, d.Output.String())
			}
			// As nobody it may not unlink its socket from the root-owned
			// directory: it must say so rather than leave it silently.
			if _, err := os.Lstat(sock); err == nil && !strings.Contains(d.Output.String(), "socket file left behind") {
				t.Errorf("socket left behind without a warning:\n%s", d.Output.String())
			}
		})
	}
}

// TestRefusesOpenSocketDirectory: a socket directory anyone may write to
// without the sticky bit lets anyone replace the socket; the daemon exits
// non-zero at once, saying why. With the sticky bit (like /tmp) it starts.
func TestRefusesOpenSocketDirectory(t *testing.T) {
	backend := exampleBackend(t, "--quiet")
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			dir := testDir(t)
			sockDir := filepath.Join(dir, "run")
			if err := os.Mkdir(sockDir, 0o755); err != nil {
				t.Fatal(err)
			}
			conf := writeConf(t, dir, fmt.Sprintf("RemoteURL = %q\nSocketPrefix = %q\n[%s]\nMode = \"0666\"\n",
				backend, filepath.Join(sockDir, "shitenno"), supSection(p.name)))
			if err := os.Chmod(sockDir, 0o777); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := run2(t, 10*time.Second, binary(t, "shitenno-"+p.name), "--config", conf)
			if code == 0 || code == -1 {
				t.Errorf("exit %d with a world-writable, non-sticky socket directory", code)
			}
			if msg := stdout + stderr; !strings.Contains(msg, sockDir+" is writable by others and not sticky") {
				t.Errorf("no clear reason in the output:\n%s", msg)
			}
			if _, err := os.Lstat(filepath.Join(sockDir, "shitenno-"+p.name)); err == nil {
				t.Errorf("socket created anyway")
			}

			if err := os.Chmod(sockDir, 0o777|os.ModeSticky); err != nil {
				t.Fatal(err)
			}
			d := start(t, binary(t, "shitenno-"+p.name), "--config", conf)
			sock := filepath.Join(sockDir, "shitenno-"+p.name)
			waitFor(t, 10*time.Second, "socket in a sticky directory", func() bool {
				if d.Exited() {
					t.Fatalf("exited with a sticky 1777 directory: %s", d.Output.String())
				}
				ans, err := p.lookupOnce(sock, time.Second)
				return err == nil && p.verdict(ans) == "found"
			})
		})
	}
}

// run2 is run without failing the test when the program cannot finish:
// the daemon must exit by itself here, and -1 says it did not.
func run2(t *testing.T, d time.Duration, name string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = cleanEnv()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return o.String(), e.String(), ee.ExitCode()
		}
		return o.String(), e.String(), 0
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		return o.String(), e.String(), -1
	}
}

// TestSocketActivationAsNobody: under systemd the daemon never needs root;
// systemd-socket-activate (started as nobody, like a unit with
// User=nobody) passes the listening socket and the daemon serves lookups
// on it as nobody, with or without User = "nobody" in its section (a
// configured User equal to the current one is not an error).
func TestSocketActivationAsNobody(t *testing.T) {
	requireRoot(t)
	activate := requireTool(t, "systemd-socket-activate")
	backend := exampleBackend(t, "--quiet")
	for _, p := range protocols {
		for _, withUser := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/User=%v", p.name, withUser), func(t *testing.T) {
				t.Parallel()
				dir := testDir(t)
				// The build directory is root's 0700: nobody needs its own copy.
				bin := filepath.Join(dir, "shitenno-"+p.name)
				copyFile(t, binary(t, "shitenno-"+p.name), bin, 0o755)
				user := ""
				if withUser {
					user = "User = \"nobody\"\n"
				}
				conf := writeConf(t, dir, fmt.Sprintf("RemoteURL = %q\nSocketPrefix = %q\nTimeout = \"2s\"\n[%s]\n%s",
					backend, filepath.Join(dir, "unused"), supSection(p.name), user))
				run := filepath.Join(dir, "run")
				if err := os.Mkdir(run, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(run, nobodyID, nobodyID); err != nil {
					t.Fatal(err)
				}
				sock := filepath.Join(run, "activated.sock")
				pr := startAs(t, nobodyID, nobodyID, activate, "-l", sock, bin, "--config", conf)
				waitActivation(t, pr, sock)
				for i := 0; i < 3; i++ {
					if ans, err := p.lookupOnce(sock, 10*time.Second); err != nil || p.verdict(ans) != "found" {
						t.Fatalf("lookup %d: %q %v\n%s", i, ans, err, pr.Output.String())
					}
				}
				if uid, err := supProcUID(pr.Cmd.Process.Pid); err != nil || uid != nobodyID {
					t.Errorf("daemon uid %d (%v), want nobody", uid, err)
				}
				if !strings.Contains(pr.Output.String(), "Execing") {
					t.Errorf("systemd-socket-activate did not exec the daemon:\n%s", pr.Output.String())
				}
				if err := pr.Stop(syscall.SIGTERM, 15*time.Second); err != nil {
					t.Errorf("exit after SIGTERM: %v\n%s", err, pr.Output.String())
				}
			})
		}
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

// startAs is start with the child running as uid:gid (no supplementary
// groups).
func startAs(t *testing.T, uid, gid uint32, name string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true,
		Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	return startCmd(t, cmd, fmt.Sprintf("%s as %d:%d", name, uid, gid))
}

// TestBackendCannotInjectFraming: whatever the backend puts in Data, the
// reply on the wire stays one well-formed frame, line or header block.
func TestBackendCannotInjectFraming(t *testing.T) {
	t.Run("postfix", func(t *testing.T) {
		t.Parallel()
		values := map[string]string{
			"fits":     strings.Repeat("x", 99997), // "OK " + value = 100000, postfix's limit
			"overflow": strings.Repeat("x", 99998), // one byte more
			"frame":    "a,5:OK b,\r\n10:",
		}
		fb := newFakeBackend(t, func(r BackendRequest) (int, string) {
			var key string
			_ = json.Unmarshal(r.Object, &key)
			return 200, okReply(r, "OK", values[key])
		})
		d := startDaemon(t, testDir(t), "postfix", fb.BaseURL())
		for key, want := range map[string]string{
			"fits":     "OK " + values["fits"],
			"overflow": "PERM backend Data longer than postfix's 100000-byte reply limit",
			"frame":    "OK " + values["frame"],
		} {
			c, err := net.Dial("unix", d.Socket)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			q := "virtual " + key
			fmt.Fprintf(c, "%d:%s,", len(q), q)
			br := bufio.NewReader(c)
			got, err := readNetstring(br)
			if err != nil || got != want {
				t.Errorf("%s: got %q (%v), want %q", key, trunc([]byte(got)), err, trunc([]byte(want)))
			}
			// The frame ended exactly there: the next lookup on the same
			// connection is answered in step.
			fmt.Fprintf(c, "%d:%s,", len(q), q)
			if got, err := readNetstring(br); err != nil || got != want {
				t.Errorf("%s, second lookup on the connection: %q %v", key, trunc([]byte(got)), err)
			}
			c.Close()
		}
		// And postfix itself: the largest value arrives whole, the
		// overflow is a lookup error, not a broken table.
		if _, err := exec.LookPath("postmap"); err != nil && !inCI() {
			return
		}
		pd := postmapDir(t, testDir(t))
		out, errOut, code := postmapQuery(t, pd, d.Socket, "virtual", "fits")
		if code != 0 || strings.TrimSuffix(out, "\n") != values["fits"] {
			t.Errorf("postmap fits: exit %d, %d bytes out, %s", code, len(out), errOut)
		}
		out, errOut, code = postmapQuery(t, pd, d.Socket, "virtual", "overflow")
		if code == 0 || out != "" || !strings.Contains(errOut, "100000-byte reply limit") {
			t.Errorf("postmap overflow: exit %d, out %q, err %s", code, trunc([]byte(out)), errOut)
		}
	})

	t.Run("dovecot", func(t *testing.T) {
		t.Parallel()
		data := map[string]string{
			"password":      "{PLAIN}a\tb\nc\x01d\re\x00f",
			"userdb_x\ty\n": "\x01\x01t",
			"note":          "O{\"x\":1}\nN\nF",
		}
		fb := newFakeBackend(t, func(r BackendRequest) (int, string) { return 200, okReply(r, "OK", data) })
		d := startDaemon(t, testDir(t), "dovecot", fb.BaseURL())
		c, err := net.Dial("unix", d.Socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		lookup := "Lshared/passdb/alice@example.org\talice@example.org\n"
		io.WriteString(c, dictHello+lookup+lookup)
		br := bufio.NewReader(c)
		for i := 0; i < 2; i++ { // the second reply proves the first was one line
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reply %d: %v", i, err)
			}
			v, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "O")
			if !ok {
				t.Fatalf("reply %d %q, want O<value>", i, line)
			}
			for _, b := range []byte(v) {
				if b < 0x20 {
					t.Fatalf("raw control byte %#x in the value %q", b, v)
				}
			}
			var got map[string]string
			if err := json.Unmarshal([]byte(v), &got); err != nil || fmt.Sprint(got) != fmt.Sprint(data) {
				t.Errorf("value %q decodes to %q (%v), want %q", v, got, err, data)
			}
		}
	})

	t.Run("nginx", func(t *testing.T) {
		t.Parallel()
		ok := func(extra map[string]any) any {
			m := map[string]any{"Auth-Server": "127.0.0.1", "Auth-Port": 143}
			for k, v := range extra {
				m[k] = v
			}
			return m
		}
		// user → (Status, Data)
		replies := map[string][2]any{
			"server-crlf": {"OK", ok(map[string]any{"Auth-Server": "127.0.0.1\r\nAuth-Port: 25"})},
			"user-crlf":   {"OK", ok(map[string]any{"Auth-User": "alice\r\nAuth-Status: OK"})},
			"pass-lf":     {"OK", ok(map[string]any{"Auth-Pass": "p\nAuth-Port: 25"})},
			"pass-cr":     {"OK", ok(map[string]any{"Auth-Pass": "p\rAuth-Port: 25"})},
			"user-nul":    {"OK", ok(map[string]any{"Auth-User": "alice\x00bob"})},
			"status-crlf": {"KO", map[string]any{"Auth-Status": "Invalid\r\nAuth-Wait: 0"}},
			"status-lf":   {"KO", map[string]any{"Auth-Status": "Invalid\nAuth-Status: OK"}},
			"code-crlf":   {"KO", map[string]any{"Auth-Status": "Invalid", "Auth-Error-Code": "535 5.7.8\r\nAuth-Status: OK"}},
			// Unknown members are not sent at all: a legitimate OK.
			"key-crlf": {"OK", ok(map[string]any{"X\r\nAuth-Status": "OK", "Auth-Status": "OK"})},
		}
		known := map[string]bool{"Auth-Status": true, "Auth-Server": true, "Auth-Port": true, "Auth-User": true,
			"Auth-Pass": true, "Auth-Wait": true, "Auth-Error-Code": true, "Content-Length": true}
		fb := newFakeBackend(t, func(r BackendRequest) (int, string) {
			var o map[string]string
			_ = json.Unmarshal(r.Object, &o)
			rep := replies[o["Auth-User"]]
			return 200, okReply(r, rep[0].(string), rep[1])
		})
		d := startDaemon(t, testDir(t), "nginx", fb.BaseURL())
		users := make([]string, 0, len(replies))
		for u := range replies {
			users = append(users, u)
		}
		sort.Strings(users)
		for _, u := range users {
			raw := rawAuth(t, d.Socket, u, "pw")
			head, _, found := strings.Cut(raw, "\r\n\r\n")
			if !found {
				t.Errorf("%s: no header block end in %q", u, raw)
				continue
			}
			lines := strings.Split(head, "\r\n")
			hdr := http.Header{}
			for _, l := range lines[1:] {
				if strings.ContainsAny(l, "\r\n\x00") {
					t.Errorf("%s: raw CR, LF or NUL in header line %q", u, l)
				}
				k, v, _ := strings.Cut(l, ": ")
				if !known[k] {
					t.Errorf("%s: unexpected header line %q", u, l)
				}
				hdr.Add(k, v)
			}
			if u == "key-crlf" {
				if s := hdr.Values("Auth-Status"); len(s) != 1 || s[0] != "OK" || hdr.Get("Auth-Port") != "143" {
					t.Errorf("%s: want a plain OK to 127.0.0.1:143:\n%s", u, raw)
				}
				continue
			}
			if s := hdr.Values("Auth-Status"); len(s) != 1 || s[0] != "Temporary server problem, try again later" {
				t.Errorf("%s: Auth-Status %q, want one temporary failure\n%s", u, s, raw)
			}
			if len(hdr.Values("Auth-Port")) > 0 || len(hdr.Values("Auth-Server")) > 0 {
				t.Errorf("%s: a route was sent with a refused reply:\n%s", u, raw)
			}
		}
	})
}

// rawAuth sends one auth_http request like nginx and returns the raw
// response.
func rawAuth(t *testing.T, sock, user, pass string) string {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /auth HTTP/1.0\r\nHost: localhost\r\nAuth-Method: plain\r\nAuth-User: %s\r\n"+
		"Auth-Pass: %s\r\nAuth-Protocol: imap\r\nAuth-Login-Attempt: 1\r\nClient-IP: 127.0.0.1\r\n\r\n", user, pass)
	b, _ := io.ReadAll(c)
	return string(b)
}

// TestNoPasswordInLogs logs in through the real nginx and the real
// dovecot with a known password, right and wrong, all daemons at
// LogLevel = "debug", and greps everything shitenno and the example
// backend wrote for the passwords in every form they travel in.
func TestNoPasswordInLogs(t *testing.T) {
	requireTool(t, "nginx")
	requireTool(t, "dovecot")
	const (
		user     = "carol@example.org"
		password = "S3cr3t-Pa55! %x" // nginx escapes the space and the %
		wrong    = "Wr0ng-Pa55! %y"
	)
	dir := testDir(t)
	home := filepath.Join(dir, "dovecot", "home")
	up := startUpstream(t, "imap")
	dataFile := filepath.Join(dir, "backend.toml")
	if err := os.WriteFile(dataFile, []byte(fmt.Sprintf(`[Users.%q]
Password = "{PLAIN}%s"
Uid = %d
Gid = %d
Home = %q

[Nginx]
imap = "127.0.0.1:%d"
`, user, password, nobodyID, nobodyID, filepath.Join(home, "carol"), up.port)), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := loopbackAddr(t)
	be := start(t, binary(t, "shitenno-example-backend"), "--listen", addr, "--data", dataFile) // not --quiet
	waitDial(t, "tcp", addr)
	backend := "http://" + addr + "/"

	debug := "LogLevel = \"debug\""
	ngxDir, dvDir := filepath.Join(dir, "n"), filepath.Join(dir, "d")
	for _, d := range []string{ngxDir, dvDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ngx := startDaemonWith(t, ngxDir, "nginx", backend, debug, "")
	dvd := startDaemonWith(t, dvDir, "dovecot", backend, debug, "")

	imapPort := freePort(t)
	startNginx(t, dir, mailServers(t, "unix:"+ngx.Socket+":/auth", imapPort, freePort(t), freePort(t)), "", imapPort)
	c := dialMail(t, imapPort)
	if got := c.imapLogin("a1", user, wrong); last(got) != "a1 NO Invalid login or password" {
		t.Errorf("nginx, wrong password: %q", got)
	}
	c = dialMail(t, imapPort)
	if got := c.imapLogin("a1", user, password); !strings.HasPrefix(last(got), "a1 OK") {
		t.Errorf("nginx, right password: %q", got)
	}
	if ls := up.Logins(); len(ls) != 1 || ls[0] != (upLogin{user, password}) {
		t.Errorf("upstream logins %q", ls)
	}

	dv := startDovecot(t, dir, dvd.Socket)
	if got := dv.imapLogin(t, "127.0.0.1", user, password); !strings.HasPrefix(got, "a1 OK") {
		t.Errorf("dovecot IMAP LOGIN, right password: %q", got)
	}
	if out, code := dv.authTest(t, user, wrong); code != exNoPerm {
		t.Errorf("doveadm auth test, wrong password: exit %d\n%s", code, out)
	}
	if out, code := dv.authTest(t, user, password); code != exOK {
		t.Errorf("doveadm auth test, right password: exit %d\n%s", code, out)
	}

	// Stop the daemons so that every queued log record is written.
	for _, p := range []*Proc{ngx.Proc, dvd.Proc, be} {
		p.Stop(syscall.SIGTERM, 15*time.Second)
	}
	logs := map[string]string{
		"shitenno-nginx":           ngx.Output.String(),
		"shitenno-dovecot":         dvd.Output.String(),
		"shitenno-example-backend": be.Output.String(),
	}
	for name, l := range logs {
		if name != "shitenno-example-backend" && !strings.Contains(l, "level=DEBUG") {
			t.Errorf("%s wrote no debug line: the grep below proves nothing\n%s", name, l)
		}
	}
	var forms []string
	for _, pw := range []string{password, wrong} {
		forms = append(forms,
			pw,
			strings.NewReplacer(" ", "%20", "%", "%25").Replace(pw), // nginx's Auth-Pass escaping
			url.QueryEscape(pw), url.PathEscape(pw),
			base64.StdEncoding.EncodeToString([]byte(pw)),
			base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pw)),
			pw[:10], // any other encoding keeps this prefix
		)
	}
	for name, l := range logs {
		for _, f := range forms {
			if strings.Contains(l, f) {
				t.Errorf("%s logged the password as %q:\n%s", name, f, l)
			}
		}
	}
}
