package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/shitenno/shitenno/pkg/config"
)

// The brute-force control socket: `shitenno-NAME blocked` and
// `shitenno-NAME unblock NET` reach the running daemon through a unix
// socket next to its own (SocketPrefix-NAME-control). It is bound before
// the privilege drop, so the file belongs to root with mode 0600, and the
// daemon also checks every peer's credentials (SO_PEERCRED): only root or
// the daemon's own uid are served. A local user therefore can neither
// list nor release anything, even if the file mode were changed.

// ControlFDName is the FileDescriptorName of the control socket unit
// (shitenno-NAME-control.socket: root's, mode 0600, made by systemd).
const ControlFDName = "control"

// controlTimeout bounds one control exchange.
const controlTimeout = 5 * time.Second

// controlSocket is the control socket path for daemon name.
func controlSocket(cfg *config.Config, name string) string {
	return cfg.ResolveSocket(name + "-control")
}

// listenControl binds the control socket, mode 0600; a stale socket file
// left by a crash is replaced, anything else at the path is an error.
func listenControl(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another daemon is running", path)
		}
		_ = os.Remove(path)
	}
	old := syscall.Umask(0o177) // no window where the file is wider than 0600
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// peerAllowed reports whether the peer of c is root or our own uid.
func peerAllowed(c net.Conn) bool {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return false
	}
	return cred.Uid == 0 || int(cred.Uid) == os.Getuid()
}

// serveControl answers control requests until l is closed.
func (r *runtime) serveControl(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.env.Logger.Warn("control socket accept failed", "err", err)
			}
			return
		}
		go r.controlConn(c)
	}
}

func (r *runtime) controlConn(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(controlTimeout))
	if !peerAllowed(c) {
		r.env.Logger.Warn("control request refused: peer is neither root nor the daemon's user")
		fmt.Fprintln(c, "ERR permission denied")
		return
	}
	line, err := bufio.NewReader(io.LimitReader(c, 512)).ReadString('\n')
	if err != nil {
		return
	}
	cmd, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	lim := r.env.Limiter
	switch cmd {
	case "blocked":
		for _, b := range lim.Blocked() {
			fmt.Fprintln(c, b.String())
		}
		fmt.Fprintln(c, "OK")
	case "unblock":
		ok, err := lim.Unblock(arg)
		switch {
		case err != nil:
			fmt.Fprintf(c, "ERR %q: not an address or network\n", arg)
		case !ok:
			fmt.Fprintf(c, "ERR %s: not blocked\n", arg)
		default:
			fmt.Fprintln(c, "OK")
		}
	default:
		fmt.Fprintln(c, "ERR unknown command")
	}
}

// control is the client side: `blocked` or `unblock NET`.
func (p Program) control(cfg *config.Config, args []string, stdout, stderr io.Writer) int {
	bin := "shitenno-" + p.Name
	req := args[0]
	switch {
	case args[0] == "blocked" && len(args) == 1:
	case args[0] == "unblock" && len(args) == 2 && !strings.ContainsAny(args[1], " \r\n"):
		req += " " + args[1]
	default:
		fmt.Fprintf(stderr, "usage: %s blocked | %s unblock NETWORK|ADDRESS|user:NAME\n", bin, bin)
		return ExitConfig
	}
	path := controlSocket(cfg, p.Name)
	c, err := net.DialTimeout("unix", path, controlTimeout)
	if err != nil {
		fmt.Fprintf(stderr, "%s: cannot reach the daemon at %s: %v\n", bin, path, err)
		return ExitFailure
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(controlTimeout))
	fmt.Fprintln(c, req)
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "OK":
			return ExitOK
		case strings.HasPrefix(l, "ERR "):
			fmt.Fprintf(stderr, "%s: %s\n", bin, strings.TrimPrefix(l, "ERR "))
			return ExitFailure
		}
		fmt.Fprintln(stdout, l)
	}
	fmt.Fprintf(stderr, "%s: no answer from the daemon\n", bin)
	return ExitFailure
}
