package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/shitenno/shitenno/pkg/dict"
	"github.com/shitenno/shitenno/pkg/remote"
	"github.com/shitenno/shitenno/pkg/socketmap"
)

// Bridge-path microbenchmarks (issue 6):
//
//	go test -run '^$' -bench Postfix -benchmem ./pkg/bridge
//
// Fake: the bridge alone, with a backend that answers at once.
// RemoteCached / RemoteUncached: bridge + remote.Client (request
// encoding, timeout context, coalescing, cache, reply parsing) over an
// in-memory RoundTripper, i.e. everything shitenno does per lookup except
// the sockets.

// constBackend answers every lookup with the same result.
type constBackend struct{ res remote.Result }

func (c constBackend) Lookup(ctx context.Context, verb string, object any) (remote.Result, error) {
	return c.res, nil
}

func (c constBackend) LookupRaw(context.Context, string, json.RawMessage) (remote.Result, error) {
	return c.res, nil
}

func (b constBackend) LookupObject(ctx context.Context, verb string, o remote.Object) (remote.Result, error) {
	return b.LookupRaw(ctx, verb, o.JSON())
}

var benchReq = socketmap.Request{Name: []byte("virtual"), Key: []byte("postmaster@bench.example.org")}

func benchPostfix(b *testing.B, p *Postfix, want socketmap.Kind) {
	b.Helper()
	ctx := context.Background()
	if r := p.ServeSocketmap(ctx, benchReq); r.Kind != want {
		b.Fatalf("warm-up: %v %q", r.Kind, r.Text)
	}
	b.ReportAllocs()
	for b.Loop() {
		if r := p.ServeSocketmap(ctx, benchReq); r.Kind != want {
			b.Fatalf("%v %q", r.Kind, r.Text)
		}
	}
}

func BenchmarkPostfixFake(b *testing.B) {
	b.Run("found", func(b *testing.B) {
		benchPostfix(b, &Postfix{Backend: constBackend{remote.Result{Status: remote.Found,
			Data: json.RawMessage(`"postmaster@mbox.bench.example.org"`)}}}, socketmap.OK)
	})
	b.Run("notfound", func(b *testing.B) {
		benchPostfix(b, &Postfix{Backend: constBackend{remote.Result{Status: remote.NotFound}}}, socketmap.NotFound)
	})
}

// cannedTransport answers every request with the same reply, after
// reading the request body as a real transport would.
type cannedTransport struct {
	body   []byte
	header http.Header
}

func (t *cannedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	return &http.Response{
		StatusCode:    http.StatusOK,
		Header:        t.header,
		Body:          io.NopCloser(bytes.NewReader(t.body)),
		ContentLength: int64(len(t.body)),
		Request:       req,
	}, nil
}

func benchRemote(b *testing.B, cache *remote.Cache, header http.Header) {
	tr := &cannedTransport{
		body:   []byte(`{"Verb":"virtual","Object":"postmaster@bench.example.org","Status":"OK","Data":"postmaster@mbox.bench.example.org"}`),
		header: header,
	}
	c, err := remote.New(remote.Options{URLs: []string{"http://backend.invalid/"}, Timeout: 5 * time.Second, Cache: cache, Transport: tr})
	if err != nil {
		b.Fatal(err)
	}
	benchPostfix(b, &Postfix{Backend: c}, socketmap.OK)
}

func BenchmarkPostfixRemoteUncached(b *testing.B) {
	benchRemote(b, nil, http.Header{"Content-Type": {"application/json"}})
}

func BenchmarkPostfixRemoteCached(b *testing.B) {
	benchRemote(b, remote.NewCache(10000, 0, 0), http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"max-age=600"}})
}

// sameResult answers every lookup with one Result: a cached reply shared
// by bridges of two kinds, as one client's cache could serve it.
type sameResult struct{ res remote.Result }

func (s sameResult) Lookup(context.Context, string, any) (remote.Result, error) { return s.res, nil }

func (s sameResult) LookupRaw(context.Context, string, json.RawMessage) (remote.Result, error) {
	return s.res, nil
}

func (b sameResult) LookupObject(ctx context.Context, verb string, o remote.Object) (remote.Result, error) {
	return b.LookupRaw(ctx, verb, o.JSON())
}

// virtualReply is the backend's answer the cache tests below hold.
const virtualReply = `{"Verb":"virtual","Object":"a@example.org","Status":"OK","Data":"b@example.org"}`

// cachedReply is virtualReply as a fresh cache serves it: nothing
// derived from it yet.
func cachedReply(t *testing.T) remote.Result {
	t.Helper()
	c := cachedClient(t, virtualReply)
	var res remote.Result
	for range 2 { // the miss, then the hit
		var err error
		if res, err = c.LookupRaw(context.Background(), "virtual", json.RawMessage(`"a@example.org"`)); err != nil {
			t.Fatal(err)
		}
	}
	return res
}

// TestPostfixCachedHit: a cache hit through the postfix bridge allocates
// at most twice (the verb and the object; the reply is derived once per
// cached reply), and a reply another bridge derived from first still
// gets each bridge its own answer.
func TestPostfixCachedHit(t *testing.T) {
	p := &Postfix{Backend: cachedClient(t, virtualReply)}
	req := socketmap.Request{Name: []byte("virtual"), Key: []byte("a@example.org")}
	want := socketmap.Reply{Kind: socketmap.OK, Text: "b@example.org"}
	if got := p.ServeSocketmap(context.Background(), req); got != want {
		t.Fatalf("first lookup: %+v", got)
	}
	if n := testing.AllocsPerRun(100, func() { p.ServeSocketmap(context.Background(), req) }); n > 2 {
		t.Errorf("a cache hit allocates %v times, want at most 2", n)
	}
	// Data is no object to the dovecot bridge: a failure, whichever
	// bridge derived from the reply first.
	dreq := dict.Request{Key: "shared/virtual/a@example.org"}
	res := cachedReply(t)
	if rep := (&Dovecot{Backend: sameResult{res}}).ServeDict(context.Background(), dreq); rep.Kind != dict.Failed {
		t.Fatalf("dovecot first: %+v", rep)
	}
	if got := (&Postfix{Backend: sameResult{res}}).ServeSocketmap(context.Background(), req); got != want {
		t.Errorf("postfix after dovecot: %+v, want %+v", got, want)
	}
	res = cachedReply(t)
	if got := (&Postfix{Backend: sameResult{res}}).ServeSocketmap(context.Background(), req); got != want {
		t.Errorf("postfix first: %+v, want %+v", got, want)
	}
	if rep := (&Dovecot{Backend: sameResult{res}}).ServeDict(context.Background(), dreq); rep.Kind != dict.Failed {
		t.Errorf("dovecot after postfix: %+v", rep)
	}
}

// TestDovecotCachedHit: a cache hit through the dovecot bridge allocates
// nothing: the object's strings are cut from the dict key, and no JSON is
// built for a hit (remote.Object).
func TestDovecotCachedHit(t *testing.T) {
	d := &Dovecot{Backend: cachedClient(t, `{"Status":"OK","Data":{"uid":1000}}`)}
	req := dict.Request{Key: "shared/passdb/alice@example.org"}
	want := dict.Reply{Kind: dict.Found, Value: `{"uid":1000}`}
	if got := d.ServeDict(context.Background(), req); got != want {
		t.Fatalf("first lookup: %+v", got)
	}
	if n := testing.AllocsPerRun(100, func() { d.ServeDict(context.Background(), req) }); n > 0 {
		t.Errorf("a cache hit allocates %v times, want none", n)
	}
}
