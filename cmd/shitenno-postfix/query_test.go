package main

import (
	"fmt"
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

// TestQueryPolicy runs `shitenno-postfix query --policy name=value…`:
// the reply postfix would get on stdout, exit 0 / 1 / 75 for OK / KO /
// failure, every attribute sent (request= added).
func TestQueryPolicy(t *testing.T) {
	var got map[string]any
	conf := testutil.AnswerConf(t, "/", func(r testutil.Request) (int, string) {
		got = r.Object
		user, _ := r.Object["sasl_username"].(string)
		switch user {
		case "over":
			return http.StatusOK, `{"Status":"OK","Data":"REJECT 5.7.1 over quota"}`
		case "":
			return http.StatusOK, `{"Status":"KO"}`
		}
		return http.StatusBadGateway, "no"
	})
	p := daemon.Program{Name: "postfix", Build: build, Query: query}
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
	}{
		{[]string{"sasl_username=over", "recipient=a@b", "ccert_subject=x=y"}, 0, "action=REJECT 5.7.1 over quota\n\n"},
		{[]string{"protocol_state=RCPT"}, 1, "action=DUNNO\n\n"},
		{[]string{"sasl_username=broken"}, 75, "action=DEFER_IF_PERMIT Service temporarily unavailable\n\n"},
	} {
		code, out, errb := testutil.Run(p, append([]string{"--config", conf, "query", "--policy"}, tc.args...)...)
		if code != tc.code || out != tc.stdout {
			t.Errorf("%v: exit %d stdout %q, want %d %q\n%s", tc.args, code, out, tc.code, tc.stdout, errb)
		}
		if got["request"] != "smtpd_access_policy" {
			t.Errorf("%v: backend got %v", tc.args, got)
		}
	}
	if got := fmt.Sprint(got); !strings.Contains(got, "sasl_username:broken") {
		t.Errorf("object %s", got)
	}
	if code, _, _ := testutil.Run(p, "--config", conf, "query", "--policy", "novalue"); code != daemon.ExitConfig {
		t.Errorf("bad attribute: exit %d", code)
	}
}

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
