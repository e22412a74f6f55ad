package e2e

// Helpers for supervision_test.go (systemd units and socket activation,
// runit, upstart, make install). Their names start with "sup" so they
// never collide with the shared helpers in helpers_test.go.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// supProtocols are the three daemons, each supervised on its own.
var supProtocols = []string{"postfix", "dovecot", "nginx"}

// supFDNames is the FileDescriptorName= of each main socket unit.
var supFDNames = map[string]string{"postfix": "socketmap", "dovecot": "dovecot", "nginx": "nginx"}

// supPostfixExtraUnits are the socket units of shitenno-postfix's optional
// listeners (not enabled by default).
var supPostfixExtraUnits = []string{"shitenno-postfix-sasl.socket", "shitenno-postfix-policy.socket", "shitenno-postfix-tcptable@.socket"}

// supUnitNames are the systemd units shipped for proto's daemon.
func supUnitNames(proto string) []string {
	names := []string{"shitenno-" + proto + ".socket", "shitenno-" + proto + ".service"}
	if proto == "postfix" {
		names = append(names, supPostfixExtraUnits...)
	}
	return names
}

// supSection is the configuration section of a protocol.
func supSection(proto string) string {
	return strings.ToUpper(proto[:1]) + proto[1:]
}

// supAvailable returns the protocols whose daemon exists in cmd/. In CI a
// missing daemon fails the test; elsewhere (while the daemons are being
// written) the test runs with the ones present, and skips when none is.
func supAvailable(t testing.TB) []string {
	t.Helper()
	var have, missing []string
	for _, p := range supProtocols {
		if _, err := os.Stat(filepath.Join(repoRoot(t), "cmd", "shitenno-"+p)); err == nil {
			have = append(have, p)
		} else {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		if inCI() {
			t.Fatalf("cmd/shitenno-%s missing", strings.Join(missing, ", cmd/shitenno-"))
		}
		t.Logf("not testing %v: cmd/shitenno-<name> does not exist yet", missing)
	}
	if len(have) == 0 {
		t.Skip("no daemon to test")
	}
	return have
}

// supAll is supAvailable for tests that need every daemon.
func supAll(t testing.TB) []string {
	t.Helper()
	have := supAvailable(t)
	if len(have) != len(supProtocols) {
		t.Skipf("needs all of %v, have %v", supProtocols, have)
	}
	return have
}

// supLookupTimeout bounds one lookup: connect, request and reply.
const supLookupTimeout = 3 * time.Second

// supLookup does one real lookup on a new connection to the daemon's unix
// socket, answered by the example backend (conf/example-backend.toml), and
// checks the answer byte for byte where the protocol allows.
func supLookup(proto, sock string) error {
	c, err := net.DialTimeout("unix", sock, supLookupTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(supLookupTimeout)); err != nil {
		return err
	}
	switch proto {
	case "postfix":
		return supPostfixLookup(c)
	case "dovecot":
		return supDovecotLookup(c)
	case "nginx":
		return supNginxLookup(c)
	}
	return fmt.Errorf("unknown protocol %q", proto)
}

// supPostfixLookup sends one socketmap netstring (PROTOCOLS.md §2.2).
func supPostfixLookup(c net.Conn) error {
	const req, want = "virtual postmaster@example.org", "OK alice@example.org"
	if _, err := fmt.Fprintf(c, "%d:%s,", len(req), req); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	head, err := r.ReadString(':')
	if err != nil {
		return fmt.Errorf("reading reply length: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSuffix(head, ":"))
	if err != nil || n < 0 || n > 100000 {
		return fmt.Errorf("bad netstring length %q", head)
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		return fmt.Errorf("reading reply: %w", err)
	}
	if got := string(buf); got != want+"," {
		return fmt.Errorf("socketmap reply %q, want %q", got, want+",")
	}
	return nil
}

// supDovecotLookup sends the hello and one userdb lookup as dovecot 2.3.19
// does (PROTOCOLS.md §3.2).
func supDovecotLookup(c net.Conn) error {
	const want = `O{"gid":5000,"home":"/var/vmail/example.org/alice","quota_rule":"*:storage=1G","uid":5000}`
	if _, err := io.WriteString(c, "H3\t2\t0\t\tshitenno\nLshared/userdb/alice@example.org\talice@example.org\n"); err != nil {
		return err
	}
	line, err := bufio.NewReaderSize(c, 65536).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading dict reply: %w", err)
	}
	if got := strings.TrimSuffix(line, "\n"); got != want {
		return fmt.Errorf("dict reply %q, want %q", got, want)
	}
	return nil
}

// supNginxLookup sends nginx's auth_http request for an IMAP LOGIN
// (PROTOCOLS.md §4.1).
func supNginxLookup(c net.Conn) error {
	req := "GET /auth HTTP/1.0\r\nHost: localhost\r\nAuth-Method: plain\r\n" +
		"Auth-User: alice@example.org\r\nAuth-Pass: secret\r\nAuth-Protocol: imap\r\n" +
		"Auth-Login-Attempt: 1\r\nClient-IP: 127.0.0.1\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("reading auth_http reply: %w", err)
	}
	resp.Body.Close()
	h := resp.Header
	if h.Get("Auth-Status") != "OK" || h.Get("Auth-Server") != "127.0.0.1" || h.Get("Auth-Port") != "10143" {
		return fmt.Errorf("auth_http reply Auth-Status %q Auth-Server %q Auth-Port %q, want OK 127.0.0.1 10143",
			h.Get("Auth-Status"), h.Get("Auth-Server"), h.Get("Auth-Port"))
	}
	return nil
}

// supRewrite replaces each old string with its new one and fails the test
// when an old string does not occur: the test must notice when the files
// it adapts change under it.
func supRewrite(t testing.TB, name, text string, oldnew ...string) string {
	t.Helper()
	for i := 0; i+1 < len(oldnew); i += 2 {
		if !strings.Contains(text, oldnew[i]) {
			t.Fatalf("%s: %q not found; update the test's rewrites", name, oldnew[i])
		}
		text = strings.ReplaceAll(text, oldnew[i], oldnew[i+1])
	}
	return text
}

// supSockStat is what the test compares to prove a socket node was left
// alone: same inode, mode and owner.
type supSockStat struct {
	Ino       uint64
	Mode      uint32
	UID, GID  uint32
	IsSocket  bool
	Exists    bool
	StatError error
}

func supStat(path string) supSockStat {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return supSockStat{Exists: !errors.Is(err, syscall.ENOENT), StatError: err}
	}
	return supSockStat{
		Ino: st.Ino, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid,
		IsSocket: st.Mode&syscall.S_IFMT == syscall.S_IFSOCK, Exists: true,
	}
}

