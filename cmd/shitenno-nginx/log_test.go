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

// TestOneDebugLinePerRequest: at debug level an nginx request is logged
// once, by the lookup recorder every listener shares, with the outcome
// vocabulary of the metrics (the HTTP handler used to add a second line).
func TestOneDebugLinePerRequest(t *testing.T) {
	conf := testutil.BackendConf(t, "/api/", func(w http.ResponseWriter, r *http.Request) {
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
	})
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
