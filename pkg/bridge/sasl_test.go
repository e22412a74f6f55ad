package bridge

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/shitenno/shitenno/pkg/remote"
	"github.com/shitenno/shitenno/pkg/sasl"
)

func saslReq(user, authzid, pass string) *sasl.Request {
	return &sasl.Request{Mechanism: "PLAIN", Credentials: sasl.Credentials{Authzid: authzid, User: user, Password: []byte(pass)},
		Service: "smtp", ClientIP: "192.0.2.7", LocalIP: "127.0.0.1", Secured: true}
}

func TestSASLObject(t *testing.T) {
	var m map[string]any
	obj := SASLObject(saslReq("alice@example.org", "", `p"w\`))
	if err := json.Unmarshal(obj, &m); err != nil {
		t.Fatalf("%s: %v", obj, err)
	}
	want := map[string]any{"Mechanism": "PLAIN", "User": "alice@example.org", "Password": `p"w\`, "Service": "smtp",
		"Client-IP": "192.0.2.7", "Local-IP": "127.0.0.1", "Secured": true}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("object %s", obj)
	}
	r := &sasl.Request{Mechanism: "LOGIN", Credentials: sasl.Credentials{User: "u", Authzid: "z"}}
	if got := string(SASLObject(r)); got != `{"Mechanism":"LOGIN","User":"u","Password":"","Authzid":"z","Secured":false}` {
		t.Errorf("minimal object %s", got)
	}
}

func TestSASLMapping(t *testing.T) {
	ko := notFound
	failure := failing("http", "backend HTTP status 500")
	for _, tc := range []struct {
		name          string
		user, authzid string
		answer        func() (remote.Result, error)
		want          sasl.Result
		outcome       Outcome
		asked         bool
	}{
		{"OK", "alice", "", found(``), sasl.Result{Verdict: sasl.Accept, User: "alice"}, OutcomeFound, true},
		{"OK null", "alice", "", found(`null`), sasl.Result{Verdict: sasl.Accept, User: "alice"}, OutcomeFound, true},
		{"OK renamed", "alice", "", found(`{"User":"alice@example.org"}`), sasl.Result{Verdict: sasl.Accept, User: "alice@example.org"}, OutcomeFound, true},
		{"OK other fields", "alice", "", found(`{"Quota":1}`), sasl.Result{Verdict: sasl.Accept, User: "alice"}, OutcomeFound, true},
		{"KO", "alice", "", ko, sasl.Result{Verdict: sasl.Reject, Reason: ReasonWrongPassword}, OutcomeNotFound, true},
		{"failure", "alice", "", failure, sasl.Result{Verdict: sasl.TempFail}, OutcomeFailed, true},
		{"data not an object", "alice", "", found(`"alice"`), sasl.Result{Verdict: sasl.TempFail}, OutcomeFailed, true},
		{"user with a tab", "alice", "", found(`{"User":"a\tb"}`), sasl.Result{Verdict: sasl.TempFail}, OutcomeFailed, true},
		{"user empty", "alice", "", found(`{"User":""}`), sasl.Result{Verdict: sasl.TempFail}, OutcomeFailed, true},
		{"user not a string", "alice", "", found(`{"User":1}`), sasl.Result{Verdict: sasl.TempFail}, OutcomeFailed, true},
		{"authzid same", "alice", "alice", found(``), sasl.Result{Verdict: sasl.Accept, User: "alice"}, OutcomeFound, true},
		{"authzid not granted", "alice", "bob", found(``), sasl.Result{Verdict: sasl.Reject, Reason: ReasonAuthzid}, OutcomeFound, true},
		{"authzid granted", "alice", "bob", found(`{"User":"bob"}`), sasl.Result{Verdict: sasl.Accept, User: "bob"}, OutcomeFound, true},
		{"invalid UTF-8 user", "al\xffice", "", found(``), sasl.Result{Verdict: sasl.Reject, Reason: ReasonWrongPassword}, OutcomeNotFound, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := &fakeBackend{answer: tc.answer}
			var got Outcome
			s := &SASL{Backend: fb, Verb: "sasl", Record: func(v string, o Outcome, err error) {
				if (err != nil) != (o == OutcomeFailed) || v != "sasl" {
					t.Errorf("recorded %s %s with error %v", v, o, err)
				}
				got = o
			}}
			req := saslReq(tc.user, tc.authzid, "pw")
			res := s.Authenticate(context.Background(), req)
			if res != tc.want || got != tc.outcome {
				t.Errorf("got %+v %s, want %+v %s", res, got, tc.want, tc.outcome)
			}
			if asked := fb.verb != ""; asked != tc.asked {
				t.Errorf("backend asked: %v", asked)
			} else if asked && (fb.verb != "sasl" || fb.object != string(SASLObject(req))) {
				t.Errorf("backend asked %q %s", fb.verb, fb.object)
			}
		})
	}
}