// supOwners is the socket owner each peer needs (PROTOCOLS.md §5.6).
var supOwners = map[string][2]string{
	"postfix": {"postfix", "postfix"},
	"dovecot": {"root", "dovecot"},
	"nginx":   {"root", "www-data"},
}

// supIDs resolves a user and group name; ok is false when either is
// missing on this machine (the peers are not installed).
func supIDs(userName, groupName string) (uid, gid uint32, ok bool) {
	u, err := user.Lookup(userName)
	if err != nil {
		return 0, 0, false
	}
	g, err := user.LookupGroup(groupName)
	if err != nil {
		return 0, 0, false
	}
	ui, _ := strconv.ParseUint(u.Uid, 10, 32)
	gi, _ := strconv.ParseUint(g.Gid, 10, 32)
	return uint32(ui), uint32(gi), true
}

// supProcUID returns the real uid of a running process.
func supProcUID(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Uid:" {
			return strconv.Atoi(f[1])
		}
	}
	return -1, fmt.Errorf("no Uid in /proc/%d/status", pid)
}

// supPidFile reads a runsv supervise/pid file (empty while down).
func supPidFile(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "supervise", "pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// supAlive reports whether a process exists (and is not a zombie).
func supAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// supUnit is a parsed systemd unit file: section → key → values in order
// (a key may repeat; an empty assignment is kept as "").
type supUnit map[string]map[string][]string

func supParseUnit(t testing.TB, path string) supUnit {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := supUnit{}
	sec := ""
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			sec = line[1 : len(line)-1]
			if u[sec] == nil {
				u[sec] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || sec == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", path, i+1, line)
			}
			k = strings.TrimSpace(k)
			u[sec][k] = append(u[sec][k], strings.TrimSpace(v))
		}
	}
	return u
}

