package daemon

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListenUnixModeAndCleanup(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s")
	l, err := listenUnix(unixSocket{Path: path, UID: -1, GID: -1, Mode: 0o640})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want socket 0640", fi.Mode())
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	l.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after Close: %v", err)
	}
}

func TestListenUnixStaleAndLive(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s")
	// A stale socket (nobody listening) is replaced.
	old, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close()
	l, err := listenUnix(unixSocket{Path: path, UID: -1, GID: -1, Mode: 0o600})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	// A live one is not stolen.
	if _, err := listenUnix(unixSocket{Path: path, UID: -1, GID: -1, Mode: 0o600}); err == nil ||
		!strings.Contains(err.Error(), "another process is listening") {
		t.Errorf("live socket: %v", err)
	}
	l.Close()
}

func TestListenUnixRefusesNonSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "file")
	if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := listenUnix(unixSocket{Path: path, UID: -1, GID: -1, Mode: 0o600}); err == nil ||
		!strings.Contains(err.Error(), "not a socket") {
		t.Errorf("got %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Error("the file was touched")
	}
}

func TestListenUnixRefusesOpenDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := listenUnix(unixSocket{Path: filepath.Join(dir, "s"), UID: -1, GID: -1, Mode: 0o600}); err == nil ||
		!strings.Contains(err.Error(), "writable by others and not sticky") {
		t.Errorf("got %v", err)
	}
	if err := os.Chmod(dir, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	l, err := listenUnix(unixSocket{Path: filepath.Join(dir, "s"), UID: -1, GID: -1, Mode: 0o600})
	if err != nil {
		t.Fatalf("sticky directory refused: %v", err)
	}
	l.Close()
}

