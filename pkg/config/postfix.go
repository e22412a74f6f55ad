package config

import "github.com/BurntSushi/toml"

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