// Get returns the last value of a key ("" when absent) and whether it is
// set at all.
func (u supUnit) Get(sec, key string) (string, bool) {
	vs, ok := u[sec][key]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// supUpstartStanzas are the stanzas of upstart 1.x's init(5), keyed by
// their words before the arguments.
var supUpstartStanzas = map[string]bool{
	"description": true, "author": true, "version": true, "emits": true, "usage": true,
	"start on": true, "stop on": true, "manual": true, "task": true, "instance": true,
	"respawn": true, "respawn limit": true, "normal exit": true, "expect": true,
	"kill signal": true, "kill timeout": true, "reload signal": true,
	"exec": true, "script": true,
	"pre-start exec": true, "pre-start script": true, "post-start exec": true, "post-start script": true,
	"pre-stop exec": true, "pre-stop script": true, "post-stop exec": true, "post-stop script": true,
	"console": true, "env": true, "export": true, "umask": true, "nice": true, "oom score": true,
	"limit": true, "chroot": true, "chdir": true, "setuid": true, "setgid": true, "cgroup": true,
	"apparmor load": true, "apparmor switch": true,
}

// supTwoWord lists the first words that take a second keyword word.
var supTwoWord = map[string]bool{
	"start": true, "stop": true, "normal": true, "kill": true, "reload": true, "oom": true,
	"pre-start": true, "post-start": true, "pre-stop": true, "post-stop": true, "apparmor": true,
}

// supUpstartJob is a parsed job: stanza → argument lists, in file order.
type supUpstartJob map[string][][]string

// supParseUpstart parses an upstart job file the way init(5) describes
// it: one stanza per line, "#" comments, "script … end script" blocks,
// and start on/stop on expressions continued while parentheses are open.
func supParseUpstart(text string) (supUpstartJob, []string) {
	job := supUpstartJob{}
	var problems []string
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		n := i + 1
		line := supStripComment(lines[i])
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		key, args := fields[0], fields[1:]
		if supTwoWord[key] {
			if len(args) == 0 {
				problems = append(problems, fmt.Sprintf("line %d: %q needs a second word", n, key))
				continue
			}
			key, args = key+" "+args[0], args[1:]
		} else if key == "respawn" && len(args) > 0 && args[0] == "limit" {
			key, args = "respawn limit", args[1:]
		}
		if !supUpstartStanzas[key] {
			problems = append(problems, fmt.Sprintf("line %d: unknown stanza %q", n, key))
			continue
		}
		if key == "start on" || key == "stop on" {
			expr := strings.Join(args, " ")
			for strings.Count(expr, "(") > strings.Count(expr, ")") && i+1 < len(lines) {
				i++
				expr += " " + strings.TrimSpace(supStripComment(lines[i]))
			}
			if strings.Count(expr, "(") != strings.Count(expr, ")") {
				problems = append(problems, fmt.Sprintf("line %d: %s: unbalanced parentheses", n, key))
			}
			args = strings.Fields(expr)
		}
		if strings.HasSuffix(key, "script") {
			end := -1
			for j := i + 1; j < len(lines); j++ {
				if strings.TrimSpace(lines[j]) == "end script" {
					end = j
					break
				}
			}
			if end < 0 {
				problems = append(problems, fmt.Sprintf("line %d: %s without end script", n, key))
				break
			}
			i = end
		}
		job[key] = append(job[key], args)
	}
	return job, problems
}

// supStripComment drops a "#" comment that is not inside double quotes.
func supStripComment(line string) string {
	inQuote := false
	for i, r := range line {
		switch {
		case r == '"':
			inQuote = !inQuote
		case r == '#' && !inQuote && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return line[:i]
		}
	}
	return line
}

