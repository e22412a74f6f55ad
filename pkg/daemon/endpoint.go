package daemon

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/shitenno/shitenno/pkg/config"
)

// Endpoint is one protocol listener of a program: its sockets and the
// server that answers on them. shitenno-postfix has several (socketmap,
// SMTP AUTH, policy, one per tcp_table); each gets its own Server, so a
// flood or a bug on one does not stop the others.
type Endpoint struct {
	// Name is the listener kind: the systemd FileDescriptorName= that
	// selects its activated sockets, and its name in logs.
	Name string
	// Aliases are further FileDescriptorNames accepted for it (the names
	// of shitenno's first socket units).
	Aliases []string
	// Socket is the resolved unix socket path, "" for none. Owner and
	// mode come from the daemon's section.
	Socket string
	// Listen is a TCP address, "" for none.
	Listen string
	// Key names the configuration key of Socket/Listen in errors, e.g.
	// "Postfix.SASLSocket"; empty for the section's Socket.
	Key string
	// Unit is the systemd socket unit shipped for this listener
	// (init/systemd), named in errors and by --check-config. Empty means
	// shitenno-<program>-<Name>.socket; a template (name@.socket) is
	// instantiated with the port of the listener's TCP address.
	Unit string
	// Build makes the server once the backend client exists (after the
	// privilege drop). Nil marks a placeholder: a kind systemd may pass
	// sockets for that cannot be served without configuration (a
	// tcp_table needs its Verb), so such a socket is an error naming Key
	// and Unit rather than an unknown name.
	Build func(env *Env) (Server, error)
}

// primaryKinds maps a daemon to the kind of its main listener.
var primaryKinds = map[string]string{"postfix": "socketmap", "dovecot": "dict", "nginx": "authhttp"}

// Endpoints lists every listener the program knows, configured or not:
// the main one from the section's Socket and Listen first, then
// p.Extra's, each with its Unit filled in. These are the listeners a
// systemd socket unit may pass a socket for (tests check the shipped
// units against them).
func (p Program) Endpoints(cfg *config.Config) []Endpoint {
	sec := cfg.Section(p.Name)
	main := Endpoint{
		Name:    primaryKinds[p.Name],
		Aliases: []string{p.Name, "shitenno-" + p.Name, "shitenno-" + p.Name + ".socket"},
		Socket:  cfg.SocketPath(sec),
		Listen:  sec.Listen,
		Unit:    "shitenno-" + p.Name + ".socket",
		Build:   p.Build,
	}
	eps := []Endpoint{main}
	if p.Extra != nil {
		for _, e := range p.Extra(cfg) {
			if e.Unit == "" {
				e.Unit = "shitenno-" + p.Name + "-" + e.Name + ".socket"
			}
			eps = append(eps, e)
		}
	}
	return eps
}

// endpoints lists the listeners the program serves: its main one, then
// the extras that are configured or that systemd passed sockets for. An
// extra with only a socket from systemd is served with the defaults of
// its other keys: enabling its socket unit is how an administrator turns
// it on under systemd, and refusing to start would also take down the
// main listener (for SMTP AUTH, a missing listener makes every smtpd
// exit before its banner). Placeholders are kept only when systemd passed
// them a socket, so that assign can name what is missing.
func (p Program) endpoints(cfg *config.Config, act activatedFDs) []Endpoint {
	all := p.Endpoints(cfg)
	eps := []Endpoint{all[0]}
	for _, e := range all[1:] {
		if (e.Build != nil && (e.Socket != "" || e.Listen != "")) || act.has(e.names()...) {
			eps = append(eps, e)
		}
	}
	return eps
}

// unit is the socket unit that would pass the endpoint's socket on addr
// (a template is instantiated with addr's port, or Listen's, else PORT).
func (e Endpoint) unit(addr net.Addr) string {
	before, ok := strings.CutSuffix(e.Unit, "@.socket")
	if !ok {
		return e.Unit
	}
	port := "PORT"
	if a, ok := addr.(*net.TCPAddr); ok {
		port = strconv.Itoa(a.Port)
	} else if _, pt, err := net.SplitHostPort(e.Listen); err == nil {
		port = pt
	}
	return before + "@" + port + ".socket"
}

// takeControl removes and returns the brute-force control socket systemd
// passed (FileDescriptorName=control): it is no protocol listener.
func (a activatedFDs) takeControl() (activatedFDs, []net.Listener) {
	ls := a[ControlFDName]
	if ls == nil {
		return a, nil
	}
	delete(a, ControlFDName)
	if len(a) == 0 {
		a = nil
	}
	return a, ls
}

func (e Endpoint) names() []string { return append([]string{e.Name}, e.Aliases...) }

// has reports whether systemd passed a socket under one of names.
func (a activatedFDs) has(names ...string) bool {
	for _, n := range names {
		if len(a[n]) > 0 {
			return true
		}
	}
	return false
}

