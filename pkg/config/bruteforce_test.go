package config

import (
	"strings"
	"testing"
	"time"
)

// TestBruteForceKeys: defaults apply, every bad key is reported at its
// line, and AllowNets = [] means none.
func TestBruteForceKeys(t *testing.T) {
	const base = "RemoteURL = \"http://a/\"\n"
	c, err := Parse("x.conf", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	b := c.BruteForce
	if b.MaxFailures != 10 || b.Window.Duration != 15*time.Minute || b.BlockFor.Duration != 15*time.Minute ||
		b.IPv4Prefix != 32 || b.IPv6Prefix != 64 || b.MaxTracked != 100000 || b.MaxUserFailures != 0 || len(b.Nets()) != 2 {
		t.Errorf("defaults %+v", b)
	}
	c, err = Parse("x.conf", []byte(base+"[BruteForce]\nAllowNets = []\nMaxFailures = 0\n"))
	if err != nil || len(c.BruteForce.Nets()) != 0 || c.BruteForce.MaxFailures != 0 {
		t.Fatalf("empty AllowNets: %v %+v", err, c.BruteForce)
	}
	_, err = Parse("x.conf", []byte(base+"[BruteForce]\nMaxFailures = -1\nWindow = \"0s\"\nIPv4Prefix = 33\nIPv6Prefix = 0\nAllowNets = [\"10.0.0.0/8\", \"nope\"]\nMaxTracked = 0\nBlockFor = \"-1s\"\n"))
	for _, want := range []string{
		"x.conf:3: BruteForce.MaxFailures", "x.conf:4: BruteForce.Window", "x.conf:5: BruteForce.IPv4Prefix",
		"x.conf:6: BruteForce.IPv6Prefix", "x.conf:7: BruteForce.AllowNets: \"nope\"", "x.conf:8: BruteForce.MaxTracked",
		"x.conf:9: BruteForce.BlockFor",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}
