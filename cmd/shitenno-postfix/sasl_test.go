package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/shitenno/shitenno/internal/testutil"
	"github.com/shitenno/shitenno/pkg/daemon"
)

// TestQuerySASL runs `shitenno-postfix query --sasl USER` with the
// password on stdin: the reply line postfix would read on stdout, exit 0
// / 1 / 75 for OK / KO / failure, and the password never on stderr.
func TestQuerySASL(t *testing.T) {
	var got map[string]any
	conf := testutil.AnswerConf(t, "/", func(r testutil.Request) (int, string) {
		got = r.Object
		switch {
		case r.Path != "/sasl":
			return http.StatusNotFound, "404 page not found"
		case r.Object["User"] == "alice" && r.Object["Password"] == "s3cret pw":
			return http.StatusOK, `{"Status":"OK","Data":{"User":"alice@example.org"}}`
		case r.Object["User"] == "broken":
			return http.StatusInternalServerError, "no"
		}
		return http.StatusOK, `{"Status":"KO"}`
	})
	for _, tc := range []struct {
		user, stdin string
		code        int
		stdout      string
	}{
		{"alice", "s3cret pw\n", 0, "OK\t1\tuser=alice@example.org\n"},
		{"alice", "s3cret pw\r\n", 0, "OK\t1\tuser=alice@example.org\n"},
		{"alice", "wrong\n", 1, "FAIL\t1\tuser=alice\treason=Invalid user name or password\n"},
		{"broken", "x", 75, "(connection closed: postfix answers 454 4.7.0 Temporary authentication failure)\n"},
	} {
		p := daemon.Program{Name: "postfix", Build: build, Query: query, Stdin: strings.NewReader(tc.stdin)}
		code, out, errb := testutil.Run(p, "--config", conf, "query", "--sasl", tc.user)
		if code != tc.code || out != tc.stdout {
			t.Errorf("%s: exit %d stdout %q, want %d %q\n%s", tc.user, code, out, tc.code, tc.stdout, errb)
		}
		if got["Mechanism"] != "PLAIN" || got["Service"] != "smtp" {
			t.Errorf("%s: backend got %v", tc.user, got)
		}
		if strings.Contains(errb, "s3cret") || !strings.Contains(errb, `"Verb":"sasl"`) {
			t.Errorf("%s: stderr:\n%s", tc.user, errb)
		}
	}
	for _, args := range [][]string{{"--sasl"}, {"--sasl", "a", "b"}} {
		p := daemon.Program{Name: "postfix", Build: build, Query: query, Stdin: strings.NewReader("pw\n")}
		if code, _, _ := testutil.Run(p, append([]string{"--config", conf, "query"}, args...)...); code != daemon.ExitConfig {
			t.Errorf("%v: exit %d", args, code)
		}
	}
	p := daemon.Program{Name: "postfix", Build: build, Query: query, Stdin: strings.NewReader("")}
	if code, _, _ := testutil.Run(p, "--config", conf, "query", "--sasl", "alice"); code != daemon.ExitConfig {
		t.Errorf("no password: exit %d", code)
	}
}
