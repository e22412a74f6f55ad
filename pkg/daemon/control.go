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

// listenControl binds the control socket, mode 0600, as every socket is
// (listenUnix): bound and given its mode in a private directory, then
// moved into place, so that nothing at the path (a symlink swapped in by
// whoever may write the directory) is ever chmodded as root; a socket
// file is replaced only when proven stale.
func listenControl(path string) (net.Listener, error) {
	return listenUnix(unixSocket{Path: path, UID: -1, GID: -1, Mode: 0o600})
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
