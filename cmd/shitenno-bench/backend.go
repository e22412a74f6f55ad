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
	case verb == saslVerb:
		// The canonical name, as a real backend (and the example one)
		// sends it: shitenno checks and forwards it as user=.
		out = append(out, `,"Status":"OK","Data":{"User":"`...)
		out = append(out, benchKey(idx)...)
		out = append(out, `"}}`...)
	case verb == policyVerb:
		out = append(out, `,"Status":"OK","Data":"`...)
		out = append(out, policyAction(idx)...)
		out = append(out, `"}`...)
	case verb == nginxVerb:
		out = append(out, `,"Status":"OK","Data":{"Auth-Server":"`+nginxServer+`","Auth-Port":`+strconv.Itoa(nginxPort)+`}}`...)
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
//
// For the login verbs the index is -1 as well when the password is wrong
// (sasl, nginx), so -1 always means "answer KO".
func parseBackendRequest(verb string, body []byte) (int, []byte, bool) {
	switch verb {
	case saslVerb, policyVerb, nginxVerb:
		return parseLoginRequest(verb, body)
	case postfixVerb, dovecotVerb:
	default:
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

// loginFields are the Object members the built-in backend reads for each
// login verb (the first names the key), the rest being information it
// only checks for shape.
var loginFields = map[string][]string{
	saslVerb:   {"User", "Password", "Mechanism"},
	policyVerb: {"recipient"},
	nginxVerb:  {"Auth-User", "Auth-Pass", "Auth-Method"},
}

// parseLoginRequest checks a sasl, policy or nginx request: Object is a
// flat JSON object (of strings only, but for sasl's Secured) holding the
// loginFields, and answers as parseBackendRequest.
func parseLoginRequest(verb string, body []byte) (int, []byte, bool) {
	names := loginFields[verb]
	var vals [3][]byte
	pre := `{"Verb":"` + verb + `","Object":`
	obj, ok := []byte(nil), false
	if bytes.HasPrefix(body, []byte(pre)) && len(body) > len(pre) && body[len(body)-1] == '}' {
		obj = body[len(pre) : len(body)-1]
		ok = scanFlatObject(obj, verb == saslVerb, names, vals[:len(names)])
	}
	if !ok {
		// Anything the fast path does not know: decode it properly.
		var req struct {
			Verb   string
			Object map[string]any
		}
		var raw struct{ Object json.RawMessage }
		if json.Unmarshal(body, &req) != nil || req.Verb != verb || req.Object == nil || json.Unmarshal(body, &raw) != nil {
			return 0, nil, false
		}
		obj = raw.Object
		for k, v := range req.Object {
			if _, isBool := v.(bool); isBool && verb == saslVerb && k == "Secured" {
				continue
			}
			if _, isString := v.(string); !isString {
				return 0, nil, false
			}
		}
		for j, n := range names {
			v, ok := req.Object[n].(string)
			if !ok {
				return 0, nil, false
			}
			vals[j] = []byte(v)
		}
	}
	for j := range names {
		if vals[j] == nil {
			return 0, nil, false
		}
	}
	i, known := keyIndex(vals[0])
	switch {
	case !known:
		i = -1
	case verb == saslVerb && (string(vals[1]) != loginPassword(i) || string(vals[2]) != "PLAIN"),
		verb == nginxVerb && (string(vals[1]) != loginPassword(i) || string(vals[2]) != "plain"):
		i = -1
	}
	return i, obj, true
}

// scanFlatObject reads obj as {"name":"value",...} with no escapes and no
// nesting (booleans allowed when bools is set) and stores the values of
// names in vals (nil for a name absent). It reports false for anything
// else, which the caller then decodes with encoding/json.
func scanFlatObject(obj []byte, bools bool, names []string, vals [][]byte) bool {
	if len(obj) < 2 || obj[0] != '{' || obj[len(obj)-1] != '}' {
		return false
	}
	p := obj[1 : len(obj)-1]
	str := func() ([]byte, bool) {
		if len(p) == 0 || p[0] != '"' {
			return nil, false
		}
		e := bytes.IndexByte(p[1:], '"')
		if e < 0 {
			return nil, false
		}
		s := p[1 : 1+e]
		if bytes.IndexByte(s, '\\') >= 0 {
			return nil, false
		}
		p = p[e+2:]
		return s, true
	}
	for len(p) > 0 {
		k, ok := str()
		if !ok || len(p) == 0 || p[0] != ':' {
			return false
		}
		p = p[1:]
		var v []byte
		switch {
		case bools && bytes.HasPrefix(p, []byte("true")):
			p = p[4:]
		case bools && bytes.HasPrefix(p, []byte("false")):
			p = p[5:]
		default:
			if v, ok = str(); !ok {
				return false
			}
		}
		for j, n := range names {
			if string(k) == n && vals[j] == nil {
				vals[j] = v
				if v == nil {
					return false // a boolean where a string is read
				}
			}
		}
		if len(p) > 0 {
			if p[0] != ',' || len(p) == 1 {
				return false
			}
			p = p[1:]
		}
	}
	return true
}
