package dict

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// escapeVectors are byte-exact pairs checked against dovecot 2.3.19's
// str_append_tabescaped_n / str_tabunescape (src/lib/strescape.c).
var escapeVectors = []struct{ plain, escaped string }{
	{"", ""},
	{"alice@example.org", "alice@example.org"},
	{"a\tb", "a\x01tb"},
	{"\x01", "\x011"},
	{"\x00", "\x010"},
	{"\r\n", "\x01r\x01n"},
	{"\t\t", "\x01t\x01t"},
	{"x\x01t", "x\x011t"}, // an escaped \x01 must not pair with the next byte
	{"é\tü", "é\x01tü"},
	{`{"password":"{PLAIN}s	e"}`, "{\"password\":\"{PLAIN}s\x01te\"}"},
}

func TestEscapeVectors(t *testing.T) {
	for _, v := range escapeVectors {
		if got := Escape(v.plain); got != v.escaped {
			t.Errorf("Escape(%q) = %q, want %q", v.plain, got, v.escaped)
		}
		if got := Unescape([]byte(v.escaped)); got != v.plain {
			t.Errorf("Unescape(%q) = %q, want %q", v.escaped, got, v.plain)
		}
	}
}

func TestUnescapeLenient(t *testing.T) {
	// Forms the escaper never produces, decoded as dovecot does.
	for in, want := range map[string]string{
		"abc\x01":    "abc", // trailing \x01 dropped
		"\x01x":      "x",   // unknown escape gives the byte itself
		"\x01\x01":   "\x01",
		"a\x01\tb":   "a\tb",
		"\x01":       "",
		"\x010\x011": "\x00\x01",
	} {
		if got := Unescape([]byte(in)); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Command
		err  error
	}{
		{"hello 2.3.19", "H3\t2\t0\t\tsomewhere", Command{'H', []string{"3", "2", "0", "", "somewhere"}}, nil},
		{"hello 2.4", "H4\t0\t0\t\tshitenno", Command{'H', []string{"4", "0", "0", "", "shitenno"}}, nil},
		{"lookup with user", "Lshared/passdb/alice@example.org\talice@example.org",
			Command{'L', []string{"shared/passdb/alice@example.org", "alice@example.org"}}, nil},
		{"lookup 2.2 style", "Lshared/passdb/bob", Command{'L', []string{"shared/passdb/bob"}}, nil},
		{"lookup empty user", "Lshared/userdb/x\t", Command{'L', []string{"shared/userdb/x", ""}}, nil},
		{"escaped tab stays in key", "Lshared/passdb/a\x01tb\tu\x01ts",
			Command{'L', []string{"shared/passdb/a\tb", "u\ts"}}, nil},
		{"empty lookup key", "L", Command{'L', []string{""}}, nil},
		{"iterate", "I0\t0\tshared/userdb/\t", Command{'I', []string{"0", "0", "shared/userdb/", ""}}, nil},
		{"begin 2.4", "B1\tuser\t0", Command{'B', []string{"1", "user", "0"}}, nil},
		// Before 2.3.17 a transaction began with its id alone, and 2.2
		// iterated without max_rows (client_dict_transaction_send_begin,
		// client_dict_iterate_init); majors 2 are accepted (PROTOCOLS.md §3.2).
		{"begin 2.3.16", "B1", Command{'B', []string{"1"}}, nil},
		{"iterate 2.2", "I0\tshared/userdb/", Command{'I', []string{"0", "shared/userdb/"}}, nil},
		{"short iterate", "I0", Command{}, ErrMalformed},
		{"short unset", "U1", Command{}, ErrMalformed},
		{"set", "S1\tshared/k\tv\x01n", Command{'S', []string{"1", "shared/k", "v\n"}}, nil},
		{"commit", "C1", Command{'C', []string{"1"}}, nil},
		{"commit async", "D12", Command{'D', []string{"12"}}, nil},
		{"empty", "", Command{}, ErrEmptyLine},
		{"unknown", "Zwhat", Command{}, ErrUnknownCommand},
		{"lowercase", "lshared/x", Command{}, ErrUnknownCommand},
		{"short hello", "H3\t2\t0", Command{}, ErrMalformed},
		{"short set", "S1\tk", Command{}, ErrMalformed},
		{"invalid utf8", "Lshared/passdb/\xff\xfe", Command{}, ErrInvalidUTF8},
		{"invalid utf8 letter", "\xc3", Command{}, ErrInvalidUTF8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCommand([]byte(tc.line))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err == nil && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+q %q, want %+q %q", got.Op, got.Args, tc.want.Op, tc.want.Args)
			}
		})
	}
}

func TestParseHello(t *testing.T) {
	for _, tc := range []struct {
		line  string
		major int
		err   error
	}{
		{"H2\t0\t0\t\tsomewhere", 2, nil}, // 2.2.21
		{"H2\t2\t0\tvmail\tsomewhere", 2, nil},
		{"H3\t2\t0\t\tsomewhere", 3, nil},
		{"H4\t0\t0\t\tshitenno", 4, nil},
		{"H1\t0\t0\t\tx", 1, ErrUnsupported},
		{"H5\t0\t0\t\tx", 5, ErrUnsupported},
		{"H+3\t2\t0\t\tx", 0, ErrMalformed},
		{"H3\t-2\t0\t\tx", 0, ErrMalformed},
		{"H\t2\t0\t\tx", 0, ErrMalformed},
		{"H99999999999999999999\t2\t0\t\tx", 0, ErrMalformed},
	} {
		cmd, err := ParseCommand([]byte(tc.line))
		if err != nil {
			t.Fatalf("%q: %v", tc.line, err)
		}
		h, err := ParseHello(cmd)
		if !errors.Is(err, tc.err) || h.Major != tc.major {
			t.Errorf("ParseHello(%q) = major %d, %v; want %d, %v", tc.line, h.Major, err, tc.major, tc.err)
		}
	}
	h, _ := ParseHello(Command{'H', []string{"3", "2", "0", "", "some\twhere"}})
	if h.Name != "some\twhere" || h.Minor != 2 || h.ValueType != "0" {
		t.Errorf("fields: %+v", h)
	}
}

