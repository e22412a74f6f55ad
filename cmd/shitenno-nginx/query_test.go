package main

import (
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/shitenno/shitenno/internal/testutil"
	"github.com/shitenno/shitenno/pkg/daemon"
)

// TestQuery runs `shitenno-nginx query USER PASSWORD [PROTOCOL]` against
// a fake backend: the Auth-* headers nginx would get on stdout, the
// backend exchange on stderr, the password never printed; exit 0 found,
// 1 refused, 75 temporary failure.
func TestQuery(t *testing.T) {
	conf := aliceBobCarolConf(t)
	p := daemon.Program{Name: "nginx", Build: build, Query: query}
	for _, tc := range []struct {
		args  []string
		code  int
		out   string
		trace string
	}{
		{[]string{"alice@example.org", "s3cret-pw"}, 0, "Auth-Status: OK\n", `"Auth-Protocol":"imap"`},
		{[]string{"alice@example.org", "s3cret-pw", "smtp"}, 0, "Auth-Server: 127.0.0.1\n", `"Auth-Protocol":"smtp"`},
		{[]string{"pop3", "alice@example.org", "s3cret-pw"}, 0, "Auth-Port: 143\n", `"Auth-Protocol":"pop3"`},
		{[]string{"bob@example.org", "s3cret-pw"}, 1, "Auth-Status: ", `< {"Status":"KO"}`},
		{[]string{"carol@example.org", "s3cret-pw"}, 75, "Auth-Status: ", `< HTTP/1.1 500 Internal Server Error`},
	} {
		code, out, errb := testutil.Run(p, append([]string{"--config", conf, "query"}, tc.args...)...)
		if code != tc.code || !strings.Contains(out, tc.out) {
			t.Errorf("query %q: exit %d stdout %q, want %d with %q\nstderr:\n%s", tc.args, code, out, tc.code, tc.out, errb)
		}
		if !strings.Contains(errb, tc.trace) || !strings.Contains(errb, `"Auth-Pass":"[redacted]"`) {
			t.Errorf("query %q: stderr lacks %q or the redacted password:\n%s", tc.args, tc.trace, errb)
		}
		if strings.Contains(errb+out, "s3cret-pw") {
			t.Errorf("query %q: password printed:\n%s%s", tc.args, out, errb)
		}
	}
}

// aliceBobCarolConf configures a test backend: alice logs in, bob is
// refused, carol gets an HTTP 500 (a temporary failure).
func aliceBobCarolConf(t *testing.T) string {
	return testutil.AnswersConf(t, "/api/", http.StatusInternalServerError,
		testutil.Answer{Match: `"alice@example.org"`, Reply: `{"Status":"OK","Data":{"Auth-Server":"127.0.0.1","Auth-Port":143}}`},
		testutil.Answer{Match: `"bob@example.org"`, Reply: `{"Status":"KO"}`})
}

// TestOneLinePerRequest: at debug level an nginx request is logged once,
// by the lookup recorder every listener shares, with the outcome
// vocabulary of the metrics (the HTTP handler used to add a second line).
func TestOneLinePerRequest(t *testing.T) {
	conf := aliceBobCarolConf(t)
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("LogLevel = \"debug\"\n")
	f.Close()
	p := daemon.Program{Name: "nginx", Build: build, Query: query}
	perRequest := regexp.MustCompile(`(?m)^.*level=(DEBUG|WARN).*(verb=nginx|nginx auth).*$`)
	for user, want := range map[string]string{
		"alice@example.org": `level=DEBUG msg=lookup .*verb=nginx outcome=found`,
		"bob@example.org":   `level=DEBUG msg=lookup .*verb=nginx outcome=not_found`,
		"carol@example.org": `level=WARN msg="lookup failed" .*verb=nginx`,
	} {
		_, _, errb := testutil.Run(p, "--config", conf, "query", user, "pw")
		lines := perRequest.FindAllString(errb, -1)
		if len(lines) != 1 || !regexp.MustCompile(want).MatchString(lines[0]) {
			t.Errorf("%s: want one line per request matching %s, got %d:\n%s", user, want, len(lines), errb)
		}
	}
}
