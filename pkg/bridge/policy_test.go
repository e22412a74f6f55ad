package bridge

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/shitenno/shitenno/pkg/policy"
	"github.com/shitenno/shitenno/pkg/remote"
)

var policyReq = policy.Request{Attrs: []policy.Attr{
	{Name: "request", Value: "smtpd_access_policy"}, {Name: "protocol_state", Value: "RCPT"}, {Name: "sasl_username", Value: "alice"},
	{Name: "recipient", Value: "b@c"}, {Name: "stress", Value: ""}, {Name: "x_new_in_3_12", Value: "v=w\"\\"}, {Name: "recipient", Value: "second"},
}}

func TestPolicyObject(t *testing.T) {
	obj := PolicyObject(policyReq)
	var m map[string]string
	if err := json.Unmarshal(obj, &m); err != nil {
		t.Fatalf("%s: %v", obj, err)
	}
	want := map[string]string{"request": "smtpd_access_policy", "protocol_state": "RCPT", "sasl_username": "alice",
		"recipient": "b@c", "stress": "", "x_new_in_3_12": "v=w\"\\"}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("object %s", obj)
	}
	if !strings.HasPrefix(string(obj), `{"request":"smtpd_access_policy","protocol_state":"RCPT",`) {
		t.Errorf("order not kept: %s", obj)
	}
	if got := string(PolicyObject(policy.Request{Attrs: []policy.Attr{{Name: "helo_name", Value: "\xffx"}}})); got != `{"helo_name":"\ufffdx"}` {
		t.Errorf("invalid UTF-8: %s", got)
	}
}

func TestPolicyMapping(t *testing.T) {
	failure := failing("http", "backend HTTP status 503")
	for _, tc := range []struct {
		name    string
		fail    string
		answer  func() (remote.Result, error)
		want    string
		outcome Outcome
	}{
		{"reject", "", found(`"REJECT 5.7.1 over quota"`), "REJECT 5.7.1 over quota", OutcomeFound},
		{"dunno", "", found(`"DUNNO"`), "DUNNO", OutcomeFound},
		{"prepend", "", found(`"PREPEND X-Quota: 3/100"`), "PREPEND X-Quota: 3/100", OutcomeFound},
		{"KO", "", notFound, "DUNNO", OutcomeNotFound},
		{"failure default", "", failure, DefaultPolicyFailAction, OutcomeFailed},
		{"failure configured", "DUNNO", failure, "DUNNO", OutcomeFailed},
		{"failure, invalid configured action", "a\nb", failure, DefaultPolicyFailAction, OutcomeFailed},
		{"data not a string", "", found(`{"action":"OK"}`), DefaultPolicyFailAction, OutcomeFailed},
		{"data missing", "", found(``), DefaultPolicyFailAction, OutcomeFailed},
		{"data empty", "", found(`""`), DefaultPolicyFailAction, OutcomeFailed},
		{"data two lines", "", found(`"OK\nREJECT"`), DefaultPolicyFailAction, OutcomeFailed},
		{"data too long", "", found(`"` + strings.Repeat("x", policy.MaxAction+1) + `"`), DefaultPolicyFailAction, OutcomeFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := &fakeBackend{answer: tc.answer}
			var got Outcome
			p := &Policy{Backend: fb, Verb: "policy", FailAction: tc.fail, Record: func(v string, o Outcome, err error) {
				if (err != nil) != (o == OutcomeFailed) {
					t.Errorf("outcome %s with error %v", o, err)
				}
				got = o
			}}
			action := p.ServePolicy(context.Background(), policyReq)
			if action != tc.want || got != tc.outcome {
				t.Errorf("got %q %s, want %q %s", action, got, tc.want, tc.outcome)
			}
			if fb.verb != "policy" || fb.object != string(PolicyObject(policyReq)) {
				t.Errorf("backend asked %q %s", fb.verb, fb.object)
			}
		})
	}
}

// TestPolicyUncached: requests reach the real client uncached and
// uncoalesced (pkg/remote's TestUncached checks what that means).
func TestPolicyUncached(t *testing.T) {
	var asked []context.Context
	b := backendFunc(func(ctx context.Context) { asked = append(asked, ctx) })
	(&Policy{Backend: b, Verb: "policy"}).ServePolicy(context.Background(), policyReq)
	if len(asked) != 1 || !remote.IsUncached(asked[0]) {
		t.Fatal("policy lookup not marked uncached")
	}
}

type backendFunc func(ctx context.Context)

func (f backendFunc) Lookup(ctx context.Context, verb string, object any) (remote.Result, error) {
	f(ctx)
	return remote.Result{Status: remote.NotFound}, nil
}

func (f backendFunc) LookupRaw(ctx context.Context, verb string, object json.RawMessage) (remote.Result, error) {
	f(ctx)
	return remote.Result{Status: remote.NotFound}, nil
}

func (b backendFunc) LookupObject(ctx context.Context, verb string, o remote.Object) (remote.Result, error) {
	return b.LookupRaw(ctx, verb, o.JSON())
}
