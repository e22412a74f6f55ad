package daemon

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shitenno/shitenno/pkg/config"
)

// TestCheckConfigFindsUnknownAccounts: --check-config finds what start-up
// would refuse, with exit 2 and every problem located; start-up refuses
// the same file with the same status (a configuration error: do not
// restart).
func TestCheckConfigFindsUnknownAccounts(t *testing.T) {
	dir := shortDir(t)
	cfg := filepath.Join(dir, "c.conf")
	writeConfig(t, cfg, postfixConfig("http://127.0.0.1:1", filepath.Join(dir, "s"),
		"")+"UID = \"no-such-user-shitenno\"\nUser = \"no-such-user-shitenno\"\n")
	for _, args := range [][]string{{"--config", cfg, "--check-config"}, {"--config", cfg}} {
		var out, errb bytes.Buffer
		code := postfixProgram().run(args, &out, &errb, make(chan os.Signal))
		if code != ExitConfig {
			t.Fatalf("%v: exit %d, want %d\n%s", args, code, ExitConfig, errb.String())
		}
		for _, want := range []string{cfg + ":7: Postfix.UID: unknown user", cfg + ":8: Postfix.User: unknown user"} {
			if !strings.Contains(errb.String(), want) {
				t.Errorf("%v: stderr lacks %q:\n%s", args, want, errb.String())
			}
		}
	}
}

// TestCheckConfigRedactsAndWarns: --check-config never prints a RemoteURL
// password, and warns when the file holding it is readable by everyone.
func TestCheckConfigRedactsAndWarns(t *testing.T) {
	dir := shortDir(t)
	cfg := filepath.Join(dir, "c.conf")
	writeConfig(t, cfg, postfixConfig("http://bob:s3cret@127.0.0.1:1", filepath.Join(dir, "s"), ""))
	if err := os.Chmod(cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := postfixProgram().run([]string{"--config", cfg, "--check-config"}, &out, &errb, make(chan os.Signal)); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	all := out.String() + errb.String()
	if strings.Contains(all, "s3cret") {
		t.Fatalf("password printed:\n%s", all)
	}
	if !strings.Contains(out.String(), "http://bob:[redacted]@127.0.0.1:1/api/") {
		t.Errorf("backend not shown:\n%s", out.String())
	}
	if !strings.Contains(errb.String(), "warning: "+cfg+" is readable by every local user") {
		t.Errorf("no warning:\n%s", errb.String())
	}
	if err := os.Chmod(cfg, 0o640); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	postfixProgram().run([]string{"--config", cfg, "--check-config"}, &out, &errb, make(chan os.Signal))
	if strings.Contains(errb.String(), "warning") {
		t.Errorf("warning for mode 0640:\n%s", errb.String())
	}
}

// checkBoth runs --check-config and start-up on cfg: both must exit 2
// with every want on stderr, and --check-config must not call the file
// valid.
func checkBoth(t *testing.T, p Program, cfg string, want ...string) {
	t.Helper()
	t.Setenv("JOURNAL_STREAM", "")
	for _, args := range [][]string{{"--config", cfg, "--check-config"}, {"--config", cfg}} {
		var out, errb bytes.Buffer
		code := p.run(args, &out, &errb, make(chan os.Signal))
		if code != ExitConfig {
			t.Errorf("%v: exit %d, want %d\nstdout: %s\nstderr: %s", args, code, ExitConfig, out.String(), errb.String())
		}
		for _, w := range want {
			if !strings.Contains(errb.String(), w) {
				t.Errorf("%v: stderr lacks %q:\n%s", args, w, errb.String())
			}
		}
		if strings.Contains(out.String(), "is valid") {
			t.Errorf("%v: a refused file called valid:\n%s", args, out.String())
		}
	}
}

// TestCheckConfigFindsListenerConflicts: two listeners on one socket or
// address are a configuration error for both --check-config and start-up.
func TestCheckConfigFindsListenerConflicts(t *testing.T) {
	dir := shortDir(t)
	cfg := filepath.Join(dir, "c.conf")
	sock := filepath.Join(dir, "s")
	writeConfig(t, cfg, postfixConfig("http://127.0.0.1:1", sock, "")+"SASLSocket = \""+sock+"\"\n")
	checkBoth(t, postfixProgram(), cfg, cfg+":7: Postfix.SASLSocket: \""+sock+"\" is also the socket of Postfix.Socket (line 5)")

	// The brute-force control socket (SocketPrefix-postfix-control) is
	// one of the daemon's sockets too.
	prefix := filepath.Join(dir, "p")
	writeConfig(t, cfg, "RemoteURL = \"http://127.0.0.1:1/\"\nSocketPrefix = \""+prefix+"\"\n[Postfix]\nPolicySocket = \"postfix-control\"\n")
	checkBoth(t, postfixProgram(), cfg, cfg+":4: Postfix.PolicySocket: \""+prefix+"-postfix-control\" is also the control socket, SocketPrefix + \"-postfix-control\" (line 2)")
}

// TestCheckConfigFindsBadSocketDirectory: a socket directory start-up
// would refuse (missing, or writable by others without the sticky bit) is
// found by --check-config, which creates nothing, and refused by
// start-up with the same status; both name the socket's key and line.
func TestCheckConfigFindsBadSocketDirectory(t *testing.T) {
	dir := shortDir(t)
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	cfg := filepath.Join(dir, "c.conf")
	writeConfig(t, cfg, postfixConfig("http://127.0.0.1:1", filepath.Join(open, "s"), "")+"PolicySocket = \""+filepath.Join(missing, "p")+"\"\n")
	p := postfixProgram()
	p.Extra = func(cfg *config.Config) []Endpoint {
		return []Endpoint{{Name: "policy", Socket: cfg.ResolveSocket(cfg.Postfix.PolicySocket), Key: "Postfix.PolicySocket", Build: p.Build}}
	}
	checkBoth(t, p, cfg,
		cfg+":5: Postfix.Socket: socket directory "+open+" is writable by others and not sticky: refusing",
		cfg+":7: Postfix.PolicySocket: socket directory "+missing+": no such file or directory")
	if entries, _ := os.ReadDir(open); len(entries) > 0 {
		t.Errorf("left in the socket directory: %v", entries)
	}

	// A relative Socket left to its default is SocketPrefix's doing.
	writeConfig(t, cfg, "RemoteURL = \"http://127.0.0.1:1/\"\nSocketPrefix = \""+filepath.Join(missing, "x")+"\"\n")
	checkBoth(t, postfixProgram(), cfg, cfg+":2: SocketPrefix: socket directory "+missing+": no such file or directory")
}

// TestCheckConfigFindsSocketPathTooLong: a socket whose private bind
// path could exceed sun_path's 107 bytes is refused by both, every time:
// the bind directory's random part varies in width, so a directory near
// the limit bound on some start-ups and not on others, and --check-config
// passed it.
func TestCheckConfigFindsSocketPathTooLong(t *testing.T) {
	base := shortDir(t)
	// The worst bind path is dir + "/.shitenno" + 10 digits + "/s".
	dir := base + "/" + strings.Repeat("d", 107-len(base)-len("/")-len("/.shitenno")-10-len("/s"))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(base, "c.conf")
	writeConfig(t, cfg, postfixConfig("http://127.0.0.1:1", filepath.Join(dir, "s"), ""))
	if _, err := listenUnix(unixSocket{Path: filepath.Join(dir, "ok"), UID: -1, GID: -1, Mode: 0o600}); err != nil {
		t.Fatalf("a directory one byte under the limit: %v", err)
	}
	dir += "d"
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, cfg, postfixConfig("http://127.0.0.1:1", filepath.Join(dir, "s"), ""))
	checkBoth(t, postfixProgram(), cfg, cfg+":5: Postfix.Socket: socket "+filepath.Join(dir, "s")+": path too long to bind safely")
	for range 20 {
		if l, err := listenUnix(unixSocket{Path: filepath.Join(dir, "s"), UID: -1, GID: -1, Mode: 0o600}); err == nil {
			l.Close()
			t.Fatal("bound a socket whose bind path may exceed 107 bytes")
		}
	}
}

