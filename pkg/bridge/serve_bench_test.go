package bridge

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shitenno/shitenno/pkg/dict"
	"github.com/shitenno/shitenno/pkg/remote"
	"github.com/shitenno/shitenno/pkg/socketmap"
)

// Serving benchmarks (issue #21): cached lookups through the real server,
// bridge and remote client over unix sockets, 8 client connections, held
// against a null responder that answers the same bytes with no deadlines,
// no framing checks and no backend (cmd/shitenno-bench's "null", in
// process). ns/op is per lookup; the ratio null/cached is the target.
//
//	go test -run '^$' -bench 'Serve' -count 5 ./pkg/bridge

const serveConns = 8

// Replies of the benchmark's one key, as the servers write them.
const (
	smapReply = "36:OK postmaster@mbox.bench.example.org,"
	dictReply = "O{\"password\":\"{PLAIN}secret\",\"uid\":1000}\n"
)

var (
	smapRequest = string(socketmap.AppendNetstring(nil, []byte("virtual postmaster@bench.example.org")))
	dictHello   = "H3\t2\t0\t\tpassdb\n"
	dictRequest = "Lshared/passdb/alice@example.org\talice@example.org\n"
)

// cachedClient is a remote client whose cache already holds the answer.
func cachedClient(b testing.TB, body string) *remote.Client {
	tr := &cannedTransport{body: []byte(body),
		header: http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"max-age=600"}}}
	c, err := remote.New(remote.Options{URLs: []string{"http://backend.invalid/"}, Timeout: 5 * time.Second,
		Cache: remote.NewCache(10000, 0, 0), Transport: tr})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// server is what the benchmarks serve with: socketmap.Server, dict.Server
// or a null responder.
type server interface {
	Serve(net.Listener) error
	Close() error
}

// nullServer answers every request with reply once it has read what ends
// one (end), the least a server can do; the first skip requests (the
// dict hello) get no reply.
type nullServer struct {
	reply []byte
	end   byte
	skip  int
	l     net.Listener
}

func (s *nullServer) Serve(l net.Listener) error {
	s.l = l
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go s.serve(c)
	}
}

func (s *nullServer) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 4096)
	for i := 0; ; i++ {
		if _, err := br.ReadSlice(s.end); err != nil {
			return
		}
		if i < s.skip {
			continue
		}
		if _, err := c.Write(s.reply); err != nil {
			return
		}
	}
}

func (s *nullServer) Close() error { return s.l.Close() }

// benchServe runs serveConns clients, each on its own connection, sending
// req and reading a reply of len(want) bytes after sending hello.
func benchServe(b *testing.B, srv server, hello, req, want string) {
	l, err := net.Listen("unix", filepath.Join(b.TempDir(), "s"))
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	b.SetParallelism((serveConns + 1) / 2) // GOMAXPROCS is 2 here: 8 clients
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("unix", l.Addr().String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		if _, err := c.Write([]byte(hello)); err != nil {
			b.Error(err)
			return
		}
		got := make([]byte, len(want))
		for pb.Next() {
			if _, err := c.Write([]byte(req)); err != nil {
				b.Error(err)
				return
			}
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, []byte(want)) {
				b.Errorf("%q %v", got, err)
				return
			}
		}
	})
}

func BenchmarkServeNullSocketmap(b *testing.B) {
	benchServe(b, &nullServer{reply: []byte(smapReply), end: ','}, "", smapRequest, smapReply)
}

func BenchmarkServeCachedSocketmap(b *testing.B) {
	c := cachedClient(b, `{"Status":"OK","Data":"postmaster@mbox.bench.example.org"}`)
	benchServe(b, &socketmap.Server{Handler: &Postfix{Backend: c}}, "", smapRequest, smapReply)
}

func BenchmarkServeNullDict(b *testing.B) {
	benchServe(b, &nullServer{reply: []byte(dictReply), end: '\n', skip: 1}, dictHello, dictRequest, dictReply)
}

func BenchmarkServeCachedDict(b *testing.B) {
	c := cachedClient(b, `{"Status":"OK","Data":{"password":"{PLAIN}secret","uid":1000}}`)
	benchServe(b, &dict.Server{Handler: &Dovecot{Backend: c}}, dictHello, dictRequest, dictReply)
}

// BenchmarkDovecotRemoteCached is BenchmarkPostfixRemoteCached's dovecot
// counterpart: bridge and remote client on a cache hit, no sockets.
func BenchmarkDovecotRemoteCached(b *testing.B) {
	d := &Dovecot{Backend: cachedClient(b, `{"Status":"OK","Data":{"password":"{PLAIN}secret","uid":1000}}`)}
	req := dict.Request{Key: "shared/passdb/alice@example.org", User: "alice@example.org"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if rep := d.ServeDict(ctx, req); rep.Kind != dict.Found {
			b.Fatal(rep)
		}
	}
}

// BenchmarkDovecotRemoteCachedSpread is BenchmarkDovecotRemoteCached
// over 4096 cached keys, taken in a scattered order from two goroutines:
// the cache's memory is not all in the CPU's caches, and the cache is
// shared, as in a daemon serving many users.
func BenchmarkDovecotRemoteCachedSpread(b *testing.B) {
	d := &Dovecot{Backend: cachedClient(b, `{"Status":"OK","Data":{"password":"{PLAIN}secret","uid":1000}}`)}
	const keys = 4096
	reqs := make([]dict.Request, keys)
	ctx := context.Background()
	for i := range reqs {
		u := "u" + strconv.Itoa(i) + "@bench.example.org"
		reqs[i] = dict.Request{Key: "shared/passdb/" + u, User: u}
		d.ServeDict(ctx, reqs[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	var seed atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(2477))
		for pb.Next() {
			i = (i + 613) % keys // 613 is prime: every key, scattered
			if rep := d.ServeDict(ctx, reqs[i]); rep.Kind != dict.Found {
				b.Error(rep)
				return
			}
		}
	})
}
