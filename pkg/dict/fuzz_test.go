package dict

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzLineReader feeds arbitrary streams to the line reader: it never
// panics, never returns a line over the bound or containing LF, and the
// lines it returns are exactly the stream's lines.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("H3\t2\t0\t\tsomewhere\nLshared/passdb/a\talice\n"), 16)
	f.Add([]byte("a\r\n\r\n\n"), 1)
	f.Add([]byte("no newline"), 4)
	f.Add(bytes.Repeat([]byte("x"), 40), 33)
	f.Add([]byte("0123456789abcdef0123456789abcdef\r\nxy\n"), 32)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		if max <= 0 || max > 1<<16 {
			max = 1 + (max&0x7fff)%(1<<16)
		}
		// A 16-byte read buffer (bufio's minimum): lines spanning several
		// buffer fills are reached with short inputs.
		lr := newLineReaderSize(bytes.NewReader(in), max, 16)
		var got [][]byte
		for {
			l, err := lr.ReadLine()
			if err != nil {
				if err == io.EOF && !bytes.HasSuffix(in, []byte("\n")) && len(in) > 0 {
					t.Fatalf("clean EOF after an unterminated line")
				}
				if err != io.EOF && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrLineTooLong) {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			if len(l) > max || bytes.IndexByte(l, '\n') >= 0 {
				t.Fatalf("line of %d bytes (max %d) or with LF: %q", len(l), max, l)
			}
			got = append(got, bytes.Clone(l))
		}
		// Every returned line is the corresponding stream line, CR-trimmed.
		want := bytes.Split(in, []byte("\n"))
		for i, l := range got {
			w := bytes.TrimSuffix(want[i], []byte("\r"))
			if !bytes.Equal(l, w) {
				t.Fatalf("line %d = %q, want %q", i, l, w)
			}
		}
	})
}

// FuzzUnescape checks that Unescape never panics, never produces more
// bytes than it was given, and inverts Escape.
func FuzzUnescape(f *testing.F) {
	for _, v := range escapeVectors {
		f.Add([]byte(v.escaped))
		f.Add([]byte(v.plain))
	}
	f.Add([]byte("\x01"))
	f.Add([]byte("a\x01\x01\x01"))
	f.Add([]byte("0123456\r89abcdef\x0d\x0e\xff\x80\x00tail"))
	f.Fuzz(func(t *testing.T, in []byte) {
		u := Unescape(in)
		if len(u) > len(in) {
			t.Fatalf("Unescape grew %q to %q", in, u)
		}
		s := string(in)
		e := Escape(s)
		if strings.ContainsAny(e, "\x00\t\r\n") {
			t.Fatalf("Escape(%q) = %q keeps a raw control byte", s, e)
		}
		if back := Unescape([]byte(e)); back != s {
			t.Fatalf("Unescape(Escape(%q)) = %q", s, back)
		}
		if want := escapeByteByByte(s); e != want {
			t.Fatalf("Escape(%q) = %q, byte by byte %q", s, e, want)
		}
	})
}

// escapeByteByByte is Escape without AppendEscaped's word-at-a-time
// skipping: what that must agree with.
func escapeByteByByte(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if j := strings.IndexByte("\x00\x01\t\r\n", s[i]); j >= 0 {
			b.WriteByte(0x01)
			b.WriteByte("01trn"[j])
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// FuzzParseCommand checks that any line either fails cleanly or yields a
// known command whose arguments are valid UTF-8 and re-encode to a line
// that parses to the same command.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"H3\t2\t0\t\tsomewhere", "H4\t0\t0\t\tshitenno", "H2\t2\t0\tvmail\tx",
		"Lshared/passdb/alice@example.org\talice@example.org", "Lshared/passdb/a\x01tb\tu",
		"I0\t0\tshared/userdb/\t", "B1\tu\t0", "S1\tk\tv", "U1\tk", "A1\tk\t-1", "T1\t0\t0",
		"C1", "D1", "R1", "V1\t1", "Zx", "", "\xff", "L\x01", "H\t\t\t\t",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		cmd, err := ParseCommand(line)
		if err != nil {
			return
		}
		if !strings.ContainsRune("HLIBCDRSUATV", rune(cmd.Op)) {
			t.Fatalf("accepted op %q", cmd.Op)
		}
		var re []byte
		re = append(re, cmd.Op)
		for i, a := range cmd.Args {
			if !utf8.ValidString(a) {
				t.Fatalf("arg %d not UTF-8: %q", i, a)
			}
			if i > 0 {
				re = append(re, '\t')
			}
			re = AppendEscaped(re, a)
		}
		again, err := ParseCommand(re)
		if err != nil || again.Op != cmd.Op || len(again.Args) != len(cmd.Args) {
			t.Fatalf("re-encoded %q: %v %+v", re, err, again)
		}
		for i := range cmd.Args {
			if again.Args[i] != cmd.Args[i] {
				t.Fatalf("arg %d: %q != %q", i, again.Args[i], cmd.Args[i])
			}
		}
		if cmd.Op == CmdHello {
			_, _ = ParseHello(cmd) // must not panic
		}
	})
}
