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
	l, err := ListenUnix(UnixSocket{Path: path, UID: -1, GID: -1, Mode: 0o640})
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
	l, err := ListenUnix(UnixSocket{Path: path, UID: -1, GID: -1, Mode: 0o600})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	// A live one is not stolen.
	if _, err := ListenUnix(UnixSocket{Path: path, UID: -1, GID: -1, Mode: 0o600}); err == nil ||
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
	if _, err := ListenUnix(UnixSocket{Path: path, UID: -1, GID: -1, Mode: 0o600}); err == nil ||
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
	if _, err := ListenUnix(UnixSocket{Path: filepath.Join(dir, "s"), UID: -1, GID: -1, Mode: 0o600}); err == nil ||
		!strings.Contains(err.Error(), "writable by others and not sticky") {
		t.Errorf("got %v", err)
	}
	if err := os.Chmod(dir, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	l, err := ListenUnix(UnixSocket{Path: filepath.Join(dir, "s"), UID: -1, GID: -1, Mode: 0o600})
	if err != nil {
		t.Fatalf("sticky directory refused: %v", err)
	}
	l.Close()
}

func TestActivatedFor(t *testing.T) {
	a, b, c := &net.UnixListener{}, &net.UnixListener{}, &net.UnixListener{}
	act := Activated{"postfix": {a}, "shitenno-dovecot.socket": {b}, "other": {c}}
	if got := act.For("postfix"); len(got) != 1 || got[0] != a {
		t.Errorf("postfix: %v", got)
	}
	if got := act.For("dovecot"); len(got) != 1 || got[0] != b {
		t.Errorf("dovecot: %v", got)
	}
	unnamed := Activated{"LISTEN_FD_3": {c}}
	if got := unnamed.For("nginx"); len(got) != 1 || got[0] != c {
		t.Errorf("unnamed fds: %v", got)
	}
}
