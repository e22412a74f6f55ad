package main

import (
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
	conf := testutil.AnswersConf(t, "/api/", http.StatusServiceUnavailable,
		testutil.Answer{Match: `"alice@example.org"`, Reply: `{"Status":"OK","Data":{"password":"{PLAIN}s3cret-pw","uid":"1000"}}`},
		testutil.Answer{Match: `"bob@example.org"`, Reply: `{"Status":"KO"}`})
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
		code, out, errb := testutil.Run(p, append([]string{"--config", conf, "query"}, tc.args...)...)
		if code != tc.code || !strings.HasPrefix(out, tc.first) || !strings.HasSuffix(out, "\n") {
			t.Errorf("query %q: exit %d stdout %q, want %d %q…\\n\nstderr:\n%s", tc.args, code, out, tc.code, tc.first, errb)
		}
		if !strings.Contains(errb, tc.trace) {
			t.Errorf("query %q: stderr lacks %q:\n%s", tc.args, tc.trace, errb)
		}
		if strings.Contains(errb, "s3cret-pw") {
			t.Errorf("query %q: password in the printed exchange:\n%s", tc.args, errb)
		}
	}
}
