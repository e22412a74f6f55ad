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

// TestQueryPolicy runs `shitenno-postfix query --policy name=value…`:
// the reply postfix would get on stdout, exit 0 / 1 / 75 for OK / KO /
// failure, every attribute sent (request= added).
func TestQueryPolicy(t *testing.T) {
	var got map[string]any
	conf := testutil.BackendConf(t, "/", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var env struct{ Object map[string]any }
		_ = json.Unmarshal(b, &env)
		got = env.Object
		user, _ := env.Object["sasl_username"].(string)
		switch user {
		case "over":
			fmt.Fprint(w, `{"Status":"OK","Data":"REJECT 5.7.1 over quota"}`)
		case "":
			fmt.Fprint(w, `{"Status":"KO"}`)
		default:
			http.Error(w, "no", http.StatusBadGateway)
		}
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
		var out, errb bytes.Buffer
		code := p.Run(append([]string{"--config", conf, "query", "--policy"}, tc.args...), &out, &errb)
		if code != tc.code || out.String() != tc.stdout {
			t.Errorf("%v: exit %d stdout %q, want %d %q\n%s", tc.args, code, out.String(), tc.code, tc.stdout, errb.String())
		}
		if got["request"] != "smtpd_access_policy" {
			t.Errorf("%v: backend got %v", tc.args, got)
		}
	}
	if got := fmt.Sprint(got); !strings.Contains(got, "sasl_username:broken") {
		t.Errorf("object %s", got)
	}
	var out, errb bytes.Buffer
	if code := p.Run([]string{"--config", conf, "query", "--policy", "novalue"}, &out, &errb); code != daemon.ExitConfig {
		t.Errorf("bad attribute: exit %d", code)
	}
}
