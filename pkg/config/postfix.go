package config

import (
	"net"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// Defaults of the [Postfix] listeners beyond socketmap.
const (
	DefaultSASLVerb         = "sasl"
	DefaultPolicyVerb       = "policy"
	DefaultPolicyFailAction = "DEFER_IF_PERMIT Service temporarily unavailable"
)

// DefaultSASLMechanisms are offered to postfix when SASLMechanisms is unset.
var DefaultSASLMechanisms = []string{"PLAIN", "LOGIN"}

// Postfix is the [Postfix] section: the socketmap listener (the embedded
// Service keys) and the optional SMTP AUTH, policy and tcp_table
// listeners, each off unless its socket or address is set.
type Postfix struct {
	Service

	// SASLSocket is the unix socket of the SMTP AUTH server (dovecot auth
	// protocol); relative names follow SocketPrefix like Socket.
	SASLSocket string
	// SASLListen is an optional TCP address for the SMTP AUTH server.
	SASLListen string
	// SASLMechanisms lists the mechanisms offered (PLAIN, LOGIN).
	SASLMechanisms StringList
	// SASLVerb is the backend verb of a login attempt.
	SASLVerb string

	// PolicySocket is the unix socket of the policy delegation server.
	PolicySocket string
	// PolicyListen is an optional TCP address for the policy server.
	PolicyListen string
	// PolicyVerb is the backend verb of a policy request.
	PolicyVerb string
	// PolicyFailAction is the action returned when the backend fails.
	PolicyFailAction string

	// TCPTable lists tcp_table(5) listeners, one table each.
	TCPTable []TCPTable
}

// TCPTable is one [[Postfix.TCPTable]] entry: a TCP listener answering
// tcp_table lookups with one backend verb (tcp_table has no map name).
type TCPTable struct {
	Listen string
	Verb   string
}

func (p *Postfix) applyDefaults(md toml.MetaData) {
	if len(p.SASLMechanisms) == 0 {
		p.SASLMechanisms = append(StringList(nil), DefaultSASLMechanisms...)
	}
	if p.SASLVerb == "" {
		p.SASLVerb = DefaultSASLVerb
	}
	if p.PolicyVerb == "" {
		p.PolicyVerb = DefaultPolicyVerb
	}
	if !md.IsDefined("Postfix", "PolicyFailAction") {
		p.PolicyFailAction = DefaultPolicyFailAction
	}
}

// saslMechanisms are the mechanisms the SMTP AUTH server can run
// (pkg/sasl; config imports none of the protocol packages).
var saslMechanisms = []string{"PLAIN", "LOGIN"}

// checkSASL checks the SMTP AUTH keys of [Postfix]. Mechanism names are
// matched case-insensitively and kept in upper case, as announced to
// postfix.
func (pf *Postfix) checkSASL(p *problemList) {
	checkListener(p, "Postfix.SASL", pf.SASLSocket, pf.SASLListen, pf.SASLVerb)
	seen := map[string]bool{}
	for i, m := range pf.SASLMechanisms {
		u := strings.ToUpper(m)
		switch {
		case !slices.Contains(saslMechanisms, u):
			p.add("Postfix.SASLMechanisms", "%q is not one of %s", m, strings.Join(saslMechanisms, ", "))
		case seen[u]:
			p.add("Postfix.SASLMechanisms", "%q listed twice", m)
		}
		seen[u] = true
		pf.SASLMechanisms[i] = u
	}
}

// maxPolicyAction mirrors policy.MaxAction (config imports none of the
// protocol packages): the longest action postfix is sure to read back.
const maxPolicyAction = 4 << 10

// checkPolicy checks the policy and tcp_table keys of [Postfix].
func (pf *Postfix) checkPolicy(p *problemList) {
	checkListener(p, "Postfix.Policy", pf.PolicySocket, pf.PolicyListen, pf.PolicyVerb)
	// The fail action goes to postfix verbatim as action=...: one line of
	// printable text, or the reply would desynchronise the connection.
	a := pf.PolicyFailAction
	switch {
	case strings.TrimSpace(a) == "":
		p.add("Postfix.PolicyFailAction", "must not be empty (DUNNO accepts mail when the backend fails)")
	case len(a) > maxPolicyAction:
		p.add("Postfix.PolicyFailAction", "longer than %d bytes", maxPolicyAction)
	case strings.IndexFunc(a, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 || !utf8.ValidString(a):
		p.add("Postfix.PolicyFailAction", "must be one line of printable UTF-8 text")
	}
	// Two tables on one address are refused with the other listeners
	// sharing one (checkListenerConflicts).
	for _, t := range pf.TCPTable {
		if t.Listen == "" {
			p.add("Postfix.TCPTable.Listen", "required in every [[Postfix.TCPTable]] (tcp_table is TCP only)")
		} else {
			checkTCPAddr(p, "Postfix.TCPTable.Listen", t.Listen)
		}
		if t.Verb == "" {
			p.add("Postfix.TCPTable.Verb", "required in every [[Postfix.TCPTable]] (the backend verb of that table)")
		}
	}
}

// checkListener checks one optional listener of [Postfix]: its socket
// path, its TCP address and its verb, each under prefix+"Socket",
// "Listen" and "Verb".
func checkListener(p *problemList, prefix, socket, listen, verb string) {
	if strings.ContainsRune(socket, 0) {
		p.add(prefix+"Socket", "contains a NUL byte")
	}
	checkTCPAddr(p, prefix+"Listen", listen)
	if verb == "" {
		p.add(prefix+"Verb", "must not be empty")
	}
}

// checkTCPAddr checks that a set addr is host:port.
func checkTCPAddr(p *problemList, key, addr string) {
	if addr == "" {
		return
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		p.add(key, "must be host:port, not %q", addr)
	}
}