// TestCheckConfigLocatesTLSFiles: a TLS file start-up cannot use is
// refused by both at the line of its key, and never after "valid".
func TestCheckConfigLocatesTLSFiles(t *testing.T) {
	dir := shortDir(t)
	cfg := filepath.Join(dir, "c.conf")
	ca := filepath.Join(dir, "nonexistent", "ca.pem")
	for _, tc := range []struct{ extra, want string }{
		{"CertPool = [\"" + ca + "\"]", cfg + ":3: CertPool: " + ca + ": open " + ca + ": no such file or directory"},
		{"ClientCert = \"" + ca + "\"", cfg + ":3: ClientCert: " + ca + ": open "},
		{"HPKP = [\"abc\"]", cfg + ":3: HPKP: "},
	} {
		writeConfig(t, cfg, postfixConfig("https://127.0.0.1:1", filepath.Join(dir, "s"), tc.extra))
		checkBoth(t, postfixProgram(), cfg, tc.want)
	}
}

// TestDevLogMissing: with DevLog a socket nobody listens on, a start-up
// failure still reaches stderr, and both modes warn that the log goes
// nowhere yet; a DevLog start-up cannot use is refused by both.
func TestDevLogMissing(t *testing.T) {
	dir := shortDir(t)
	cfg := filepath.Join(dir, "c.conf")
	logSock := filepath.Join(dir, "log")
	writeConfig(t, cfg, postfixConfig("http://127.0.0.1:1", filepath.Join(dir, "missing", "s"), "DevLog = \""+logSock+"\""))
	checkBoth(t, postfixProgram(), cfg, "warning: "+cfg+":3: DevLog: "+logSock+": no such file or directory",
		cfg+":5: Postfix.Socket: socket directory "+filepath.Join(dir, "missing")+": no such file or directory")

	writeConfig(t, cfg, postfixConfig("http://127.0.0.1:1", filepath.Join(dir, "s"), "DevLog = \"syslog\""))
	checkBoth(t, postfixProgram(), cfg, cfg+":3: DevLog: want stderr, an absolute socket path, udp://host:port or tcp://host:port, not \"syslog\"")
}
