package socketmap

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"testing"
)

// Codec and server microbenchmarks (issue 6). Run with
//
//	go test -run '^$' -bench . -benchmem ./pkg/socketmap
//
// The codec's aim is 0 allocs/op; the server round trip measures what one
// lookup costs the serving loop on top of the kernel's socket round trip.

// loopReader serves the same bytes forever, so a bufio.Reader over it
// never hits EOF and the benchmark measures decoding only.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.data[l.off:])
		n += c
		l.off = (l.off + c) % len(l.data)
	}
	return n, nil
}

const benchPayload = "virtual postmaster@bench.example.org"

var benchRequest = string(AppendNetstring(nil, []byte(benchPayload)))

func BenchmarkReadNetstring(b *testing.B) {
	br := bufio.NewReaderSize(&loopReader{data: []byte(benchRequest)}, 4096)
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchRequest)))
	for b.Loop() {
		p, err := ReadNetstring(br, buf, MaxPayload)
		if err != nil || len(p) != len(benchPayload) {
			b.Fatalf("%q %v", p, err)
		}
		buf = p[:0]
	}
}

func BenchmarkParseRequest(b *testing.B) {
	p := []byte(benchPayload)
	b.ReportAllocs()
	for b.Loop() {
		r, err := ParseRequest(p)
		if err != nil || len(r.Name) != 7 {
			b.Fatal(r, err)
		}
	}
}

func BenchmarkAppendReply(b *testing.B) {
	for _, tc := range []struct {
		name string
		r    Reply
	}{
		{"OK", Reply{Kind: OK, Text: "postmaster@mbox.bench.example.org"}},
		{"NotFound", Reply{Kind: NotFound}},
		{"Temp", Reply{Kind: Temp, Text: "backend HTTP status 503"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			out := make([]byte, 0, 128)
			b.ReportAllocs()
			for b.Loop() {
				out = AppendReply(out[:0], tc.r)
			}
		})
	}
}

// BenchmarkServerRoundTrip is one lookup over a unix socket through
// Server with a handler that answers at once: the serving loop's cost
// (deadlines, framing, one write) on top of the kernel. The client side
// allocates nothing, so allocs/op are the server's.
func BenchmarkServerRoundTrip(b *testing.B) {
	l, err := net.Listen("unix", filepath.Join(b.TempDir(), "s"))
	if err != nil {
		b.Fatal(err)
	}
	reply := Reply{Kind: OK, Text: "postmaster@mbox.bench.example.org"}
	srv := &Server{Handler: HandlerFunc(func(context.Context, Request) Reply { return reply })}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	c, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	br := bufio.NewReaderSize(c, 4096)
	req := []byte(benchRequest)
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		p, err := ReadNetstring(br, buf, MaxPayload)
		if err != nil || len(p) != 3+len(reply.Text) {
			b.Fatalf("%q %v", p, err)
		}
		buf = p[:0]
	}
	b.StopTimer()
	c.Close()
	if err := srv.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != ErrServerClosed {
		b.Fatal(err)
	}
}
