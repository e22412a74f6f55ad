package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/shitenno/shitenno/pkg/mailauth"
	"github.com/shitenno/shitenno/pkg/remote"
)

// ngxBackend answers every lookup with one result and records the request.
type ngxBackend struct {
	calls  int
	verb   string
	object string
	res    remote.Result
	err    error
}

func (b *ngxBackend) Lookup(ctx context.Context, verb string, object any) (remote.Result, error) {
	o, err := json.Marshal(object)
	if err != nil {
		return remote.Result{}, err
	}
	return b.LookupRaw(ctx, verb, o)
}

func (b *ngxBackend) LookupRaw(_ context.Context, verb string, object json.RawMessage) (remote.Result, error) {
	b.calls++
	b.verb, b.object = verb, string(object)
	return b.res, b.err
}

func (b *ngxBackend) LookupObject(ctx context.Context, verb string, o remote.Object) (remote.Result, error) {
	return b.LookupRaw(ctx, verb, o.JSON())
}

func ngxRequest(proto, method string) *mailauth.Request {
	return &mailauth.Request{
		Method: method, Protocol: proto, User: "alice", Pass: "p w+%\"é", Attempt: 1, ClientIP: "192.0.2.7",
		Fields: map[string]string{"Auth-Method": method, "Auth-User": "alice", "Auth-Protocol": proto,
			"Auth-Login-Attempt": "1", "Client-IP": "192.0.2.7"},
	}
}

