package config

import (
	"strings"
	"testing"
)

// postfixBase is the least configuration with a [Postfix] section, for
// tests that add its keys.
const postfixBase = "RemoteURL = \"http://a/\"\n[Postfix]\n"

// badConf is a configuration Parse must refuse: conf (after a base) fails
// with an error that contains want.
type badConf struct{ name, conf, want string }

// refuses runs each case as a subtest of t.
func refuses(t *testing.T, base string, cases []badConf) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.conf", []byte(base+tc.conf))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got  %v\nwant %q", err, tc.want)
			}
		})
	}
}