func tcpListener(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestActivatedAssign: systemd's sockets go to the endpoint named by
// their FileDescriptorName (or an alias); endpoints sharing a name are
// told apart by address; unnamed sockets all go to the main listener; a
// named socket nobody uses is refused.
func TestActivatedAssign(t *testing.T) {
	sm, sasl, t1, t2 := tcpListener(t), tcpListener(t), tcpListener(t), tcpListener(t)
	build := func(*Env) (Server, error) { return nil, nil }
	eps := []Endpoint{
		{Name: "socketmap", Aliases: []string{"postfix", "shitenno-postfix.socket"}, Build: build},
		{Name: "sasl", Build: build},
		{Name: "tcptable", Listen: t1.Addr().String(), Key: "Postfix.TCPTable.Listen", Unit: "shitenno-postfix-tcptable@.socket", Build: build},
		{Name: "tcptable", Listen: t2.Addr().String(), Key: "Postfix.TCPTable.Listen", Unit: "shitenno-postfix-tcptable@.socket", Build: build},
	}
	got, err := activatedFDs{"shitenno-postfix.socket": {sm}, "sasl": {sasl}, "tcptable": {t2, t1}}.assign(eps, kinds(eps))
	if err != nil {
		t.Fatal(err)
	}
	want := [][]net.Listener{{sm}, {sasl}, {t1}, {t2}}
	for i := range want {
		if len(got[i]) != 1 || got[i][0] != want[i][0] {
			t.Errorf("endpoint %d (%s): got %v, want %v", i, eps[i].Name, got[i], want[i])
		}
	}
	got, err = activatedFDs{"LISTEN_FD_3": {sm}, "LISTEN_FD_4": {sasl}}.assign(eps, kinds(eps))
	if err != nil || len(got[0]) != 2 || len(got[1]) != 0 {
		t.Errorf("unnamed sockets: %v, %v; want both on the main listener", got, err)
	}
	if _, err := (activatedFDs{"postfix": {sm}, "polcy": {sasl}}).assign(eps, kinds(eps)); err == nil || !strings.Contains(err.Error(), "polcy") {
		t.Errorf("misnamed socket: err = %v, want it named", err)
	}
	other := tcpListener(t)
	_, port, _ := net.SplitHostPort(other.Addr().String())
	if _, err := (activatedFDs{"tcptable": {t1, other}}).assign(eps, kinds(eps)); err == nil {
		t.Error("tcptable socket on an unconfigured address accepted")
	} else if !strings.Contains(err.Error(), "Postfix.TCPTable.Listen") || !strings.Contains(err.Error(), "shitenno-postfix-tcptable@"+port+".socket") {
		t.Errorf("unconfigured tcptable address: %v, want the key and the unit named", err)
	}
	// A placeholder (no table configured at all): the name is known, the
	// error says what to configure and which unit passed the socket.
	ph := []Endpoint{eps[0], {Name: "tcptable", Key: "Postfix.TCPTable.Listen", Unit: "shitenno-postfix-tcptable@.socket"}}
	_, err = (activatedFDs{"postfix": {sm}, "tcptable": {other}}).assign(ph, kinds(ph))
	if err == nil || !strings.Contains(err.Error(), "Postfix.TCPTable.Listen is not configured") ||
		!strings.Contains(err.Error(), "systemctl disable --now shitenno-postfix-tcptable@"+port+".socket") {
		t.Errorf("tcptable socket without a table: %v", err)
	}
}

// symlinkTarget makes a socket directory, a socket path in it, and a
// victim file (mode 0600) holding content elsewhere, for the tests of a
// symlink put where the socket goes.
func symlinkTarget(t *testing.T, content string) (dir, path, victim string) {
	t.Helper()
	dir = t.TempDir()
	victim = filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, filepath.Join(dir, "s"), victim
}

// TestListenUnixRaceNeverChmodsAnotherFile: whoever can write the socket
// directory and swaps the fresh socket for a symlink between bind and
// chmod must not get the daemon (root) to chmod or chown the target.
func TestListenUnixRaceNeverChmodsAnotherFile(t *testing.T) {
	dir, path, victim := symlinkTarget(t, "x")
	afterBind = func() {
		os.Remove(path)
		if err := os.Symlink(victim, path); err != nil {
			t.Error(err)
		}
	}
	defer func() { afterBind = nil }()
	l, err := listenUnix(unixSocket{Path: path, UID: -1, GID: -1, Mode: 0o666})
	if err == nil {
		defer l.Close()
	}
	if fi, _ := os.Stat(victim); fi.Mode().Perm() != 0o600 {
		t.Fatalf("victim chmodded to %v through the symlink", fi.Mode().Perm())
	}
	if err != nil {
		t.Fatalf("listenUnix: %v", err)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o666 {
		t.Fatalf("%s: %v %v, want the socket with mode 0666", path, fi.Mode(), err)
	}
	if _, err := os.Stat(victim); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left behind in the socket directory: %v", entries)
	}
}

// TestListenUnixReplacesSymlink: a symlink at the socket path is removed,
// never followed (neither its target nor the target's directory is
// touched).
func TestListenUnixReplacesSymlink(t *testing.T) {
	_, path, victim := symlinkTarget(t, "precious")
	if err := os.Symlink(victim, path); err != nil {
		t.Fatal(err)
	}
	l, err := listenUnix(unixSocket{Path: path, UID: -1, GID: -1, Mode: 0o660})
	if err != nil {
		t.Fatalf("symlink at the path: %v", err)
	}
	defer l.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("%s is not the socket: %v %v", path, fi.Mode(), err)
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "precious" {
		t.Fatalf("victim: %q %v", b, err)
	}
}

// TestListenUnixKeepsSocketOnOtherDialError: only "connection refused"
// proves a socket stale. Any other answer (here a datagram socket, which
// refuses a stream connect with EPROTOTYPE; permission or timeout alike)
// is a start-up error naming the path, and the file stays.
func TestListenUnixKeepsSocketOnOtherDialError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s")
	g, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	_, err = listenUnix(unixSocket{Path: path, UID: -1, GID: -1, Mode: 0o600})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("got %v, want an error naming %s", err, path)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("the other socket was removed: %v", err)
	}
}
