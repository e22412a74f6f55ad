package main

import (
	"fmt"
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
