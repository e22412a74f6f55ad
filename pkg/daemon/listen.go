package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
)

// activatedFDs holds the sockets systemd passed, by FileDescriptorName. It is
// read once per process: go-systemd unsets LISTEN_* on the first call.
type activatedFDs map[string][]net.Listener

// takeActivated reads the systemd socket-activation environment. It
// returns nil when the process was not socket-activated (LISTEN_PID is
// checked by go-systemd, so a wrapper cannot steal the fds).
func takeActivated() (activatedFDs, error) {
	if os.Getenv("LISTEN_FDS") == "" {
		return nil, nil
	}
	m, err := activation.ListenersWithNames()
	if err != nil {
		return nil, fmt.Errorf("systemd socket activation: %w", err)
	}
	if len(m) == 0 {
		return nil, nil
	}
	return activatedFDs(m), nil
}

// unixSocket describes a unix socket shitenno creates itself.
type unixSocket struct {
	Path string
	UID  int // -1: unchanged
	GID  int // -1: unchanged
	Mode os.FileMode
}

// afterBind, when set by a test, runs between bind and chmod.
var afterBind func()

// privPrefix starts the name of listenUnix's private bind directory;
// os.MkdirTemp appends a random number of up to 10 digits.
const privPrefix = ".shitenno"

// checkSocketPath refuses a socket path that is too long to bind as
// listenUnix does: sun_path holds 107 bytes and a NUL (unix(7)), and the
// bind path is dir/.shitennoNNNNNNNNNN/s. The widest random part counts,
// so that a path is refused on every start-up or on none, and by
// --check-config too (socketDirProblems).
func checkSocketPath(path string) error {
	worst := len(filepath.Dir(path)) + len("/"+privPrefix) + 10 + len("/s")
	if n := max(worst, len(path)); n > 107 {
		return fmt.Errorf("socket %s: path too long to bind safely (%d bytes with the private bind directory, at most 107)", path, n)
	}
	return nil
}

// listenUnix creates the socket file with its final owner and mode before
// anyone can reach it: bind inside a fresh directory of the socket's
// directory that only this process can enter (mode 0700), chown and chmod
// the node there, listen, then rename it into place. Nothing is ever done
// by the final path but the rename, which replaces a symlink there
// instead of following it, so a local user who can write the socket
// directory cannot turn the daemon's chmod or chown against another file.
// A stale socket left by a dead instance is removed (only when connecting
// to it is refused); a live socket, any other file at the path, or any
// other connect error is refused with the path named.
//
// Complexity: each branch is one of the socket-file safety rules (issue
// #18), in the order they must hold.
func listenUnix(s unixSocket) (net.Listener, error) {
	dir := filepath.Dir(s.Path)
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	if err := checkSocketPath(s.Path); err != nil {
		return nil, err // before removeStale: a refused path touches nothing
	}
	if err := removeStale(s.Path); err != nil {
		return nil, err
	}
	priv, err := os.MkdirTemp(dir, privPrefix)
	if err != nil {
		return nil, fmt.Errorf("socket %s: private bind directory: %w", s.Path, err)
	}
	defer os.RemoveAll(priv)
	tmp := filepath.Join(priv, "s")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", s.Path, err)
	}
	closeFD := true
	defer func() {
		if closeFD {
			syscall.Close(fd)
		}
	}()
	old := syscall.Umask(0o777)
	err = syscall.Bind(fd, &syscall.SockaddrUnix{Name: tmp})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("bind %s: %w", s.Path, err)
	}
	if afterBind != nil {
		afterBind()
	}
	if s.UID >= 0 || s.GID >= 0 {
		if err := os.Lchown(tmp, s.UID, s.GID); err != nil {
			return nil, fmt.Errorf("chown %s: %w", s.Path, err)
		}
	}
	if err := os.Chmod(tmp, s.Mode.Perm()); err != nil {
		return nil, fmt.Errorf("chmod %s: %w", s.Path, err)
	}
	if err := syscall.Listen(fd, 1024); err != nil {
		return nil, fmt.Errorf("listen %s: %w", s.Path, err)
	}
	if err := os.Rename(tmp, s.Path); err != nil {
		return nil, fmt.Errorf("socket %s: moving into place: %w", s.Path, err)
	}
	f := os.NewFile(uintptr(fd), s.Path)
	closeFD = false
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		os.Remove(s.Path)
		return nil, fmt.Errorf("listen %s: %w", s.Path, err)
	}
	return &ownedListener{Listener: l, path: s.Path}, nil
}

// ownedListener removes the socket file it created when closed. A
// net.FileListener does not unlink on Close by itself.
type ownedListener struct {
	net.Listener
	path string
}

// Addr is the socket's final path: the kernel still reports the name it
// was bound under, inside the private directory that is gone by now.
func (o *ownedListener) Addr() net.Addr { return &net.UnixAddr{Name: o.path, Net: "unix"} }

func (o *ownedListener) Close() error {
	err := o.Listener.Close()
	if rmErr := os.Remove(o.path); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) && err == nil {
		err = rmErr
	}
	return err
}

// checkDir refuses a socket directory others can write to without the
// sticky bit: anyone could then replace the socket with their own.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) && pe.Path == dir {
			err = pe.Err // the path is named already
		}
		return fmt.Errorf("socket directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("socket directory %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o002 != 0 && fi.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("socket directory %s is writable by others and not sticky: refusing", dir)
	}
	return nil
}

// removeStale clears the socket path: nothing there, a symlink (removed,
// never followed), or a socket nobody listens on. Only ECONNREFUSED
// proves a socket dead; a permission error or a timeout may hide a live
// daemon, so they stop the start-up instead.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
	case fi.Mode()&os.ModeSocket == 0:
		return fmt.Errorf("socket %s: exists and is not a socket: refusing to remove it", path)
	default:
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("socket %s: another process is listening on it", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("socket %s: exists and cannot be proven stale (%w): remove it by hand if no daemon uses it", path, err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("socket %s: removing stale socket: %w", path, err)
	}
	return nil
}

// listenTCP listens on a TCP address.
func listenTCP(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return l, nil
}

// describeListener names a listener for logs and --check-config.
func describeListener(l net.Listener) string {
	a := l.Addr()
	return a.Network() + ":" + strings.TrimPrefix(a.String(), "@")
}
