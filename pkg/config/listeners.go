package config

import (
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// listener is one socket a daemon opens, for the conflict check.
type listener struct {
	key  string // configuration key, e.g. "Postfix.SASLSocket"
	what string // what messages call it instead of "the socket of <key>"
	line int    // 0: not set in the file (a default)
	unix string // resolved socket path, or ""
	tcp  string // host:port, or ""
}

// listeners returns every socket the daemon of section (its key in the
// file: "Postfix") would open from its keys, set or defaulted.
func (c *Config) listeners(section string) []listener {
	var ls []listener
	add := func(key, unix, tcp string, line int) {
		if unix != "" || tcp != "" {
			ls = append(ls, listener{key: key, line: line, unix: unix, tcp: tcp})
		}
	}
	sock := func(key, name string) { add(section+"."+key, c.ResolveSocket(name), "", c.lines[section+"."+key]) }
	addr := func(key, a string) { add(section+"."+key, "", a, c.lines[section+"."+key]) }
	s := c.services()[section]
	sock("Socket", s.Socket)
	addr("Listen", s.Listen)
	addr("HealthListen", s.HealthListen)
	if section == "Postfix" {
		pf := &c.Postfix
		sock("SASLSocket", pf.SASLSocket)
		addr("SASLListen", pf.SASLListen)
		sock("PolicySocket", pf.PolicySocket)
		addr("PolicyListen", pf.PolicyListen)
		for i, t := range pf.TCPTable {
			add("Postfix.TCPTable.Listen", "", t.Listen, c.lines[tableKey("Postfix.TCPTable", i, "Listen")])
		}
	}
	if section == "Postfix" || section == "Nginx" {
		// The daemons that check passwords also bind the brute-force
		// control socket (daemon.controlSocket), named from SocketPrefix.
		name := strings.ToLower(section) + "-control"
		ls = append(ls, listener{key: "SocketPrefix", line: c.lines["SocketPrefix"], unix: c.ResolveSocket(name),
			what: `the control socket, SocketPrefix + "-` + name + `"`})
	}
	return ls
}

// checkListenerConflicts refuses two listeners of one daemon on the same
// socket path or TCP address: the second bind would fail at start-up, or
// under systemd two listeners would share sockets meant for one. Each
// key is reported once, at the later line, naming the earlier key.
// Daemons are checked apart: one file may serve them on different hosts.
func (c *Config) checkListenerConflicts(p *problemList) {
	for _, s := range sections {
		ls := c.listeners(s.key)
		sort.SliceStable(ls, func(i, j int) bool { return ls[i].line < ls[j].line })
		for j := range ls {
			for i := range j {
				if msg := conflict(ls[i], ls[j]); msg != "" {
					p.list = append(p.list, &Error{File: c.File, Line: ls[j].line, Key: ls[j].key, Msg: msg})
					break
				}
			}
		}
	}
}

// conflict says why b cannot listen beside a, or "".
func conflict(a, b listener) string {
	where := "(by default)"
	if a.line > 0 {
		where = "(line " + strconv.Itoa(a.line) + ")"
	}
	switch {
	case a.unix != "" && b.unix != "":
		if filepath.Clean(a.unix) == filepath.Clean(b.unix) {
			of := "the socket of " + a.key
			if a.what != "" {
				of = a.what
			}
			return fmt.Sprintf("%q is also %s %s: each listener needs its own", b.unix, of, where)
		}
	case a.tcp != "" && b.tcp != "":
		switch sameAddr(a.tcp, b.tcp) {
		case addrSame:
			return fmt.Sprintf("%q is also the address of %s %s: each listener needs its own", b.tcp, a.key, where)
		case addrWithin:
			return fmt.Sprintf("%q takes the port of %s = %q %s, which listens on every address: each listener needs its own port", b.tcp, a.key, a.tcp, where)
		case addrAround:
			return fmt.Sprintf("%q listens on every address, also on %s = %q %s: each listener needs its own port", b.tcp, a.key, a.tcp, where)
		}
	}
	return ""
}

// How a second TCP address relates to a first.
const (
	addrApart  = iota
	addrSame   // the same address
	addrWithin // the first listens on every address, the second on one
	addrAround // the second listens on every address, the first on one
)

// sameAddr compares two host:port listen addresses, a then b, as the
// kernel binds them: a wildcard (see covers) takes the port on every
// address. Port 0 is a fresh port for each listener. Names are not
// resolved: only a wildcard or the same name conflicts with one.
func sameAddr(a, b string) int {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || !samePort(pa, pb) {
		return addrApart
	}
	ia, ib := net.ParseIP(ha), net.ParseIP(hb)
	switch {
	case ia != nil && ib != nil && ia.Equal(ib), ia == nil && ib == nil && strings.EqualFold(ha, hb):
		return addrSame
	case covers(ha):
		return addrWithin
	case covers(hb):
		return addrAround
	}
	return addrApart
}

// samePort reports whether two ports are one, port 0 never.
func samePort(a, b string) bool {
	na, errA := strconv.Atoi(a)
	nb, errB := strconv.Atoi(b)
	if errA == nil && errB == nil {
		return na == nb && na != 0
	}
	return strings.EqualFold(a, b)
}

// covers reports whether listening on host takes the port on every
// address. Go listens on "", "::" and even "0.0.0.0" with one dual-stack
// socket, which takes the port on IPv6 addresses too.
func covers(host string) bool {
	return host == "" || host == "::" || host == "0.0.0.0"
}
