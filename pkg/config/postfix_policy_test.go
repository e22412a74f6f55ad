package config

import (
	"strings"
	"testing"
)

// TestPolicyKeys: every bad policy or tcp_table key is reported at its
// line; a good set passes.
func TestPolicyKeys(t *testing.T) {
	refuses(t, postfixBase, []badConf{
		{"bad policy listen", "PolicyListen = \"10040\"\n", "x.conf:3: Postfix.PolicyListen: must be host:port"},
		{"empty fail action", "PolicyFailAction = \" \"\n", "x.conf:3: Postfix.PolicyFailAction: must not be empty"},
		{"two-line fail action", "PolicyFailAction = \"DUNNO\\nREJECT\"\n", "x.conf:3: Postfix.PolicyFailAction: must be one line"},
		{"long fail action", "PolicyFailAction = \"" + strings.Repeat("x", 5000) + "\"\n", "x.conf:3: Postfix.PolicyFailAction: longer than"},
		{"tcp table without listen", "[[Postfix.TCPTable]]\nVerb = \"virtual\"\n", "x.conf: Postfix.TCPTable.Listen: required"},
		{"tcp table without verb", "[[Postfix.TCPTable]]\nListen = \"127.0.0.1:10041\"\n", "x.conf: Postfix.TCPTable.Verb: required"},
		{"tcp table bad listen", "[[Postfix.TCPTable]]\nListen = \"x\"\nVerb = \"v\"\n", "x.conf:4: Postfix.TCPTable.Listen: must be host:port"},
		{"tcp table listen twice", "[[Postfix.TCPTable]]\nListen = \"127.0.0.1:1\"\nVerb = \"a\"\n[[Postfix.TCPTable]]\nListen = \"127.0.0.1:1\"\nVerb = \"b\"\n",
			"Postfix.TCPTable.Listen: \"127.0.0.1:1\" used by two tables"},
	})
	c, err := Parse("x.conf", []byte(postfixBase+"PolicySocket = \"policy\"\nPolicyListen = \"127.0.0.1:10040\"\nPolicyFailAction = \"DUNNO\"\n"+
		"[[Postfix.TCPTable]]\nListen = \"127.0.0.1:10041\"\nVerb = \"virtual\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Postfix.PolicyFailAction != "DUNNO" || c.ResolveSocket(c.Postfix.PolicySocket) != DefaultSocketPrefix+"-policy" {
		t.Errorf("values %+v", c.Postfix)
	}
}
