package config

import (
	"slices"
	"testing"
)

// TestSASLKeys: every bad SMTP AUTH key is reported at its line; a good
// set passes with the mechanisms in upper case.
func TestSASLKeys(t *testing.T) {
	refuses(t, postfixBase, []badConf{
		{"bad listen", "SASLListen = \"12345\"\n", "x.conf:3: Postfix.SASLListen: must be host:port"},
		{"unknown mechanism", "SASLMechanisms = [\"PLAIN\", \"CRAM-MD5\"]\n", "x.conf:3: Postfix.SASLMechanisms: \"CRAM-MD5\" is not one of PLAIN, LOGIN"},
		{"mechanism twice", "SASLMechanisms = [\"PLAIN\", \"plain\"]\n", "x.conf:3: Postfix.SASLMechanisms: \"plain\" listed twice"},
		{"NUL in socket", "SASLSocket = \"a\\u0000b\"\n", "x.conf:3: Postfix.SASLSocket: contains a NUL byte"},
	})
	c, err := Parse("x.conf", []byte(postfixBase+"SASLSocket = \"auth\"\nSASLListen = \"127.0.0.1:12345\"\nSASLMechanisms = [\"login\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Postfix.SASLMechanisms, []string{"LOGIN"}) || c.Postfix.SASLVerb != "sasl" || c.ResolveSocket(c.Postfix.SASLSocket) != DefaultSocketPrefix+"-auth" {
		t.Errorf("values %+v", c.Postfix)
	}
	c, err = Parse("x.conf", []byte(postfixBase))
	if err != nil || !slices.Equal(c.Postfix.SASLMechanisms, []string{"PLAIN", "LOGIN"}) {
		t.Errorf("defaults %v %v", c.Postfix.SASLMechanisms, err)
	}
}
