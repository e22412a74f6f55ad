package dict

import "testing"

// FuzzParseLookup: the server's lookup fast path accepts exactly the L
// lines ParseCommand accepts, with the same key and user.
func FuzzParseLookup(f *testing.F) {
	for _, s := range []string{
		"Lshared/passdb/alice@example.org\talice@example.org", "Lshared/passdb/a\x01tb\tu",
		"Lk", "L", "L\t", "Lk\tu\textra", "L\x01", "Lk\xff\tu", "Hx", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		line = line[:len(line):len(line)] // nothing past the line may be read
		req, ok := parseLookup(line)
		cmd, err := ParseCommand(line)
		want := err == nil && cmd.Op == CmdLookup
		if ok != want {
			t.Fatalf("parseLookup %q: ok %v, ParseCommand %+v %v", line, ok, cmd, err)
		}
		if ok && (req.Key != cmd.Args[0] || req.User != cmd.Arg(1)) {
			t.Fatalf("parseLookup %q = %+v, ParseCommand %+v", line, req, cmd)
		}
	})
}

// TestParseLookupNoUser: a lookup line without a user, its slice ending
// at its last byte, parses without reading past it.
func TestParseLookupNoUser(t *testing.T) {
	for _, s := range []string{"Lk", "Lshared/passdb/a@example.org", "La\x01tb"} {
		line := []byte(s)
		line = line[:len(line):len(line)]
		req, ok := parseLookup(line)
		if cmd, err := ParseCommand(line); !ok || err != nil || req.Key != cmd.Args[0] || req.User != "" {
			t.Errorf("parseLookup(%q) = %+v, %v; ParseCommand %+v, %v", s, req, ok, cmd, err)
		}
	}
}
