package bridge

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/shitenno/shitenno/pkg/dict"
	"github.com/shitenno/shitenno/pkg/remote"
)

func TestDovecotKeyMapping(t *testing.T) {
	for _, tc := range []struct {
		key, verb, object string
	}{
		{"shared/passdb/alice@example.org", "passdb", `{"Context":"shared","Object":"alice@example.org"}`},
		{"shared/userdb/alice@example.org/quota", "userdb", `{"Context":"shared","Object":"alice@example.org/quota"}`},
		{"priv/userdb/", "userdb", `{"Context":"priv","Object":""}`},
		{"shared/passdb/a\tb\"c\\d", "passdb", `{"Context":"shared","Object":"a\tb\"c\\d"}`},
		{"shared/passdb/josé", "passdb", `{"Context":"shared","Object":"josé"}`},
	} {
		fb := &fakeBackend{answer: found(`{"x":"y"}`)}
		d := &Dovecot{Backend: fb}
		rep := d.ServeDict(context.Background(), dict.Request{Key: tc.key, User: "ignored"})
		if rep.Kind != dict.Found {
			t.Errorf("%q: reply %+v", tc.key, rep)
		}
		if fb.verb != tc.verb || fb.object != tc.object {
			t.Errorf("%q: backend got verb %q object %s; want %q %s", tc.key, fb.verb, fb.object, tc.verb, tc.object)
		}
		if !json.Valid([]byte(fb.object)) {
			t.Errorf("%q: object is not JSON: %s", tc.key, fb.object)
		}
	}
}

func TestDovecotMalformedKeys(t *testing.T) {
	for _, key := range []string{"", "shared", "shared/passdb", "/passdb/x", "shared//x", "shared/../admin", "shared/./x"} {
		fb := &fakeBackend{answer: found(`{"x":"y"}`)}
		var outcome Outcome
		d := &Dovecot{Backend: fb, Record: func(_ string, o Outcome, err error) { outcome = o }}
		rep := d.ServeDict(context.Background(), dict.Request{Key: key})
		if rep.Kind != dict.Failed || !strings.Contains(rep.Value, "malformed key") || outcome != OutcomeFailed {
			t.Errorf("%q: reply %+v outcome %s", key, rep, outcome)
		}
		if fb.verb != "" {
			t.Errorf("%q: backend was asked", key)
		}
	}
}

func TestDovecotReplies(t *testing.T) {
	big := strings.Repeat("x", dict.MaxLineSize)
	for _, tc := range []replyCase[dict.Reply]{
		{"found", found(`{"password":"{PLAIN}secret","uid":1000,"gid":1000,"home":"/var/vmail/alice"}`),
			dict.Reply{Kind: dict.Found, Value: `{"gid":1000,"home":"/var/vmail/alice","password":"{PLAIN}secret","uid":1000}`}, OutcomeFound},
		{"pretty printed becomes one line", found("{\n  \"uid\": 1000,\n  \"home\": \"/h\"\n}\n"),
			dict.Reply{Kind: dict.Found, Value: `{"home":"/h","uid":1000}`}, OutcomeFound},
		{"big ints keep their digits", found(`{"uid":123456789012345678901234567890,"f":1.5e3,"n":-0.25}`),
			dict.Reply{Kind: dict.Found, Value: `{"f":1.5e3,"n":-0.25,"uid":123456789012345678901234567890}`}, OutcomeFound},
		{"booleans kept, null dropped", found(`{"flag":true,"off":false,"nul":null}`),
			dict.Reply{Kind: dict.Found, Value: `{"flag":true,"off":false}`}, OutcomeFound},
		{"control characters escaped in JSON", found(`{"p":"a\tb\nc\u0001"}`),
			dict.Reply{Kind: dict.Found, Value: `{"p":"a\tb\nc\u0001"}`}, OutcomeFound},
		{"escapes normalised", found(`{"p":"\u00e9\/x"}`),
			dict.Reply{Kind: dict.Found, Value: `{"p":"é/x"}`}, OutcomeFound},
		{"empty object", found(`{}`), dict.Reply{Kind: dict.Found, Value: `{}`}, OutcomeFound},
		{"not found", notFound,
			dict.Reply{Kind: dict.NotFound}, OutcomeNotFound},
		{"not found with data", func() (remote.Result, error) {
			return remote.Result{Status: remote.NotFound, Data: json.RawMessage(`{"a":1}`)}, nil
		}, dict.Reply{Kind: dict.NotFound}, OutcomeNotFound},
		{"failure", failing(remote.KindTimeout, "backend timeout"), dict.Reply{Kind: dict.Failed, Value: "backend timeout"}, OutcomeFailed},
		{"nested object", found(`{"a":{"b":1}}`),
			dict.Reply{Kind: dict.Failed, Value: "backend Data is not flat (a member is an object or array)"}, OutcomeFailed},
		{"array", found(`{"a":[1]}`),
			dict.Reply{Kind: dict.Failed, Value: "backend Data is not flat (a member is an object or array)"}, OutcomeFailed},
		{"empty key", found(`{"":"x"}`), dict.Reply{Kind: dict.Failed, Value: "backend Data has an empty key"}, OutcomeFailed},
		{"string", found(`"just a string"`), dict.Reply{Kind: dict.Failed, Value: "backend Data is not a JSON object"}, OutcomeFailed},
		{"top-level array", found(`[{"a":1}]`), dict.Reply{Kind: dict.Failed, Value: "backend Data is not a JSON object"}, OutcomeFailed},
		{"null", found(`null`), dict.Reply{Kind: dict.Failed, Value: "backend Data is not a JSON object"}, OutcomeFailed},
		{"missing", found(``), dict.Reply{Kind: dict.Failed, Value: "backend Data is not a JSON object"}, OutcomeFailed},
		{"truncated", found(`{"a":"b"`), dict.Reply{Kind: dict.Failed, Value: "backend Data is not a JSON object"}, OutcomeFailed},
		{"too long for dovecot", found(`{"a":"` + big + `"}`),
			dict.Reply{Kind: dict.Failed, Value: "backend Data longer than dovecot's 64 KiB line limit"}, OutcomeFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gotVerb string
			var gotOutcome Outcome
			d := &Dovecot{Backend: &fakeBackend{answer: tc.answer}, Record: func(v string, o Outcome, err error) {
				gotVerb, gotOutcome = v, o
				if (o == OutcomeFailed) != (err != nil) {
					t.Errorf("outcome %s with err %v", o, err)
				}
			}}
			rep := d.ServeDict(context.Background(), dict.Request{Key: "shared/passdb/alice@example.org"})
			if rep != tc.want {
				t.Fatalf("reply %+v\nwant  %+v", rep, tc.want)
			}
			if gotVerb != "passdb" || gotOutcome != tc.outcome {
				t.Fatalf("recorded %q %s, want passdb %s", gotVerb, gotOutcome, tc.outcome)
			}
			// Whatever the backend said, the wire line is one line that
			// dovecot can split: no raw TAB or LF inside.
			wire := dict.AppendReply(nil, rep)
			if strings.ContainsAny(string(wire[:len(wire)-1]), "\t\n\r") {
				t.Fatalf("wire %q", wire)
			}
			if rep.Kind == dict.Found && !json.Valid([]byte(rep.Value)) {
				t.Fatalf("invalid JSON %q", rep.Value)
			}
		})
	}
}

