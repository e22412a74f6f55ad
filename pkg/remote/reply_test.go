package remote

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzFastReply: ParseReply (the fast path where it applies) gives the
// same answer as encoding/json for any input: same Status and Data bytes,
// or a failure of the same kind and reason.
func FuzzFastReply(f *testing.F) {
	for _, s := range []string{
		`{"Verb":"v","Object":"k","Status":"OK","Data":"x"}`, `{"Status":"KO","Data":null}`, `{"Status":"KO"}`,
		`{"Status":"MAYBE"}`, `<html>`, ``, ` { "Status" : "OK" , "Data" : { "a" : [1,2,"}"] } } `, `[1]`,
		`{"status":"OK","DATA":1}`, `{"Status":"OK","Status":null}`, `{"Status":null,"status":"KO"}`,
		`{"Status":"O\u004b"}`, `{"St\u0061tus":"OK"}`, `{"ſtatus":"OK"}`, `{"Status":1}`, `null`, `{}`,
		`{"Data":"a\"b","Status":"OK","Data":[{}]}`, `{"Status":"OK"} x`, `{"Status":"OK","Data":-1.5e3}`,
		`{"Status":"OK","Data":"\ud800"}`, "{\"Status\":\"OK\xff\"}", `{"Status":"OK","Data":true}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, gerr := ParseReply(in)
		want, werr := parseReplySlow(in)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("%q: fast %v, slow %v", in, gerr, werr)
		}
		if gerr != nil {
			var g, w *Error
			if !errors.As(gerr, &g) || !errors.As(werr, &w) || g.Kind != w.Kind || g.Reason != w.Reason {
				t.Fatalf("%q: fast %v, slow %v", in, gerr, werr)
			}
			return
		}
		if got.Status != want.Status || !bytes.Equal(got.Data, want.Data) || (got.Data == nil) != (want.Data == nil) {
			t.Fatalf("%q: fast %v %q, slow %v %q", in, got.Status, got.Data, want.Status, want.Data)
		}
	})
}

// TestFastReplyCopiesData: the Data of a reply does not alias the body,
// which the caller may reuse.
func TestFastReplyCopiesData(t *testing.T) {
	body := []byte(`{"Status":"OK","Data":"abc"}`)
	r, err := ParseReply(body)
	if err != nil {
		t.Fatal(err)
	}
	copy(body, bytes.Repeat([]byte("x"), len(body)))
	if string(r.Data) != `"abc"` {
		t.Fatalf("Data changed with the body: %q", r.Data)
	}
}
