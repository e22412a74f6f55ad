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
	out := appendAnswer(bb.out[:0], verb, idx, obj)
	defer func() { bb.out = out[:0] }()
	h := w.Header()
	h["Content-Type"] = hdrJSON
	h["Content-Length"] = []string{strconv.Itoa(len(out))}
	if b.maxAge != nil {
		h["Cache-Control"] = b.maxAge
	}
	_, _ = w.Write(out)
}

// appendAnswer appends the reply to a request for verb about key idx
// (parseBackendRequest's index), echoing its Object obj.
func appendAnswer(out []byte, verb string, idx int, obj []byte) []byte {
	out = append(out, `{"Verb":`...)
	out = strconv.AppendQuote(out, verb)
	out = append(out, `,"Object":`...)
	out = append(out, obj...)
	switch {
	case idx >= scanKeyBase && verb == postfixVerb:
		out = append(out, `,"Status":"OK","Data":"`...)
		out = append(out, scanValue(idx-scanKeyBase)...)
		out = append(out, `"}`...)
	case idx < 0 || idx >= scanKeyBase || !known(idx):
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
	return out
}

// parseBackendRequest checks a request body against the contract and
// returns the key's index (-1 for a key outside the data set,
// scanKeyBase+j for scan key j) and the raw Object to echo. The fast path
// matches the exact compact encoding shitenno and the direct client send;
// anything else goes through encoding/json, so a differently formatted but
// valid request still works.
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
	if i, obj, ok := parseLookupFast(verb, body); ok {
		return i, obj, true
	}
	return parseLookupSlow(verb, body)
}

// compactObject returns the Object of a request in the exact compact
// encoding {"Verb":"<verb>","Object":...}, which the fast paths read.
func compactObject(verb string, body []byte) ([]byte, bool) {
	pre := `{"Verb":"` + verb + `","Object":`
	if bytes.HasPrefix(body, []byte(pre)) && len(body) > len(pre) && body[len(body)-1] == '}' {
		return body[len(pre) : len(body)-1], true
	}
	return nil, false
}

// parseLookupFast is parseBackendRequest for a postfix or dovecot
// request as shitenno encodes it, keys without escapes; false for
// anything else.
func parseLookupFast(verb string, body []byte) (int, []byte, bool) {
	obj, ok := compactObject(verb, body)
	if !ok {
		return 0, nil, false
	}
	var k []byte
	if verb == postfixVerb {
		k = unquoteSimple(obj)
	} else {
		const op, os = `{"Context":"shared","Object":`, `}`
		if bytes.HasPrefix(obj, []byte(op)) && bytes.HasSuffix(obj, []byte(os)) {
			k = unquoteSimple(obj[len(op) : len(obj)-len(os)])
		}
	}
	if k == nil {
		return 0, nil, false
	}
	return keyOrNone(k), obj, true
}

// parseLookupSlow is parseBackendRequest for a postfix or dovecot
// request through encoding/json.
func parseLookupSlow(verb string, body []byte) (int, []byte, bool) {
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
	return keyOrNone([]byte(key)), req.Object, true
}

// keyOrNone is k's index in the data set, scanKeyBase+j for scan key j,
// -1 for any other key.
func keyOrNone(k []byte) int {
	if i, ok := keyIndex(k); ok {
		return i
	}
	if j, ok := scanIndex(k); ok {
		return scanKeyBase + j
	}
	return -1
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
	obj, ok := compactObject(verb, body)
	if ok {
		ok = scanFlatObject(obj, verb == saslVerb, names, vals[:len(names)])
	}
	if !ok {
		// Anything the fast path does not know: decode it properly.
		if obj, ok = decodeLoginRequest(verb, body, names, vals[:len(names)]); !ok {
			return 0, nil, false
		}
	}
	for j := range names {
		if vals[j] == nil {
			return 0, nil, false
		}
	}
	return loginIndex(verb, vals), obj, true
}

