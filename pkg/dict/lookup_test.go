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
