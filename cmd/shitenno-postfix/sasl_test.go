package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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
	conf := testutil.BackendConf(t, "/", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var env struct{ Object map[string]any }
		_ = json.Unmarshal(b, &env)
		got = env.Object
		switch {
		case r.URL.Path != "/sasl":
			http.NotFound(w, r)
		case env.Object["User"] == "alice" && env.Object["Password"] == "s3cret pw":
			fmt.Fprint(w, `{"Status":"OK","Data":{"User":"alice@example.org"}}`)
		case env.Object["User"] == "broken":
			http.Error(w, "no", http.StatusInternalServerError)
		default:
			fmt.Fprint(w, `{"Status":"KO"}`)
		}
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
		var out, errb bytes.Buffer
		code := p.Run([]string{"--config", conf, "query", "--sasl", tc.user}, &out, &errb)
		if code != tc.code || out.String() != tc.stdout {
			t.Errorf("%s: exit %d stdout %q, want %d %q\n%s", tc.user, code, out.String(), tc.code, tc.stdout, errb.String())
		}
		if got["Mechanism"] != "PLAIN" || got["Service"] != "smtp" {
			t.Errorf("%s: backend got %v", tc.user, got)
		}
		if strings.Contains(errb.String(), "s3cret") || !strings.Contains(errb.String(), `"Verb":"sasl"`) {
			t.Errorf("%s: stderr:\n%s", tc.user, errb.String())
		}
	}
	for _, args := range [][]string{{"--sasl"}, {"--sasl", "a", "b"}} {
		p := daemon.Program{Name: "postfix", Build: build, Query: query, Stdin: strings.NewReader("pw\n")}
		var out, errb bytes.Buffer
		if code := p.Run(append([]string{"--config", conf, "query"}, args...), &out, &errb); code != daemon.ExitConfig {
			t.Errorf("%v: exit %d", args, code)
		}
	}
	p := daemon.Program{Name: "postfix", Build: build, Query: query, Stdin: strings.NewReader("")}
	var out, errb bytes.Buffer
	if code := p.Run([]string{"--config", conf, "query", "--sasl", "alice"}, &out, &errb); code != daemon.ExitConfig {
		t.Errorf("no password: exit %d", code)
	}
}