// assign distributes systemd's sockets over the endpoints by
// FileDescriptorName. When no socket carries a name any endpoint knows
// (units without FileDescriptorName=), they all go to the main listener,
// as before shitenno had several. Endpoints sharing a name (tcp_table)
// are told apart by their Listen address. A named socket nobody uses is an
// error: silently dropping it would leave a peer connecting to nothing.
// valid lists, for that error, every name the program knows.
//
// Complexity: each branch is one way systemd's sockets and the
// configuration can disagree, each with its own error.
func (a activatedFDs) assign(eps []Endpoint, valid []string) ([][]net.Listener, error) {
	out := make([][]net.Listener, len(eps))
	known := map[string]bool{}
	for _, e := range eps {
		for _, n := range e.names() {
			known[n] = true
		}
	}
	var unknown []string
	for n := range a {
		if !known[n] {
			unknown = append(unknown, n)
		}
	}
	sort.Strings(unknown)
	if len(unknown) == len(a) {
		for _, n := range unknown {
			out[0] = append(out[0], a[n]...)
		}
		return out, nil
	}
	if len(unknown) > 0 {
		return nil, mismatchf("systemd passed sockets named %s that no listener of this program uses (FileDescriptorName= must be one of %s)",
			strings.Join(unknown, ", "), strings.Join(valid, ", "))
	}
	for n, ls := range a {
		var idx []int
		for i, e := range eps {
			if slices.Contains(e.names(), n) {
				idx = append(idx, i)
			}
		}
		if len(idx) == 1 && eps[idx[0]].Build == nil {
			e := eps[idx[0]]
			return nil, mismatchf("systemd passed a %s socket on %s (%s) but %s is not configured: set it (to that address), or systemctl disable --now %s",
				n, ls[0].Addr(), e.unit(ls[0].Addr()), e.Key, e.unit(ls[0].Addr()))
		}
		if len(idx) == 1 {
			out[idx[0]] = append(out[idx[0]], ls...)
			continue
		}
		for _, l := range ls {
			i := matchAddr(eps, idx, l.Addr())
			if i < 0 {
				e := eps[idx[0]]
				return nil, mismatchf("systemd passed a %s socket on %s (%s) that matches no configured %s: add it, or systemctl disable --now %s",
					n, l.Addr(), e.unit(l.Addr()), e.Key, e.unit(l.Addr()))
			}
			out[i] = append(out[i], l)
		}
	}
	return out, nil
}

// mismatchError is a socket from systemd that the configuration has no
// listener for: the units and the configuration disagree, which no
// restart fixes, so the daemon exits with ExitConfig (the units'
// RestartPreventExitStatus=2) instead of being restarted in a loop.
type mismatchError struct{ msg string }

func (e *mismatchError) Error() string { return e.msg }

func mismatchf(format string, args ...any) error {
	return &mismatchError{fmt.Sprintf(format, args...)}
}

func kinds(eps []Endpoint) []string {
	var ks []string
	for _, e := range eps {
		if !slices.Contains(ks, e.Name) {
			ks = append(ks, e.Name)
		}
	}
	return ks
}

// matchAddr finds, among eps[idx], the endpoint whose Listen is addr.
func matchAddr(eps []Endpoint, idx []int, addr net.Addr) int {
	for _, i := range idx {
		want, err := net.ResolveTCPAddr("tcp", eps[i].Listen)
		if err != nil {
			continue
		}
		got, ok := addr.(*net.TCPAddr)
		if ok && got.Port == want.Port && (want.IP == nil || want.IP.Equal(got.IP)) {
			return i
		}
	}
	return -1
}