func TestSASLInvalidPassword(t *testing.T) {
	fb := &fakeBackend{answer: found(``)}
	res := (&SASL{Backend: fb, Verb: "sasl"}).Authenticate(context.Background(), saslReq("alice", "", "\xff\xfe"))
	if res.Verdict != sasl.Reject || fb.verb != "" {
		t.Fatalf("invalid UTF-8 password: %+v, backend asked %q", res, fb.verb)
	}
}

// Logins reach the client uncached and uncoalesced, within SASLTimeout.
func TestSASLUncachedBounded(t *testing.T) {
	var asked []context.Context
	b := backendFunc(func(ctx context.Context) { asked = append(asked, ctx) })
	(&SASL{Backend: b, Verb: "sasl"}).Authenticate(context.Background(), saslReq("a", "", "p"))
	if len(asked) != 1 || !remote.IsUncached(asked[0]) {
		t.Fatal("login not marked uncached")
	}
	if d, ok := asked[0].Deadline(); !ok || time.Until(d) > SASLTimeout {
		t.Fatalf("deadline %v %v", d, ok)
	}
}

type fakeLimiter struct {
	blocked bool
	done    []Outcome
}

func (l *fakeLimiter) Allow(_ context.Context, ip, user string) (func([]byte, Outcome), bool) {
	if l.blocked {
		return nil, false
	}
	return func(pw []byte, o Outcome) { l.done = append(l.done, o) }, true
}

func TestSASLLimiter(t *testing.T) {
	fb := &fakeBackend{answer: found(``)}
	lim := &fakeLimiter{blocked: true}
	recorded := 0
	s := &SASL{Backend: fb, Verb: "sasl", Limiter: lim, Record: func(string, Outcome, error) { recorded++ }}
	res := s.Authenticate(context.Background(), saslReq("alice", "", "right"))
	if res.Verdict != sasl.Reject || res.Reason != ReasonBlocked || fb.verb != "" || recorded != 0 || len(lim.done) != 0 {
		t.Fatalf("blocked: %+v, backend %q, recorded %d, done %v", res, fb.verb, recorded, lim.done)
	}
	lim.blocked = false
	if res := s.Authenticate(context.Background(), saslReq("alice", "", "right")); res.Verdict != sasl.Accept {
		t.Fatalf("unblocked: %+v", res)
	}
	if !reflect.DeepEqual(lim.done, []Outcome{OutcomeFound}) || recorded != 1 {
		t.Fatalf("done %v recorded %d", lim.done, recorded)
	}
}

// FuzzSASLUser: whatever the backend sends as Data, an accepted name is
// one printable line postfix can take as user=.
func FuzzSASLUser(f *testing.F) {
	for _, s := range []string{``, `null`, `{"User":"a@b"}`, `{"User":"a\nb"}`, `{"User":null}`, `[1]`, `{"User":"\u0000"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := saslUser(data)
		if err == nil && u != "" && (!sasl.Printable(u) || len(u) > maxSASLUser) {
			t.Fatalf("accepted %q", u)
		}
	})
}