func TestNginxMapping(t *testing.T) {
	ok := func(data string) remote.Result {
		return remote.Result{Status: remote.Found, Data: json.RawMessage(data)}
	}
	ko := func(data string) remote.Result {
		return remote.Result{Status: remote.NotFound, Data: json.RawMessage(data)}
	}
	ip := netip.MustParseAddr
	imap, smtp := ngxRequest("imap", "plain"), ngxRequest("smtp", "plain")
	for _, tc := range []struct {
		name    string
		req     *mailauth.Request
		res     remote.Result
		want    mailauth.Reply
		outcome Outcome
		failure string // substring of the failure reason; "" for no failure
	}{
		{"ok string port", imap, ok(`{"Auth-Server":"10.0.0.5","Auth-Port":"143"}`),
			mailauth.Reply{Status: "OK", Server: ip("10.0.0.5"), Port: 143}, OutcomeFound, ""},
		{"ok number port and creds", imap, ok(`{"Auth-Server":"2001:db8::5","Auth-Port":993,"Auth-User":"alice@mbox","Auth-Pass":"up stream","Extra":1}`),
			mailauth.Reply{Status: "OK", Server: ip("2001:db8::5"), Port: 993, User: "alice@mbox", Pass: "up stream"}, OutcomeFound, ""},
		{"ok v4-mapped", imap, ok(`{"Auth-Server":"::ffff:10.0.0.5","Auth-Port":143}`),
			mailauth.Reply{Status: "OK", Server: ip("10.0.0.5"), Port: 143}, OutcomeFound, ""},
		{"ok cram-md5 with pass", ngxRequest("imap", "cram-md5"), ok(`{"Auth-Server":"10.0.0.5","Auth-Port":143,"Auth-Pass":"secret"}`),
			mailauth.Reply{Status: "OK", Server: ip("10.0.0.5"), Port: 143, Pass: "secret"}, OutcomeFound, ""},
		{"ok smtp cram-md5 without pass", ngxRequest("smtp", "cram-md5"), ok(`{"Auth-Server":"10.0.0.5","Auth-Port":25}`),
			mailauth.Reply{Status: "OK", Server: ip("10.0.0.5"), Port: 25}, OutcomeFound, ""},

		// No DNS lookup here: a host name is the backend's to resolve.
		{"ok host name", imap, ok(`{"Auth-Server":"imap.example","Auth-Port":143}`), mailauth.Reply{}, OutcomeFailed, "not an IP address"},
		{"ok localhost", imap, ok(`{"Auth-Server":"localhost","Auth-Port":143}`), mailauth.Reply{}, OutcomeFailed, "not an IP address"},
		{"ok odd host", imap, ok(`{"Auth-Server":"a b","Auth-Port":143}`), mailauth.Reply{}, OutcomeFailed, "not an IP address"},
		{"ok zone", imap, ok(`{"Auth-Server":"fe80::1%eth0","Auth-Port":143}`), mailauth.Reply{}, OutcomeFailed, "zone"},
		{"ok no server", imap, ok(`{"Auth-Port":143}`), mailauth.Reply{}, OutcomeFailed, "Auth-Server"},
		{"ok server number", imap, ok(`{"Auth-Server":1,"Auth-Port":143}`), mailauth.Reply{}, OutcomeFailed, "Auth-Server"},
		{"ok no port", imap, ok(`{"Auth-Server":"10.0.0.5"}`), mailauth.Reply{}, OutcomeFailed, "Auth-Port"},
		{"ok port 0", imap, ok(`{"Auth-Server":"10.0.0.5","Auth-Port":0}`), mailauth.Reply{}, OutcomeFailed, "Auth-Port"},
		{"ok port 65536", imap, ok(`{"Auth-Server":"10.0.0.5","Auth-Port":"65536"}`), mailauth.Reply{}, OutcomeFailed, "Auth-Port"},
		{"ok port float", imap, ok(`{"Auth-Server":"10.0.0.5","Auth-Port":143.5}`), mailauth.Reply{}, OutcomeFailed, "Auth-Port"},
		{"ok port signed", imap, ok(`{"Auth-Server":"10.0.0.5","Auth-Port":"+143"}`), mailauth.Reply{}, OutcomeFailed, "Auth-Port"},
		{"ok data string", imap, ok(`"10.0.0.5:143"`), mailauth.Reply{}, OutcomeFailed, "not an object"},
		{"ok data null", imap, ok(`null`), mailauth.Reply{}, OutcomeFailed, "Auth-Server"},
		{"ok data absent", imap, ok(``), mailauth.Reply{}, OutcomeFailed, "Auth-Server"},
		{"ok pass number", imap, ok(`{"Auth-Server":"10.0.0.5","Auth-Port":143,"Auth-Pass":1}`), mailauth.Reply{}, OutcomeFailed, "Auth-Pass"},
		{"ok header injection", imap, ok(`{"Auth-Server":"10.0.0.5","Auth-Port":143,"Auth-Pass":"x\r\nAuth-Server: 6.6.6.6"}`), mailauth.Reply{}, OutcomeFailed, "cannot be sent"},
		{"ok too long", imap, ok(`{"Auth-Server":"10.0.0.5","Auth-Port":143,"Auth-Pass":"` + strings.Repeat("x", 1000) + `"}`), mailauth.Reply{}, OutcomeFailed, "cannot be sent"},
		{"ok cram-md5 without pass", ngxRequest("imap", "cram-md5"), ok(`{"Auth-Server":"10.0.0.5","Auth-Port":143}`), mailauth.Reply{}, OutcomeFailed, "no Auth-Pass"},
		{"ok apop without pass", ngxRequest("pop3", "apop"), ok(`{"Auth-Server":"10.0.0.5","Auth-Port":110}`), mailauth.Reply{}, OutcomeFailed, "no Auth-Pass"},

		{"ko null", imap, ko(`null`), mailauth.Reply{Status: mailauth.StatusDenied, Wait: 3}, OutcomeNotFound, ""},
		{"ko absent smtp", smtp, ko(``), mailauth.Reply{Status: mailauth.StatusDenied, Wait: 3, ErrorCode: "535 5.7.8"}, OutcomeNotFound, ""},
		{"ko overrides", smtp, ko(`{"Auth-Status":"Account locked","Auth-Wait":"0","Auth-Error-Code":"550 5.7.1"}`),
			mailauth.Reply{Status: "Account locked", Wait: 0, ErrorCode: "550 5.7.1"}, OutcomeNotFound, ""},
		{"ko wait number", imap, ko(`{"Auth-Wait":10}`), mailauth.Reply{Status: mailauth.StatusDenied, Wait: 10}, OutcomeNotFound, ""},
		{"ko empty object", imap, ko(`{}`), mailauth.Reply{Status: mailauth.StatusDenied, Wait: 3}, OutcomeNotFound, ""},
		{"ko status OK", imap, ko(`{"Auth-Status":"OK"}`), mailauth.Reply{}, OutcomeFailed, "refusal"},
		{"ko status WAIT", imap, ko(`{"Auth-Status":"WAIT"}`), mailauth.Reply{}, OutcomeFailed, "refusal"},
		{"ko status empty", imap, ko(`{"Auth-Status":""}`), mailauth.Reply{}, OutcomeFailed, "refusal"},
		{"ko status CRLF", imap, ko(`{"Auth-Status":"no\r\nAuth-Status: OK"}`), mailauth.Reply{}, OutcomeFailed, "cannot be sent"},
		{"ko wait negative", imap, ko(`{"Auth-Wait":-1}`), mailauth.Reply{}, OutcomeFailed, "Auth-Wait"},
		{"ko wait huge", imap, ko(`{"Auth-Wait":"99999"}`), mailauth.Reply{}, OutcomeFailed, "Auth-Wait"},
		{"ko wait text", imap, ko(`{"Auth-Wait":"soon"}`), mailauth.Reply{}, OutcomeFailed, "Auth-Wait"},
		{"ko code success", smtp, ko(`{"Auth-Error-Code":"235 2.7.0"}`), mailauth.Reply{}, OutcomeFailed, "Auth-Error-Code"},
		{"ko data array", imap, ko(`[1]`), mailauth.Reply{}, OutcomeFailed, "not an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &ngxBackend{res: tc.res}
			var recOutcome Outcome
			n := &Nginx{
				Backend: b,
				Record:  func(verb string, o Outcome, err error) { recOutcome = o },
			}
			start := time.Now()
			rep, err := n.ServeAuth(t.Context(), tc.req)
			if time.Since(start) > time.Second {
				t.Errorf("took %v", time.Since(start))
			}
			if recOutcome != tc.outcome {
				t.Errorf("outcome %q, want %q", recOutcome, tc.outcome)
			}
			if tc.failure != "" {
				var re *remote.Error
				if !errors.As(err, &re) || !strings.Contains(re.Reason, tc.failure) {
					t.Fatalf("err = %v, want a *remote.Error mentioning %q", err, tc.failure)
				}
				if strings.Contains(re.Reason, "6.6.6.6") || strings.Contains(re.Reason, "xxxx") {
					t.Fatalf("reason echoes backend data: %q", re.Reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rep != tc.want {
				t.Fatalf("reply %+v, want %+v", rep, tc.want)
			}
			if err := rep.Validate(tc.req); err != nil {
				t.Fatalf("reply not sendable: %v", err)
			}
		})
	}
}

func TestNginxObject(t *testing.T) {
	b := &ngxBackend{res: remote.Result{Status: remote.NotFound}}
	n := &Nginx{Backend: b}
	if _, err := n.ServeAuth(t.Context(), ngxRequest("imap", "plain")); err != nil {
		t.Fatal(err)
	}
	want := `{"Auth-Login-Attempt":"1","Auth-Method":"plain","Auth-Pass":"p w+%\"é","Auth-Protocol":"imap","Auth-User":"alice","Client-IP":"192.0.2.7"}`
	if b.verb != "nginx" || b.object != want {
		t.Fatalf("backend got %s %s\nwant nginx %s", b.verb, b.object, want)
	}
}

func TestNginxBackendFailure(t *testing.T) {
	fail := &remote.Error{Kind: remote.KindTimeout, Reason: "backend timeout"}
	n := &Nginx{Backend: &ngxBackend{err: fail}}
	if _, err := n.ServeAuth(t.Context(), ngxRequest("smtp", "plain")); !errors.Is(err, fail) {
		t.Fatalf("err = %v, want the backend's error", err)
	}
}

func TestNginxInvalidUTF8NotSent(t *testing.T) {
	for _, req := range []*mailauth.Request{
		func() *mailauth.Request { r := ngxRequest("imap", "plain"); r.Pass = "\xff"; return r }(),
		func() *mailauth.Request { r := ngxRequest("imap", "plain"); r.Fields["Auth-User"] = "a\xfe"; return r }(),
	} {
		b := &ngxBackend{res: remote.Result{Status: remote.Found}}
		rep, err := (&Nginx{Backend: b}).ServeAuth(t.Context(), req)
		if err != nil || rep.Status != mailauth.StatusDenied || b.calls != 0 {
			t.Fatalf("reply %+v, err %v, backend calls %d; want a refusal without backend call", rep, err, b.calls)
		}
	}
}

// TestNginxInvalidUTF8InformationAsked: invalid UTF-8 in a field that is
// information only (HELO, MAIL FROM, RCPT TO, the client's host name) is
// no reason to refuse a login: the backend is asked, with each invalid
// byte replaced by U+FFFD.
func TestNginxInvalidUTF8InformationAsked(t *testing.T) {
	for _, field := range []string{"Auth-SMTP-Helo", "Auth-SMTP-From", "Auth-SMTP-To", "Client-Host"} {
		req := ngxRequest("smtp", "plain")
		req.Fields[field] = "a\xffb\xfe"
		b := &ngxBackend{res: remote.Result{Status: remote.NotFound}}
		rep, err := (&Nginx{Backend: b}).ServeAuth(t.Context(), req)
		if err != nil || rep.Status != mailauth.StatusDenied || b.calls != 1 {
			t.Fatalf("%s: reply %+v, err %v, backend calls %d; want the backend asked", field, rep, err, b.calls)
		}
		if !strings.Contains(b.object, `"`+field+`":"a\ufffdb\ufffd"`) && !strings.Contains(b.object, `"`+field+`":"a`+"\ufffd"+`b`+"\ufffd"+`"`) {
			t.Fatalf("%s: object %s", field, b.object)
		}
	}
}
