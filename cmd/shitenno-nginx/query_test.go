package main

import (
	"bytes"
	"fmt"
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
	conf := testutil.BackendConf(t, "/api/", aliceBobCarol)
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
		var out, errb bytes.Buffer
		code := p.Run(append([]string{"--config", conf, "query"}, tc.args...), &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.out) {
			t.Errorf("query %q: exit %d stdout %q, want %d with %q\nstderr:\n%s", tc.args, code, out.String(), tc.code, tc.out, errb.String())
		}
		if !strings.Contains(errb.String(), tc.trace) || !strings.Contains(errb.String(), `"Auth-Pass":"[redacted]"`) {
			t.Errorf("query %q: stderr lacks %q or the redacted password:\n%s", tc.args, tc.trace, errb.String())
		}
		if strings.Contains(errb.String()+out.String(), "s3cret-pw") {
			t.Errorf("query %q: password printed:\n%s%s", tc.args, out.String(), errb.String())
		}
	}
}

// aliceBobCarol is the test backend: alice logs in, bob is refused, carol
// gets an HTTP 500 (a temporary failure).
func aliceBobCarol(w http.ResponseWriter, r *http.Request) {
	var body bytes.Buffer
	body.ReadFrom(r.Body)
	switch {
	case strings.Contains(body.String(), `"alice@example.org"`):
		fmt.Fprint(w, `{"Status":"OK","Data":{"Auth-Server":"127.0.0.1","Auth-Port":143}}`)
	case strings.Contains(body.String(), `"bob@example.org"`):
		fmt.Fprint(w, `{"Status":"KO"}`)
	default:
		http.Error(w, "no", http.StatusInternalServerError)
	}
}

// TestOneLinePerRequest: at debug level an nginx request is logged once,
// by the lookup recorder every listener shares, with the outcome
// vocabulary of the metrics (the HTTP handler used to add a second line).
func TestOneLinePerRequest(t *testing.T) {
	conf := testutil.BackendConf(t, "/api/", aliceBobCarol)
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, `LogLevel = "debug"`)
	f.Close()
	p := daemon.Program{Name: "nginx", Build: build, Query: query}
	perRequest := regexp.MustCompile(`(?m)^.*level=(DEBUG|WARN).*(verb=nginx|nginx auth).*$`)
	for user, want := range map[string]string{
		"alice@example.org": `level=DEBUG msg=lookup .*verb=nginx outcome=found`,
		"bob@example.org":   `level=DEBUG msg=lookup .*verb=nginx outcome=not_found`,
		"carol@example.org": `level=WARN msg="lookup failed" .*verb=nginx`,
	} {
		var out, errb bytes.Buffer
		p.Run([]string{"--config", conf, "query", user, "pw"}, &out, &errb)
		lines := perRequest.FindAllString(errb.String(), -1)
		if len(lines) != 1 || !regexp.MustCompile(want).MatchString(lines[0]) {
			t.Errorf("%s: want one line per request matching %s, got %d:\n%s", user, want, len(lines), errb.String())
		}
	}
}
