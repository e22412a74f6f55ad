package remote

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
)

// cannedBackend serves keep-alive HTTP/1.1 on a loopback listener with
// one fixed reply and (after its buffers are made) no allocation per
// request, so that a benchmark's allocs/op are the client's alone, which
// net/http's server (BenchmarkLookupHTTP) would otherwise double.
func cannedBackend(tb testing.TB, body string) string {
	tb.Helper()
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	a := testutil.AcceptTCP(tb, func(c net.Conn) { serveCanned(c, resp) })
	return "http://" + a.Addr() + "/"
}

func serveCanned(c net.Conn, resp []byte) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 8192)
	clHeader := []byte("content-length:")
	for {
		n := 0
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break // the empty line ending the header
			}
			if len(line) > len(clHeader) && bytes.EqualFold(line[:len(clHeader)], clHeader) {
				for _, d := range bytes.TrimSpace(line[len(clHeader):]) {
					n = n*10 + int(d-'0')
				}
			}
		}
		if _, err := br.Discard(n); err != nil {
			return
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

// BenchmarkLookupClientOnly is an uncached lookup over keep-alive HTTP
// against cannedBackend: ns/op and allocs/op of the client side alone
// (encoding, the flight group, contexts and timers, net/http's client,
// reply decoding).
func BenchmarkLookupClientOnly(b *testing.B) {
	c, err := New(Options{URLs: []string{cannedBackend(b, `{"Status":"OK","Data":"alice@mbox.example.com"}`)}, Timeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseIdle()
	benchLookups(b, c)
}

// BenchmarkLookupClientOnlyParallel is the same from many goroutines at
// once, as the daemons' connections ask (contention in the flight group,
// the pool and the timers).
func BenchmarkLookupClientOnlyParallel(b *testing.B) {
	c, err := New(Options{URLs: []string{cannedBackend(b, `{"Status":"OK","Data":"alice@mbox.example.com"}`)}, Timeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseIdle()
	b.ReportAllocs()
	b.SetParallelism(32)
	var id atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		// Distinct keys per goroutine, as in the bench: no coalescing.
		key := []byte(`"u` + strconv.FormatInt(id.Add(1), 10) + `@bench.example"`)
		for pb.Next() {
			if _, err := c.LookupRaw(context.Background(), "virtual", key); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
