package config

import (
	"strings"
	"testing"
)

// TestListenerConflicts: two listeners of one daemon on the same unix
// path or TCP address are refused, at the line of the later key, naming
// the other key; a wildcard address takes the port on every address
// (checked against the kernel: see sameAddr).
func TestListenerConflicts(t *testing.T) {
	refuses(t, postfixBase, []badConf{
		{"socket and SASL socket", "Socket = \"/run/x\"\nSASLSocket = \"/run/x\"\n",
			"x.conf:4: Postfix.SASLSocket: \"/run/x\" is also the socket of Postfix.Socket (line 3)"},
		{"relative and absolute", "SASLSocket = \"" + DefaultSocketPrefix + "-postfix\"\n",
			"x.conf:3: Postfix.SASLSocket: \"" + DefaultSocketPrefix + "-postfix\" is also the socket of Postfix.Socket (by default)"},
		{"listen and policy listen", "Listen = \"127.0.0.1:9000\"\nPolicyListen = \"127.0.0.1:9000\"\n",
			"x.conf:4: Postfix.PolicyListen: \"127.0.0.1:9000\" is also the address of Postfix.Listen (line 3)"},
		{"wildcard", "PolicyListen = \":9000\"\nSASLListen = \"127.0.0.1:9000\"\n",
			"x.conf:4: Postfix.SASLListen: \"127.0.0.1:9000\" takes the port of Postfix.PolicyListen = \":9000\" (line 3), which listens on every address"},
		{"health and tcp table", "HealthListen = \"[::1]:9000\"\n[[Postfix.TCPTable]]\nListen = \"[::1]:9000\"\nVerb = \"v\"\n",
			"x.conf:5: Postfix.TCPTable.Listen: \"[::1]:9000\" is also the address of Postfix.HealthListen (line 3)"},
		{"two tables", "[[Postfix.TCPTable]]\nListen = \"127.0.0.1:1\"\nVerb = \"a\"\n[[Postfix.TCPTable]]\nListen = \"0.0.0.0:1\"\nVerb = \"b\"\n",
			"x.conf:7: Postfix.TCPTable.Listen: \"0.0.0.0:1\" listens on every address, also on Postfix.TCPTable.Listen = \"127.0.0.1:1\" (line 4)"},
	})
	// Go listens on 0.0.0.0 dual-stack: the IPv6 port is taken too.
	refuses(t, postfixBase, []badConf{{"IPv4 wildcard and IPv6", "HealthListen = \"0.0.0.0:9000\"\nListen = \"[::1]:9000\"\n",
		"x.conf:4: Postfix.Listen: \"[::1]:9000\" takes the port of Postfix.HealthListen = \"0.0.0.0:9000\" (line 3)"}})
	refuses(t, "RemoteURL = \"http://a/\"\n[Nginx]\n", []badConf{
		{"nginx listen and health", "Listen = \"127.0.0.1:8080\"\nHealthListen = \"127.0.0.1:8080\"\n",
			"x.conf:4: Nginx.HealthListen: \"127.0.0.1:8080\" is also the address of Nginx.Listen (line 3)"},
	})
	for _, good := range []string{
		// Port 0 is a new port for each listener.
		"[Postfix]\nListen = \"127.0.0.1:0\"\nHealthListen = \"127.0.0.1:0\"\n",
		// Other addresses, other families, other daemons.
		"[Postfix]\nListen = \"127.0.0.1:9000\"\nPolicyListen = \"127.0.0.2:9000\"\nSASLListen = \"[::1]:9000\"\nHealthListen = \"0.0.0.0:9001\"\n" +
			"[Nginx]\nListen = \"127.0.0.1:9000\"\nSocket = \"postfix\"\n",
	} {
		if _, err := Parse("x.conf", []byte("RemoteURL = \"http://a/\"\n"+good)); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
	_, err := Parse("x.conf", []byte(postfixBase+"Listen = \"127.0.0.1:9000\"\nPolicyListen = \"127.0.0.1:9000\"\nSASLListen = \"127.0.0.1:9000\"\n"))
	if err == nil || strings.Count(err.Error(), "is also the address") != 2 {
		t.Errorf("three listeners on one address: want one error for each later key, got %v", err)
	}
}
