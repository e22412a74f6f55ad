package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/shitenno/shitenno/internal/testutil"
	"github.com/shitenno/shitenno/pkg/daemon"
)

// TestQuery runs `shitenno-postfix query TABLE KEY` against a fake
// backend: the exact socketmap reply on stdout, the backend exchange on
// stderr, exit 0 found, 1 not found, 75 temporary failure.
func TestQuery(t *testing.T) {
	conf := testutil.AnswersConf(t, "/api/", http.StatusBadGateway,
		testutil.Answer{Match: "/api/virtual", Reply: `{"Status":"OK","Data":"alice@example.org"}`},
		testutil.Answer{Match: "/api/missing", Reply: `{"Status":"KO"}`})
	p := daemon.Program{Name: "postfix", Build: build, Query: query, QueryUsage: "TABLE KEY"}
	for _, tc := range []struct {
		table, key string
		code       int
		stdout     string
		trace      string
	}{
		{"virtual", "a@example.org", 0, "20:OK alice@example.org,\n", `> {"Object":"a@example.org","Verb":"virtual"}`},
		{"missing", "b@example.org", 1, "9:NOTFOUND ,\n", `< {"Status":"KO"}`},
		{"broken", "c@example.org", 75, "28:TEMP backend HTTP status 502,\n", `< HTTP/1.1 502 Bad Gateway`},
	} {
		code, out, errb := testutil.Run(p, "--config", conf, "query", tc.table, tc.key)
		if code != tc.code || out != tc.stdout {
			t.Errorf("query %s %s: exit %d stdout %q, want %d %q\nstderr:\n%s", tc.table, tc.key, code, out, tc.code, tc.stdout, errb)
		}
		if !strings.Contains(errb, tc.trace) {
			t.Errorf("query %s: stderr lacks %q:\n%s", tc.table, tc.trace, errb)
		}
	}
	if code, _, _ := testutil.Run(p, "--config", conf, "query", "virtual"); code != daemon.ExitConfig {
		t.Errorf("query with a missing KEY: exit %d, want %d", code, daemon.ExitConfig)
	}
}
