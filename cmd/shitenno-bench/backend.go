package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// fastBackend is the benchmark's built-in backend: it speaks the backend
// contract (PROTOCOLS.md §1) for the benchmark's data set with as little
// work as possible, so that "direct" and "uncached" measure the HTTP hop
// and shitenno rather than a slow backend. It checks every request
// (verb in the path and in the body, object shape, Context "shared") and
// counts requests, which lets the runner compute the cache hit ratio.
type fastBackend struct {
	maxAge []string // Cache-Control value, nil for none

	requests atomic.Int64 // lookups answered (any status)
	bad      atomic.Int64 // malformed requests (400/405)
	bufs     sync.Pool
}

var hdrJSON = []string{"application/json"}

// backendBuf is one request's scratch space, pooled.
type backendBuf struct {
	in  bytes.Buffer
	out []byte
}

func newFastBackend(maxAge int) *fastBackend {
	b := &fastBackend{}
	if maxAge > 0 {
		b.maxAge = []string{"max-age=" + strconv.Itoa(maxAge)}
	}
	b.bufs.New = func() any { return new(backendBuf) }
	return b
}

// serveBackend runs the built-in backend until the process is killed.
func serveBackend(addr string, maxAge int) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: newFastBackend(maxAge), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	return hs.Serve(l)
}

func (b *fastBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/stats" {
		// Read by the runner between scenarios; not a lookup.
		fmt.Fprintf(w, "%d %d\n", b.requests.Load(), b.bad.Load())
		return
	}
	b.requests.Add(1)
	if r.Method != http.MethodPost {
		b.bad.Add(1)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	bb := b.bufs.Get().(*backendBuf)
	defer b.bufs.Put(bb)
	buf := &bb.in
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, 64<<10)); err != nil {
		b.bad.Add(1)
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	verb := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	body := buf.Bytes()
	idx, obj, ok := parseBackendRequest(verb, body)
	if !ok {
		b.bad.Add(1)
		http.Error(w, "request does not follow the contract", http.StatusBadRequest)
		return
	}
	out := bb.out[:0]
	defer func() { bb.out = out[:0] }()
	out = append(out, `{"Verb":`...)
	out = strconv.AppendQuote(out, verb)
	out = append(out, `,"Object":`...)
	out = append(out, obj...)
	switch {
	case idx < 0 || !known(idx):
		out = append(out, `,"Status":"KO","Data":null}`...)
	case verb == postfixVerb:
		out = append(out, `,"Status":"OK","Data":"`...)
		out = append(out, virtualValue(idx)...)
		out = append(out, `"}`...)
	default:
		out = append(out, `,"Status":"OK","Data":`...)
		out = append(out, passdbData(idx)...)
		out = append(out, '}')
	}
	h := w.Header()
	h["Content-Type"] = hdrJSON
	h["Content-Length"] = []string{strconv.Itoa(len(out))}
	if b.maxAge != nil {
		h["Cache-Control"] = b.maxAge
	}
	_, _ = w.Write(out)
}

// parseBackendRequest checks a request body against the contract and
// returns the key's index (-1 for a key outside the data set) and the raw
// Object to echo. The fast path matches the exact compact encoding
// shitenno and the direct client send; anything else goes through
// encoding/json, so a differently formatted but valid request still works.
func parseBackendRequest(verb string, body []byte) (int, []byte, bool) {
	if verb != postfixVerb && verb != dovecotVerb {
		return 0, nil, false
	}
	pre := `{"Verb":"` + verb + `","Object":`
	if bytes.HasPrefix(body, []byte(pre)) && len(body) > len(pre) && body[len(body)-1] == '}' {
		obj := body[len(pre) : len(body)-1]
		var k []byte
		if verb == postfixVerb {
			k = unquoteSimple(obj)
		} else {
			const op, os = `{"Context":"shared","Object":`, `}`
			if bytes.HasPrefix(obj, []byte(op)) && bytes.HasSuffix(obj, []byte(os)) {
				k = unquoteSimple(obj[len(op) : len(obj)-len(os)])
			}
		}
		if k != nil {
			i, ok := keyIndex(k)
			if !ok {
				i = -1
			}
			return i, obj, true
		}
	}
	var req struct {
		Verb   string
		Object json.RawMessage
	}
	if json.Unmarshal(body, &req) != nil || req.Verb != verb {
		return 0, nil, false
	}
	var key string
	if verb == postfixVerb {
		if json.Unmarshal(req.Object, &key) != nil {
			return 0, nil, false
		}
	} else {
		var o struct{ Context, Object *string }
		if json.Unmarshal(req.Object, &o) != nil || o.Context == nil || *o.Context != "shared" || o.Object == nil {
			return 0, nil, false
		}
		key = *o.Object
	}
	i, ok := keyIndex([]byte(key))
	if !ok {
		i = -1
	}
	return i, req.Object, true
}

// unquoteSimple returns the inside of a JSON string without escapes, or
// nil when q is not one (the caller then takes the slow path).
func unquoteSimple(q []byte) []byte {
	if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' {
		return nil
	}
	in := q[1 : len(q)-1]
	if bytes.IndexByte(in, '\\') >= 0 || bytes.IndexByte(in, '"') >= 0 {
		return nil
	}
	return in
}