func TestAppendReplyVectors(t *testing.T) {
	for _, tc := range []struct {
		r    Reply
		wire string
	}{
		{Reply{Found, `{"gid":1000,"home":"/var/vmail/alice","password":"{PLAIN}secret","uid":1000}`},
			"O{\"gid\":1000,\"home\":\"/var/vmail/alice\",\"password\":\"{PLAIN}secret\",\"uid\":1000}\n"},
		{Reply{Found, "a\tb\nc\rd\x01e\x00"}, "Oa\x01tb\x01nc\x01rd\x011e\x010\n"},
		{Reply{Found, ""}, "O\n"},
		{Reply{NotFound, "ignored"}, "N\n"},
		{Reply{Failed, "backend timeout"}, "Fbackend timeout\n"},
		{Reply{Failed, "two\tparts"}, "Ftwo\x01tparts\n"},
		{Reply{Kind: 'Z', Value: "x"}, "Fdict: invalid reply kind\n"},
		{Reply{}, "Fdict: invalid reply kind\n"},
	} {
		if got := string(AppendReply(nil, tc.r)); got != tc.wire {
			t.Errorf("AppendReply(%+v) = %q, want %q", tc.r, got, tc.wire)
		}
	}
}

func TestAppendOtherReplies(t *testing.T) {
	if got := string(AppendIterEnd([]byte("x"))); got != "x\n" {
		t.Errorf("AppendIterEnd = %q", got)
	}
	if got := string(AppendCommitFailed(nil, false, "7", "read\tonly")); got != "F7\tread\x01tonly\n" {
		t.Errorf("commit = %q", got)
	}
	if got := string(AppendCommitFailed(nil, true, "7", "no")); got != "AF7\tno\n" {
		t.Errorf("async commit = %q", got)
	}
}

func readAll(t *testing.T, in string, max int) ([]string, error) {
	t.Helper()
	lr := NewLineReader(strings.NewReader(in), max)
	var lines []string
	for {
		l, err := lr.ReadLine()
		if err != nil {
			if err == io.EOF {
				return lines, nil
			}
			return lines, err
		}
		lines = append(lines, string(l))
	}
}

func TestLineReader(t *testing.T) {
	long := strings.Repeat("x", 10000)
	tests := []struct {
		name string
		in   string
		max  int
		want []string
		err  error
	}{
		{"two lines", "H3\t2\t0\t\ts\nLk\tu\n", 0, []string{"H3\t2\t0\t\ts", "Lk\tu"}, nil},
		{"crlf", "a\r\nb\n", 0, []string{"a", "b"}, nil},
		{"only one cr stripped", "a\r\r\n", 0, []string{"a\r"}, nil},
		{"empty line", "\n", 0, []string{""}, nil},
		{"empty input", "", 0, nil, nil},
		{"truncated", "a\nbc", 0, []string{"a"}, ErrTruncated},
		{"longer than read buffer", long + "\nz\n", 0, []string{long, "z"}, nil},
		{"exactly max", "abcd\n", 4, []string{"abcd"}, nil},
		{"exactly max with cr", "abcd\r\n", 4, []string{"abcd"}, nil},
		{"max plus one", "abcde\n", 4, nil, ErrLineTooLong},
		{"long over max", long + "\n", 5000, nil, ErrLineTooLong},
		{"long over max, no lf", long + long, 5000, nil, ErrLineTooLong},
		{"default max", strings.Repeat("y", MaxLineSize+1) + "\n", 0, nil, ErrLineTooLong},
		{"default max fits", strings.Repeat("y", MaxLineSize) + "\n", 0, []string{strings.Repeat("y", MaxLineSize)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(t, tc.in, tc.max)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("lines = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestLineReaderBoundsReads checks that an endless line is refused after
// about max bytes, not read to the end.
func TestLineReaderBoundsReads(t *testing.T) {
	r := &countingReader{}
	lr := NewLineReader(r, 1000)
	if _, err := lr.ReadLine(); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("err = %v", err)
	}
	if r.n > 1000+2*4096 {
		t.Fatalf("read %d bytes for a 1000-byte bound", r.n)
	}
}

type countingReader struct{ n int }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	c.n += len(p)
	return len(p), nil
}

func TestLineBuffered(t *testing.T) {
	lr := NewLineReader(strings.NewReader("a\nb"), 0)
	if lr.LineBuffered() {
		t.Fatal("nothing read yet, nothing buffered")
	}
	if l, _ := lr.ReadLine(); string(l) != "a" {
		t.Fatalf("line %q", l)
	}
	if lr.LineBuffered() {
		t.Fatal(`"b" without LF is not a complete line`)
	}
	lr = NewLineReader(strings.NewReader("a\nb\n"), 0)
	lr.ReadLine()
	if !lr.LineBuffered() {
		t.Fatal(`"b\n" is buffered`)
	}
}

func BenchmarkParseLookup(b *testing.B) {
	line := []byte("Lshared/passdb/alice@example.org\talice@example.org")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCommand(line); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendReply(b *testing.B) {
	r := Reply{Found, `{"gid":1000,"home":"/var/vmail/alice","password":"{PLAIN}secret","uid":1000}`}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendReply(buf[:0], r)
	}
	if !bytes.HasPrefix(buf, []byte("O{")) {
		b.Fatal(string(buf))
	}
}
