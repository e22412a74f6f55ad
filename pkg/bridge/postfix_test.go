package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/shitenno/shitenno/pkg/remote"
	"github.com/shitenno/shitenno/pkg/socketmap"
)

// fakeBackend answers from a function and records what it was asked.
type fakeBackend struct {
	verb   string
	object string
	answer func() (remote.Result, error)
}

func (f *fakeBackend) Lookup(ctx context.Context, verb string, object any) (remote.Result, error) {
	b, _ := json.Marshal(object)
	return f.LookupRaw(ctx, verb, b)
}

func (f *fakeBackend) LookupRaw(_ context.Context, verb string, object json.RawMessage) (remote.Result, error) {
	f.verb, f.object = verb, string(object)
	return f.answer()
}

func (b *fakeBackend) LookupObject(ctx context.Context, verb string, o remote.Object) (remote.Result, error) {
	return b.LookupRaw(ctx, verb, o.JSON())
}

func found(data string) func() (remote.Result, error) {
	return func() (remote.Result, error) {
		return remote.Result{Status: remote.Found, Data: json.RawMessage(data)}, nil
	}
}

// notFound is the backend's KO.
func notFound() (remote.Result, error) { return remote.Result{Status: remote.NotFound}, nil }

// failing is a lookup that fails with an error of kind and reason.
func failing(kind remote.Kind, reason string) func() (remote.Result, error) {
	return func() (remote.Result, error) {
		return remote.Result{}, &remote.Error{Kind: kind, Reason: reason}
	}
}

// replyCase is a row of a bridge's mapping table: what the backend
// answers, the reply the bridge gives, and the outcome it records.
type replyCase[R any] struct {
	name    string
	answer  func() (remote.Result, error)
	want    R
	outcome Outcome
}

func TestPostfixMapping(t *testing.T) {
	big := strings.Repeat("x", socketmap.MaxPayload-3)
	for _, tc := range []struct {
		name    string
		key     string
		answer  func() (remote.Result, error)
		want    socketmap.Reply
		outcome Outcome
	}{
		{"found", "alice@example.org", found(`"alice@mbox"`), socketmap.Reply{Kind: socketmap.OK, Text: "alice@mbox"}, OutcomeFound},
		{"found escaped", "k", found(`"a\"b\u00e9"`), socketmap.Reply{Kind: socketmap.OK, Text: "a\"bé"}, OutcomeFound},
		{"largest value", "k", found(`"` + big + `"`), socketmap.Reply{Kind: socketmap.OK, Text: big}, OutcomeFound},
		{"not found", "k", notFound,
			socketmap.Reply{Kind: socketmap.NotFound}, OutcomeNotFound},
		{"failure", "k", failing(remote.KindHTTP, "backend HTTP status 503"), socketmap.Reply{Kind: socketmap.Temp, Text: "backend HTTP status 503"}, OutcomeFailed},
		{"data number", "k", found(`42`), socketmap.Reply{Kind: socketmap.Temp, Text: "backend Data is not a string"}, OutcomeFailed},
		{"data object", "k", found(`{"a":"b"}`), socketmap.Reply{Kind: socketmap.Temp, Text: "backend Data is not a string"}, OutcomeFailed},
		{"data null", "k", found(`null`), socketmap.Reply{Kind: socketmap.Temp, Text: "backend Data is not a string"}, OutcomeFailed},
		{"data missing", "k", found(``), socketmap.Reply{Kind: socketmap.Temp, Text: "backend Data is not a string"}, OutcomeFailed},
		{"data empty", "k", found(`""`), socketmap.Reply{Kind: socketmap.Temp, Text: "backend Data is an empty string"}, OutcomeFailed},
		{"data with NUL", "k", found(`"a@example.org\u0000,b@example.org"`), socketmap.Reply{Kind: socketmap.Temp, Text: "backend Data contains a NUL byte"}, OutcomeFailed},
		{"data too long", "k", found(`"` + big + `x"`), socketmap.Reply{Kind: socketmap.Perm,
			Text: "backend Data longer than postfix's 100000-byte reply limit"}, OutcomeFailed},
		{"invalid utf-8 key", "\xff", found(`"x"`), socketmap.Reply{Kind: socketmap.Perm, Text: "key is not valid UTF-8"}, OutcomeFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := &fakeBackend{answer: tc.answer}
			var gotOutcome Outcome
			p := &Postfix{Backend: fb, Record: func(verb string, o Outcome, err error) { gotOutcome = o }}
			rep := p.ServeSocketmap(context.Background(), socketmap.Request{Name: []byte("virtual"), Key: []byte(tc.key)})
			if rep != tc.want || gotOutcome != tc.outcome {
				t.Errorf("got %+v %s, want %+v %s", rep, gotOutcome, tc.want, tc.outcome)
			}
		})
	}
}

func TestPostfixRequest(t *testing.T) {
	fb := &fakeBackend{answer: found(`"x"`)}
	p := &Postfix{Backend: fb}
	p.ServeSocketmap(context.Background(), socketmap.Request{Name: []byte("virtual"), Key: []byte("Foo Bar@Example.COM\"")})
	if fb.verb != "virtual" || fb.object != `"Foo Bar@Example.COM\""` {
		t.Errorf("backend asked %q %s", fb.verb, fb.object)
	}
}

// TestPostfixDotSegmentName: a map name of "." or ".." would be a dot
// segment in the backend URL (RemoteURL + name), which a server or proxy
// may resolve to another path: it is refused, the backend not asked.
func TestPostfixDotSegmentName(t *testing.T) {
	for _, name := range []string{".", ".."} {
		fb := &fakeBackend{answer: found(`"x"`)}
		p := &Postfix{Backend: fb}
		rep := p.ServeSocketmap(context.Background(), socketmap.Request{Name: []byte(name), Key: []byte("k")})
		if rep.Kind != socketmap.Perm || fb.verb != "" {
			t.Errorf("name %q: got %+v, backend asked %q", name, rep, fb.verb)
		}
	}
}

// TestReasonOfWrappedError: a backend failure wrapped on its way (by a
// Backend implementation adding context) still gives the peer its reason.
func TestReasonOfWrappedError(t *testing.T) {
	p := &Postfix{Backend: &fakeBackend{answer: func() (remote.Result, error) {
		return remote.Result{}, fmt.Errorf("reloading: %w", &remote.Error{Kind: remote.KindHTTP, Reason: "backend HTTP status 503"})
	}}}
	rep := p.ServeSocketmap(context.Background(), socketmap.Request{Name: []byte("virtual"), Key: []byte("k")})
	if rep.Kind != socketmap.Temp || rep.Text != "backend HTTP status 503" {
		t.Fatalf("got %+v", rep)
	}
}