// FuzzDovecotData checks that any backend Data either fails cleanly or
// becomes one flat, valid, compact JSON object.
func FuzzDovecotData(f *testing.F) {
	for _, s := range []string{`{"a":"b"}`, `{"uid":1e400}`, `{"a":{"b":1}}`, `{"a":null,"b":true}`, `"x"`, `{"\u0000":"\ud800"}`, "{\"a\":\"\xff\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := flatJSON(data)
		if err != nil {
			return
		}
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(v))
		dec.UseNumber() // 1e400 is a valid JSON number, not a float64
		if e := dec.Decode(&m); e != nil {
			t.Fatalf("output %q is not a JSON object: %v", v, e)
		}
		for k, x := range m {
			switch x.(type) {
			case string, json.Number, bool:
			default:
				t.Fatalf("member %q has type %T", k, x)
			}
		}
		if strings.ContainsAny(v, "\t\n\r\x00\x01") {
			t.Fatalf("raw control byte in %q", v)
		}
	})
}

// FuzzFastFlatJSON: whatever the one-scan path accepts, it re-encodes
// exactly as the encoding/json path does.
func FuzzFastFlatJSON(f *testing.F) {
	for _, s := range []string{
		`{"password":"{PLAIN}secret","uid":1000,"gid":1000,"home":"/var/vmail/alice"}`,
		` { "b" : -1.5e+3 , "a" : true, "c": null, "d": false } `, `{}`, `{"a":1,"a":2}`, `{"":1}`,
		`{"a":01}`, `{"a":"x\u0041"}`, `{"a":"<b>"}`, `{"a":[1]}`, `{"a":1,}`, `{"z":"1","y":"2"}` + "\v", "{\"del\":\"a\x7fb\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := fastFlatJSON(data)
		if !ok {
			return
		}
		slow, err := slowFlatJSON(data)
		if err != nil || slow != fast {
			t.Fatalf("%q: fast %q, encoding/json %q (%v)", data, fast, slow, err)
		}
	})
}

func BenchmarkDovecotLookup(b *testing.B) {
	d := &Dovecot{Backend: &fakeBackend{answer: found(`{"password":"{PLAIN}secret","uid":1000,"gid":1000,"home":"/var/vmail/alice"}`)}}
	req := dict.Request{Key: "shared/passdb/alice@example.org", User: "alice@example.org"}
	b.ReportAllocs()
	for b.Loop() {
		if rep := d.ServeDict(context.Background(), req); rep.Kind != dict.Found {
			b.Fatal(rep)
		}
	}
}
