package dict

import (
	"bytes"
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
)

// BenchmarkServerRoundTrip is one lookup over a unix socket through
// Server with a handler that answers at once, as dovecot's auth worker
// sends them (one at a time): the serving loop's cost (deadlines, line
// parsing, the reply's way to the socket) on top of the kernel, the
// counterpart of socketmap's BenchmarkServerRoundTrip. The client side
// allocates nothing, so allocs/op are the server's.
//
//	go test -run '^$' -bench ServerRoundTrip -benchmem ./pkg/dict
func BenchmarkServerRoundTrip(b *testing.B) {
	l, err := net.Listen("unix", filepath.Join(b.TempDir(), "s"))
	if err != nil {
		b.Fatal(err)
	}
	reply := Reply{Kind: Found, Value: `{"password":"{PLAIN}secret","uid":1000}`}
	srv := &Server{Handler: HandlerFunc(func(context.Context, Request) Reply { return reply })}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	c, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("H3\t2\t0\t\tpassdb\n")); err != nil {
		b.Fatal(err)
	}
	req := []byte("Lshared/passdb/alice@example.org\talice@example.org\n")
	want := AppendReply(nil, reply)
	got := make([]byte, len(want))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, want) {
			b.Fatalf("%q %v", got, err)
		}
	}
}
