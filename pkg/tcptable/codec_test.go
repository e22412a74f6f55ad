package tcptable

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// requestVectors: what postfix's hex_quote puts on the wire for a key,
// and the key it stands for. Also the fuzz seeds.
var requestVectors = []struct {
	line string
	key  string
}{
	{"get alice@example.org", "alice@example.org"},
	{"get foo%20bar", "foo bar"},
	{"get 100%25", "100%"},
	{"get %C3%A9t%c3%a9", "été"},
	{"get a%09b%0Ac%0D", "a\tb\nc\r"},
	{"get ", ""},
	{"get x\r", "x"},
	{"get a+b", "a+b"},
}

func TestParseRequest(t *testing.T) {
	for _, v := range requestVectors {
		got, err := ParseRequest(nil, []byte(v.line))
		if err != nil || string(got) != v.key {
			t.Errorf("ParseRequest(%q) = %q, %v; want %q", v.line, got, err, v.key)
		}
	}
	for _, bad := range []string{"put a b", "GET a", "get", "geta", "get %", "get %4", "get %4g", "get %zz", ""} {
		if _, err := ParseRequest(nil, []byte(bad)); err == nil {
			t.Errorf("ParseRequest(%q) accepted", bad)
		}
	}
}

// TestEncodeLikeHexQuote: the bytes hex_quote leaves alone (printable
// ASCII except space and %) stay, everything else is %XX in upper case.
func TestEncodeLikeHexQuote(t *testing.T) {
	for in, want := range map[string]string{
		"alice@mbox":  "alice@mbox",
		"a b":         "a%20b",
		"50%":         "50%25",
		"été":         "%C3%A9t%C3%A9",
		"l1\nl2":      "l1%0Al2",
		"\x7f\x00~!":  "%7F%00~!",
		"tab\there":   "tab%09here",
		"a+b=c/d?e&f": "a+b=c/d?e&f",
	} {
		if got := string(AppendEncoded(nil, in)); got != want {
			t.Errorf("encode %q = %q, want %q", in, got, want)
		}
		if EncodedLen(in) != len(want) {
			t.Errorf("EncodedLen(%q) = %d, want %d", in, EncodedLen(in), len(want))
		}
	}
}

func TestAppendReply(t *testing.T) {
	fits := strings.Repeat("x", MaxData)
	for _, tc := range []struct {
		name string
		r    Reply
		want string
	}{
		{"found", Reply{Kind: OK, Text: "alice@mbox"}, "200 alice@mbox\n"},
		{"found encoded", Reply{Kind: OK, Text: "a b%\n"}, "200 a%20b%25%0A\n"},
		{"largest", Reply{Kind: OK, Text: fits}, "200 " + fits + "\n"},
		{"one byte too long", Reply{Kind: OK, Text: fits + "x"},
			"400 backend%20value%20longer%20than%20postfix's%204096-byte%20tcp_table%20reply%20limit\n"},
		{"too long once encoded", Reply{Kind: OK, Text: strings.Repeat(" ", MaxData/3+1)},
			"400 backend%20value%20longer%20than%20postfix's%204096-byte%20tcp_table%20reply%20limit\n"},
		{"empty value", Reply{Kind: OK}, "400 backend%20returned%20an%20empty%20value\n"},
		{"not found", Reply{Kind: NotFound}, "500 not%20found\n"},
		{"temp", Reply{Kind: Temp, Text: "backend HTTP status 503"}, "400 backend%20HTTP%20status%20503\n"},
		{"temp empty", Reply{Kind: Temp}, "400 temporary%20failure\n"},
		{"unknown kind", Reply{Kind: 9}, "400 internal%20error\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(AppendReply(nil, tc.r))
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if len(got) > MaxReplyLine {
				t.Errorf("reply of %d bytes exceeds postfix's limit", len(got))
			}
		})
	}
}

func TestReadLine(t *testing.T) {
	in := "get a\n" + "get " + strings.Repeat("b", 40) + "\n" + "get " + strings.Repeat("c", 60) + "\nget e\nget d"
	br := bufio.NewReaderSize(strings.NewReader(in), 16)
	for _, want := range []string{"get a", "get " + strings.Repeat("b", 40)} {
		l, err := ReadLine(br, nil, 50)
		if err != nil || string(l) != want {
			t.Fatalf("got %q %v, want %q", l, err, want)
		}
	}
	if _, err := ReadLine(br, nil, 50); err != ErrLineTooLong {
		t.Fatalf("long line: %v", err)
	}
	if l, err := ReadLine(br, nil, 50); string(l) != "get e" {
		t.Fatalf("line after the long one: %q %v", l, err)
	}
	if _, err := ReadLine(br, nil, 50); err != ErrTruncated {
		t.Fatalf("unterminated line: %v", err)
	}
}

// FuzzParseRequest: never panics; the decoded key never grows; what
// postfix's encoding produces decodes back to the key.
func FuzzParseRequest(f *testing.F) {
	for _, v := range requestVectors {
		f.Add([]byte(v.line))
	}
	f.Add([]byte("get %"))
	f.Add([]byte("get %%%"))
	f.Fuzz(func(t *testing.T, line []byte) {
		key, err := ParseRequest(nil, line)
		if err == nil && len(key) > len(line) {
			t.Fatalf("key of %d bytes from a %d-byte line", len(key), len(line))
		}
		// Round trip: any key, encoded as postfix does, decodes to itself.
		e := AppendEncoded(nil, string(line))
		for _, c := range e {
			if c <= ' ' || c >= 0x7f {
				t.Fatalf("encoding of %q left byte %#x: %q", line, c, e)
			}
		}
		back, err := ParseRequest(nil, append([]byte("get "), e...))
		if err != nil || !bytes.Equal(back, line) {
			t.Fatalf("round trip of %q: %q, %v", line, back, err)
		}
	})
}

// FuzzReadLine: lines come back exactly, never over the bound, with one
// scratch buffer for all of them (as the server reads a connection).
func FuzzReadLine(f *testing.F) {
	f.Add([]byte("get a\nget b\n"), 8)
	f.Add([]byte(strings.Repeat("x", 40)+"\n"), 33)
	f.Add([]byte("no newline"), 4)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		if max <= 0 || max > 1<<16 {
			max = 1 + (max&0x7fff)%(1<<16)
		}
		br := bufio.NewReaderSize(bytes.NewReader(in), 16)
		lines := bytes.Split(in, []byte("\n"))
		var scratch []byte
		for i := 0; ; i++ {
			l, err := ReadLine(br, &scratch, max)
			if err == ErrLineTooLong {
				if len(lines[i]) <= max {
					t.Fatalf("line %d of %d bytes refused (max %d)", i, len(lines[i]), max)
				}
				continue
			}
			if err != nil {
				break
			}
			if len(l) > max || !bytes.Equal(l, lines[i]) {
				t.Fatalf("line %d = %q (max %d), want %q", i, l, max, lines[i])
			}
		}
	})
}

func TestReadLineOverrun(t *testing.T) {
	br := bufio.NewReader(strings.NewReader(strings.Repeat("x", MaxSkip+10) + "\n"))
	if _, err := ReadLine(br, nil, 100); err != ErrOverrun {
		t.Fatalf("got %v, want ErrOverrun", err)
	}
}