// supCheckUpstartJob checks a shitenno job: known stanzas only, the daemon
// exec'd in the foreground (no expect), respawn with a limit, start/stop
// events, a clean exit for status 2, and no setuid/setgid (the daemon must
// create /run/shitenno-<proto> as root and drops to User itself).
func supCheckUpstartJob(proto, text string) []string {
	job, problems := supParseUpstart(text)
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	once := func(key string) ([]string, bool) {
		v := job[key]
		if len(v) > 1 {
			bad("%s given %d times", key, len(v))
		}
		if len(v) == 0 {
			return nil, false
		}
		return v[0], true
	}
	if _, ok := job["expect"]; ok {
		bad("expect stanza: the daemon does not fork; upstart would track the wrong pid")
	}
	if args, ok := once("respawn"); !ok || len(args) != 0 {
		bad("respawn missing (or with arguments)")
	}
	if args, ok := once("respawn limit"); !ok {
		bad("respawn limit missing")
	} else if !(len(args) == 1 && args[0] == "unlimited") {
		if len(args) != 2 {
			bad("respawn limit wants COUNT INTERVAL, got %q", args)
		} else {
			for _, a := range args {
				if v, err := strconv.Atoi(a); err != nil || v <= 0 {
					bad("respawn limit: %q is not a positive integer", a)
				}
			}
		}
	}
	for _, k := range []string{"start on", "stop on"} {
		if args, ok := once(k); !ok || len(args) == 0 {
			bad("%s missing", k)
		}
	}
	if _, ok := job["script"]; ok {
		bad("main process is a script: runs under a shell, so signals and the pid go to sh")
	}
	wantExec := []string{"/usr/local/sbin/shitenno-" + proto, "--config", "/etc/shitenno/shitenno.conf"}
	if args, ok := once("exec"); !ok {
		bad("exec missing")
	} else if strings.Join(args, " ") != strings.Join(wantExec, " ") {
		bad("exec %q, want %q", args, wantExec)
	}
	if args, ok := once("normal exit"); !ok || !supContains(args, "2") {
		bad("normal exit must list 2 (configuration error: respawning cannot help)")
	}
	if args, ok := once("kill timeout"); !ok || len(args) != 1 {
		bad("kill timeout missing")
	} else if v, err := strconv.Atoi(args[0]); err != nil || v <= 32 {
		bad("kill timeout %q must exceed the daemon's shutdown grace (Timeout, below 30 s, + 2 s)", args[0])
	}
	if args, ok := once("console"); !ok || len(args) != 1 || args[0] != "log" {
		bad("console log missing: the daemon logs to stderr")
	}
	for _, k := range []string{"setuid", "setgid"} {
		if _, ok := job[k]; ok {
			bad("%s: the daemon cannot create and chown /run/shitenno-%s unless started as root", k, proto)
		}
	}
	if _, ok := job["description"]; !ok {
		bad("description missing")
	}
	return problems
}

func supContains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// supNotify receives sd_notify datagrams, as systemd's NOTIFY_SOCKET.
type supNotify struct {
	msgs chan string
}

// supNotifyListener listens on path; it is closed at cleanup.
func supNotifyListener(t testing.TB, path string) *supNotify {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	n := &supNotify{msgs: make(chan string, 1024)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			// One datagram may carry several newline-separated states.
			for _, st := range strings.Split(string(buf[:k]), "\n") {
				select {
				case n.msgs <- st:
				default:
				}
			}
		}
	}()
	return n
}

// waitFor consumes states until one equals want, failing after 10 s.
func (n *supNotify) waitFor(t testing.TB, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	var seen []string
	for {
		select {
		case st := <-n.msgs:
			if st == want {
				return
			}
			seen = append(seen, st)
		case <-deadline:
			t.Fatalf("no %s on NOTIFY_SOCKET within 10 s; saw %q", want, seen)
		}
	}
}

// waitActivation waits until systemd-socket-activate (p) listens on every
// address: it logs "Listening on ADDR" after listen(2). The socket file
// alone is no proof: it exists from bind(2) on, and a connect before
// listen(2) is refused.
func waitActivation(t *testing.T, p *Proc, addrs ...string) {
	t.Helper()
	waitFor(t, 10*time.Second, "systemd-socket-activate listening on "+strings.Join(addrs, ", "), func() bool {
		out := p.Output.String()
		for _, a := range addrs {
			if !strings.Contains(out, "Listening on "+a+" ") {
				return false
			}
		}
		return true
	})
}
