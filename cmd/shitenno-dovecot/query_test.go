package main

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/shitenno/shitenno/internal/testutil"
	"github.com/shitenno/shitenno/pkg/daemon"
)

// TestQuery runs `shitenno-dovecot query passdb USER` against a fake
// backend: the exact dict reply line on stdout, the backend exchange on
// stderr with the password redacted, exit 0 found, 1 not found, 75
// temporary failure.
func TestQuery(t *testing.T) {
	conf := testutil.BackendConf(t, "/api/", func(w http.ResponseWriter, r *http.Request) {
		var body bytes.Buffer
		body.ReadFrom(r.Body)
		switch {
		case strings.Contains(body.String(), `"alice@example.org"`):
			fmt.Fprint(w, `{"Status":"OK","Data":{"password":"{PLAIN}s3cret-pw","uid":"1000"}}`)
		case strings.Contains(body.String(), `"bob@example.org"`):
			fmt.Fprint(w, `{"Status":"KO"}`)
		default:
			http.Error(w, "no", http.StatusServiceUnavailable)
		}
	})
	p := daemon.Program{Name: "dovecot", Build: build, Query: query}
	for _, tc := range []struct {
		args  []string
		code  int
		first string // stdout starts with
		trace string
	}{
		{[]string{"passdb", "alice@example.org"}, 0, "O", `"password":"[redacted]"`},
		{[]string{"shared/passdb/bob@example.org"}, 1, "N", `< {"Status":"KO"}`},
		{[]string{"userdb", "carol@example.org"}, 75, "F", `< HTTP/1.1 503 Service Unavailable`},
	} {
		var out, errb bytes.Buffer
		code := p.Run(append([]string{"--config", conf, "query"}, tc.args...), &out, &errb)
		if code != tc.code || !strings.HasPrefix(out.String(), tc.first) || !strings.HasSuffix(out.String(), "\n") {
			t.Errorf("query %q: exit %d stdout %q, want %d %q…\\n\nstderr:\n%s", tc.args, code, out.String(), tc.code, tc.first, errb.String())
		}
		if !strings.Contains(errb.String(), tc.trace) {
			t.Errorf("query %q: stderr lacks %q:\n%s", tc.args, tc.trace, errb.String())
		}
		if strings.Contains(errb.String(), "s3cret-pw") {
			t.Errorf("query %q: password in the printed exchange:\n%s", tc.args, errb.String())
		}
	}
}