// open creates the endpoint's own sockets: the unix socket with the
// section's owner and mode, and the TCP listener.
func (e Endpoint) open(cfg *config.Config, sec *config.Service, section string) ([]net.Listener, error) {
	var ls []net.Listener
	if e.Socket != "" {
		uid, err := sec.UID.UserID()
		if err != nil {
			return nil, fmt.Errorf("%s: [%s] UID: %w", cfg.File, section, err)
		}
		gid, err := sec.GID.GroupID()
		if err != nil {
			return nil, fmt.Errorf("%s: [%s] GID: %w", cfg.File, section, err)
		}
		l, err := listenUnix(unixSocket{Path: e.Socket, UID: uid, GID: gid, Mode: os.FileMode(sec.Mode)})
		if err != nil {
			return nil, e.keyErr(err)
		}
		ls = append(ls, l)
	}
	if e.Listen != "" {
		l, err := listenTCP(e.Listen)
		if err != nil {
			closeListeners(ls)
			return nil, e.keyErr(err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// socketDirProblems checks the directory and path length of every unix
// socket of eps as listenUnix will (checkDir, checkSocketPath), creating
// nothing: --check-config and start-up refuse the same sockets, at the
// line of the key that put the socket there. systemd tells whether the other listeners came from
// systemd (the error then says which socket unit would make the socket).
func (p Program) socketDirProblems(cfg *config.Config, eps []Endpoint, systemd bool) config.Errors {
	var errs config.Errors
	for _, e := range eps {
		if e.Socket == "" {
			continue
		}
		err := checkDir(filepath.Dir(e.Socket))
		if err == nil {
			err = checkSocketPath(e.Socket)
		}
		if err != nil {
			ce := p.socketKeyError(cfg, e, err)
			if systemd {
				ce.Msg += e.systemdHint()
			}
			errs = append(errs, ce)
		}
	}
	return errs
}

// systemdHint ends an error about a socket the daemon could not create
// while systemd passed the others: under systemd the daemon runs
// unprivileged on a read-only file system, so the socket unit must
// create it.
func (e Endpoint) systemdHint() string {
	return fmt.Sprintf(" (under systemd, systemctl enable --now %s creates it, then restart the service)", e.unit(nil))
}

// socketKeyError locates err at the endpoint's socket key or, when that
// key is left to its default name, at SocketPrefix, which then chose the
// directory.
func (p Program) socketKeyError(cfg *config.Config, e Endpoint, err error) *config.Error {
	key := e.Key
	if key == "" {
		key = p.section() + ".Socket"
	}
	ce := cfg.KeyError(key, "%v", err)
	if pe := cfg.KeyError("SocketPrefix", "%v", err); ce.Line == 0 && pe.Line > 0 {
		return pe
	}
	return ce
}

func (e Endpoint) keyErr(err error) error {
	if e.Key == "" {
		return err
	}
	return fmt.Errorf("%s: %w", e.Key, err)
}

// listenAll opens every endpoint's sockets, or takes systemd's: an
// endpoint systemd passed sockets for uses only those; the others open
// what the configuration says. On error nothing stays open. act is what
// systemd passed (nil: not socket-activated), the control socket taken out.
func (p Program) listenAll(cfg *config.Config, act activatedFDs) ([]Endpoint, [][]net.Listener, error) {
	var err error
	eps := p.endpoints(cfg, act)
	got := make([][]net.Listener, len(eps))
	if act != nil {
		if got, err = act.assign(eps, kinds(p.Endpoints(cfg))); err != nil {
			for _, ls := range act {
				closeListeners(ls)
			}
			return nil, nil, err
		}
	}
	var own []Endpoint
	for i, e := range eps {
		if len(got[i]) == 0 {
			own = append(own, e)
		}
	}
	if errs := p.socketDirProblems(cfg, own, act != nil); len(errs) > 0 {
		// Checked before any socket exists, like --check-config does:
		// a configuration error, not a failure to retry.
		for _, ls := range got {
			closeListeners(ls)
		}
		return nil, nil, errs
	}
	for i, e := range eps {
		if len(got[i]) > 0 {
			continue
		}
		ls, err := e.open(cfg, cfg.Section(p.Name), p.section())
		if err != nil {
			for _, ls := range got {
				closeListeners(ls)
			}
			if act != nil && e.Socket != "" {
				err = fmt.Errorf("%w%s", err, e.systemdHint())
			}
			return nil, nil, err
		}
		got[i] = ls
	}
	if len(got[0]) == 0 && len(eps) == 1 {
		return nil, nil, errors.New("nothing to listen on: set Socket or Listen")
	}
	return eps, got, nil
}

func closeListeners(ls []net.Listener) {
	for _, l := range ls {
		l.Close()
	}
}

// describe prints, for --check-config, what the daemon would listen on.
func (p Program) describe(w io.Writer, cfg *config.Config) {
	sec := cfg.Section(p.Name)
	fmt.Fprintf(w, "configuration %s is valid\n", cfg.File)
	if fds := os.Getenv("LISTEN_FDS"); fds != "" {
		fmt.Fprintf(w, "listen: sockets passed by systemd (LISTEN_FDS=%s), by FileDescriptorName\n", fds)
	}
	// Every listener the program has, configured or not, so that an
	// administrator sees what can be turned on and with which key or
	// socket unit.
	for _, e := range p.Endpoints(cfg) {
		configured := e.Build != nil && (e.Socket != "" || e.Listen != "")
		if e.Socket != "" && configured {
			fmt.Fprintf(w, "listen: unix:%s (%s, owner %s:%s, mode %04o; systemd: %s)\n", e.Socket, e.Name, sec.UID, sec.GID, uint32(sec.Mode), e.unit(nil))
		}
		if e.Listen != "" && configured {
			fmt.Fprintf(w, "listen: tcp:%s (%s; systemd: %s)\n", e.Listen, e.Name, e.unit(nil))
		}
		key := e.Key
		if key == "" {
			key = "[" + p.section() + "] Socket or Listen"
		}
		switch {
		case configured:
		case e.Build == nil:
			fmt.Fprintf(w, "listen: %s off (set %s; under systemd also enable %s)\n", e.Name, key, e.unit(nil))
		default:
			fmt.Fprintf(w, "listen: %s off (set %s, or under systemd enable %s)\n", e.Name, key, e.unit(nil))
		}
	}
	if sec.HealthListen != "" {
		fmt.Fprintf(w, "health: http://%s/healthz\n", sec.HealthListen)
	}
	for _, u := range cfg.RedactedURLs() {
		fmt.Fprintf(w, "backend: POST %s<Verb> (timeout %s)\n", u, cfg.Timeout.Duration)
	}
}
