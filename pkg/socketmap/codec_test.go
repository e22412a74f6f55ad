package socketmap

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func read(s string) ([]byte, error) {
	return ReadNetstring(bufio.NewReader(strings.NewReader(s)), nil, MaxPayload)
}

func TestReadNetstring(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"8:verb1 ok,", "verb1 ok"},
		{"6:verb1 ,", "verb1 "},
		{"0:,", ""},
		{"25:verb1 Foo Bar@Example.COM,", "verb1 Foo Bar@Example.COM"},
	} {
		got, err := read(tc.in)
		if err != nil || string(got) != tc.want {
			t.Errorf("%q: got %q, %v; want %q, <nil>", tc.in, got, err, tc.want)
		}
	}
	// Refused frames, by the error each must return (and no payload).
	for _, tc := range []struct {
		err error
		in  []string
	}{
		{io.EOF, []string{""}},
		{ErrTruncated, []string{"5:abc", "5:abcde", "5"}},
		{ErrNoComma, []string{"5:abcde;"}},
		{ErrBadLength, []string{":abc,", "-1:a,", "+1:a,", " 1:a,", "1 :a,", "x:a,"}},
		{errLeadZeroes, []string{"01:a,"}},
		{ErrTooLong, []string{"100001:", "99999999999999999999999999:"}},
	} {
		for _, in := range tc.in {
			got, err := read(in)
			if !errors.Is(err, tc.err) || string(got) != "" {
				t.Errorf("%q: got %q, %v; want \"\", %v", in, got, err, tc.err)
			}
		}
	}
}

func TestReadNetstringStream(t *testing.T) {
	// Several frames in one buffer, and one frame split across reads.
	r := bufio.NewReader(io.MultiReader(strings.NewReader("3:a b,4:c d"), strings.NewReader("e,")))
	var got []string
	for {
		p, err := ReadNetstring(r, nil, 100)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(p))
	}
	if strings.Join(got, "|") != "a b|c de" {
		t.Fatalf("got %q", got)
	}
}

func TestParseRequest(t *testing.T) {
	for in, want := range map[string]error{"novalue": ErrNoSpace, " key": ErrEmptyName} {
		r, err := ParseRequest([]byte(in))
		if !errors.Is(err, want) || string(r.Name) != "" || string(r.Key) != "" {
			t.Errorf("%q: got %q %q %v, want %v", in, r.Name, r.Key, err, want)
		}
	}
	for _, tc := range []struct{ in, name, key string }{
		{"virtual alice@example.org", "virtual", "alice@example.org"},
		{"virtual Foo Bar@Example.COM", "virtual", "Foo Bar@Example.COM"},
		{"virtual ", "virtual", ""},
		{"virtual  two", "virtual", " two"},
	} {
		r, err := ParseRequest([]byte(tc.in))
		if err != nil || string(r.Name) != tc.name || string(r.Key) != tc.key {
			t.Errorf("%q: got %q %q %v", tc.in, r.Name, r.Key, err)
		}
	}
}

func TestAppendReply(t *testing.T) {
	for _, tc := range []struct {
		r    Reply
		want string
	}{
		{Reply{OK, "some data"}, "12:OK some data,"},
		{Reply{OK, "café"}, "8:OK café,"},
		{Reply{NotFound, "ignored"}, "9:NOTFOUND ,"},
		{Reply{Temp, "backend timed out"}, "22:TEMP backend timed out,"},
		{Reply{Timeout, "slow"}, "12:TIMEOUT slow,"},
		{Reply{Perm, "bad"}, "8:PERM bad,"},
		{Reply{Temp, "a\nb\x00c"}, "10:TEMP a?b?c,"},
		{Reply{OK, ""}, "36:PERM backend returned an empty value,"},
		{Reply{Kind(42), "x"}, "19:TEMP internal error,"},
	} {
		if got := string(AppendReply(nil, tc.r)); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.r, got, tc.want)
		}
	}
	// The largest value postfix accepts: a 100000-byte payload.
	v := strings.Repeat("x", MaxPayload-3)
	if got := AppendReply(nil, Reply{OK, v}); !bytes.HasPrefix(got, []byte("100000:OK xx")) {
		t.Errorf("99997-byte value: got prefix %q", got[:20])
	}
	if got := AppendReply(nil, Reply{OK, v + "x"}); !bytes.HasPrefix(got, []byte("")) || !bytes.Contains(got, []byte(":PERM ")) {
		t.Errorf("99998-byte value: got %q", got)
	}
	// Reasons are cut to what postfix logs.
	if got := AppendReply(nil, Reply{Temp, strings.Repeat("r", 500)}); len(got) != len("205:TEMP ,")+200 {
		t.Errorf("long reason: %d bytes", len(got))
	}
}

// FuzzNetstring: any input either decodes to frames that re-encode to the
// same bytes, or fails; never panics, never returns more than the limit.
func FuzzNetstring(f *testing.F) {
	for _, s := range []string{"8:verb1 ok,", "0:,", "3:a b,4:c de,", "5:abc", "01:a,", "100001:", ":,", "2:\x00\xff,"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		var out []byte
		for {
			p, err := ReadNetstring(r, nil, 1000)
			if err != nil {
				if err == io.EOF && !bytes.Equal(out, in) {
					t.Fatalf("clean EOF but frames %q != input %q", out, in)
				}
				return
			}
			if len(p) > 1000 {
				t.Fatalf("payload over the limit: %d", len(p))
			}
			out = AppendNetstring(out, p)
			if req, err := ParseRequest(p); err == nil && len(req.Name)+1+len(req.Key) != len(p) {
				t.Fatalf("request split lost bytes: %q", p)
			}
		}
	})
}

// FuzzAppendReply: every reply is one well-formed netstring within
// postfix's limit that starts with a keyword postfix knows.
func FuzzAppendReply(f *testing.F) {
	f.Add(uint8(0), "value")
	f.Add(uint8(2), "reason\n")
	f.Add(uint8(0), "")
	f.Fuzz(func(t *testing.T, k uint8, text string) {
		b := AppendReply(nil, Reply{Kind(k % 6), text})
		p, err := ReadNetstring(bufio.NewReader(bytes.NewReader(b)), nil, MaxPayload)
		if err != nil {
			t.Fatalf("reply %q does not decode: %v", b, err)
		}
		word, _, ok := strings.Cut(string(p), " ")
		if !ok {
			t.Fatalf("reply %q has no space", p)
		}
		switch word {
		case "OK", "NOTFOUND", "TEMP", "TIMEOUT", "PERM":
		default:
			t.Fatalf("reply %q has keyword %q", p, word)
		}
	})
}
