package bridge

import (
	"encoding/json"
	"testing"
)

// plainJSONString must agree with encoding/json on every input it accepts,
// and leave every input with escapes, control bytes or invalid UTF-8 to it.
func checkPlainJSONString(t *testing.T, data []byte) {
	s, ok := plainJSONString(data)
	if !ok {
		return
	}
	var want string
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatalf("%q: fast path accepted what encoding/json refuses (%v)", data, err)
	}
	if s != want {
		t.Fatalf("%q: fast path %q, encoding/json %q", data, s, want)
	}
}

func TestPlainJSONString(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{`"alice@mbox.example.com"`, "alice@mbox.example.com", true},
		{`"a, b@example.org"`, "a, b@example.org", true},
		{`"é☃"`, "é☃", true},
		{`""`, "", true}, // decoded; the bridge refuses the empty value itself
		{`"a\"b"`, "", false},
		{`"a\\b"`, "", false},
		{`"a\u0041"`, "", false},
		{"\"a\tb\"", "", false},
		{"\"\xff\"", "", false},
		{`"abc`, "", false},
		{`abc"`, "", false},
		{`"`, "", false},
		{`null`, "", false},
		{`12`, "", false},
		{` "a"`, "", false},
	} {
		s, ok := plainJSONString([]byte(tc.in))
		if s != tc.want || ok != tc.ok {
			t.Errorf("%q: %q %v, want %q %v", tc.in, s, ok, tc.want, tc.ok)
		}
		checkPlainJSONString(t, []byte(tc.in))
	}
}

func FuzzPlainJSONString(f *testing.F) {
	for _, s := range []string{`"alice@example.org"`, `"a\"b"`, `"\u00e9"`, "\"\xc3\xa9\"", "\"\xff\"", `""`, `"a` + "\x7f" + `"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(checkPlainJSONString)
}
