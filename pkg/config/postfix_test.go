package config

import (
	"slices"
	"strings"
	"testing"
)

// TestPostfixKeys: every bad SMTP AUTH, policy or tcp_table key is
// reported at its line; good sets pass, with the SASL mechanisms in upper
// case and PLAIN, LOGIN by default.
func TestPostfixKeys(t *testing.T) {
	refuses(t, postfixBase, []badConf{
		{"bad listen", "SASLListen = \"12345\"\n", "x.conf:3: Postfix.SASLListen: must be host:port"},
		{"unknown mechanism", "SASLMechanisms = [\"PLAIN\", \"CRAM-MD5\"]\n", "x.conf:3: Postfix.SASLMechanisms: \"CRAM-MD5\" is not one of PLAIN, LOGIN"},
		{"mechanism twice", "SASLMechanisms = [\"PLAIN\", \"plain\"]\n", "x.conf:3: Postfix.SASLMechanisms: \"plain\" listed twice"},
		{"NUL in socket", "SASLSocket = \"a\\u0000b\"\n", "x.conf:3: Postfix.SASLSocket: contains a NUL byte"},
		{"bad policy listen", "PolicyListen = \"10040\"\n", "x.conf:3: Postfix.PolicyListen: must be host:port"},
		{"empty fail action", "PolicyFailAction = \" \"\n", "x.conf:3: Postfix.PolicyFailAction: must not be empty"},
		{"two-line fail action", "PolicyFailAction = \"DUNNO\\nREJECT\"\n", "x.conf:3: Postfix.PolicyFailAction: must be one line"},
		{"long fail action", "PolicyFailAction = \"" + strings.Repeat("x", 5000) + "\"\n", "x.conf:3: Postfix.PolicyFailAction: longer than"},
		{"tcp table without listen", "[[Postfix.TCPTable]]\nVerb = \"virtual\"\n", "x.conf: Postfix.TCPTable.Listen: required"},
		{"tcp table without verb", "[[Postfix.TCPTable]]\nListen = \"127.0.0.1:10041\"\n", "x.conf: Postfix.TCPTable.Verb: required"},
		{"tcp table bad listen", "[[Postfix.TCPTable]]\nListen = \"x\"\nVerb = \"v\"\n", "x.conf:4: Postfix.TCPTable.Listen: must be host:port"},
		{"tcp table listen twice", "[[Postfix.TCPTable]]\nListen = \"127.0.0.1:1\"\nVerb = \"a\"\n[[Postfix.TCPTable]]\nListen = \"127.0.0.1:1\"\nVerb = \"b\"\n",
			"x.conf:7: Postfix.TCPTable.Listen: \"127.0.0.1:1\" is also the address of Postfix.TCPTable.Listen (line 4)"},
	})
	for _, good := range []struct {
		conf string
		ok   func(c *Config) bool
	}{
		{"SASLSocket = \"auth\"\nSASLListen = \"127.0.0.1:12345\"\nSASLMechanisms = [\"login\"]\n", func(c *Config) bool {
			return slices.Equal(c.Postfix.SASLMechanisms, []string{"LOGIN"}) && c.Postfix.SASLVerb == "sasl" &&
				c.ResolveSocket(c.Postfix.SASLSocket) == DefaultSocketPrefix+"-auth"
		}},
		{"", func(c *Config) bool { return slices.Equal(c.Postfix.SASLMechanisms, []string{"PLAIN", "LOGIN"}) }},
		{"PolicySocket = \"policy\"\nPolicyListen = \"127.0.0.1:10040\"\nPolicyFailAction = \"DUNNO\"\n" +
			"[[Postfix.TCPTable]]\nListen = \"127.0.0.1:10041\"\nVerb = \"virtual\"\n", func(c *Config) bool {
			return c.Postfix.PolicyFailAction == "DUNNO" && c.ResolveSocket(c.Postfix.PolicySocket) == DefaultSocketPrefix+"-policy"
		}},
	} {
		c, err := Parse("x.conf", []byte(postfixBase+good.conf))
		if err != nil {
			t.Fatalf("%q: %v", good.conf, err)
		}
		if !good.ok(c) {
			t.Errorf("%q: values %+v", good.conf, c.Postfix)
		}
	}
}