// decodeLoginRequest is parseLoginRequest's slow path through
// encoding/json: every member a string (but sasl's Secured), the values of
// names stored in vals; it returns the raw Object.
func decodeLoginRequest(verb string, body []byte, names []string, vals [][]byte) ([]byte, bool) {
	var req struct {
		Verb   string
		Object map[string]any
	}
	var raw struct{ Object json.RawMessage }
	if json.Unmarshal(body, &req) != nil || req.Verb != verb || req.Object == nil || json.Unmarshal(body, &raw) != nil {
		return nil, false
	}
	for k, v := range req.Object {
		if _, isBool := v.(bool); isBool && verb == saslVerb && k == "Secured" {
			continue
		}
		if _, isString := v.(string); !isString {
			return nil, false
		}
	}
	for j, n := range names {
		v, ok := req.Object[n].(string)
		if !ok {
			return nil, false
		}
		vals[j] = []byte(v)
	}
	return raw.Object, true
}

// loginIndex is the key's index for a login whose loginFields values
// are vals, -1 for an unknown key or, for sasl and nginx, a wrong
// password or mechanism.
func loginIndex(verb string, vals [3][]byte) int {
	i, known := keyIndex(vals[0])
	switch {
	case !known:
		i = -1
	case verb == saslVerb && (string(vals[1]) != loginPassword(i) || string(vals[2]) != "PLAIN"),
		verb == nginxVerb && (string(vals[1]) != loginPassword(i) || string(vals[2]) != "plain"):
		i = -1
	}
	return i
}

// scanFlatObject reads obj as {"name":"value",...} with no escapes and no
// nesting (booleans allowed when bools is set) and stores the values of
// names in vals (nil for a name absent). It reports false for anything
// else, which the caller then decodes with encoding/json.
func scanFlatObject(obj []byte, bools bool, names []string, vals [][]byte) bool {
	if len(obj) < 2 || obj[0] != '{' || obj[len(obj)-1] != '}' {
		return false
	}
	s := flatScanner{p: obj[1 : len(obj)-1]}
	for len(s.p) > 0 {
		k, ok := s.str()
		if !ok || len(s.p) == 0 || s.p[0] != ':' {
			return false
		}
		s.p = s.p[1:]
		v, ok := s.value(bools)
		if !ok || !storeFlat(k, v, names, vals) || !s.comma() {
			return false
		}
	}
	return true
}

// flatScanner is scanFlatObject's position in the object's members.
type flatScanner struct{ p []byte }

// str reads a string without escapes.
func (s *flatScanner) str() ([]byte, bool) {
	if len(s.p) == 0 || s.p[0] != '"' {
		return nil, false
	}
	e := bytes.IndexByte(s.p[1:], '"')
	if e < 0 {
		return nil, false
	}
	v := s.p[1 : 1+e]
	if bytes.IndexByte(v, '\\') >= 0 {
		return nil, false
	}
	s.p = s.p[e+2:]
	return v, true
}

// value reads a string, or a boolean when bools is set (returned as nil).
func (s *flatScanner) value(bools bool) ([]byte, bool) {
	switch {
	case bools && bytes.HasPrefix(s.p, []byte("true")):
		s.p = s.p[4:]
	case bools && bytes.HasPrefix(s.p, []byte("false")):
		s.p = s.p[5:]
	default:
		return s.str()
	}
	return nil, true
}

// comma reads the comma between two members; false for one ending the
// object.
func (s *flatScanner) comma() bool {
	if len(s.p) == 0 {
		return true
	}
	if s.p[0] != ',' || len(s.p) == 1 {
		return false
	}
	s.p = s.p[1:]
	return true
}

// storeFlat stores v in vals where k is the first occurrence of one of
// names; false for a boolean (nil v) where a string is read.
func storeFlat(k, v []byte, names []string, vals [][]byte) bool {
	for j, n := range names {
		if string(k) == n && vals[j] == nil {
			vals[j] = v
			if v == nil {
				return false
			}
		}
	}
	return true
}
