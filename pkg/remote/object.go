package remote

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"sync/atomic"
)

// Object is a request object made of strings alone: one JSON string, or
// a JSON object of two string members. It stays strings until the
// backend is asked, so that a cache hit (LookupObject) is found from a
// digest of the strings with no JSON built: the request's encoding and
// the longer digest over it were a third of a dovecot cache hit
// (BenchmarkDovecotRemoteCached).
type Object struct {
	shape *Shape // nil: the object is the JSON string v[0]
	v     [2]string
}

// Shape names the two members of the objects it makes. Each Shape is a
// distinct kind of object to the cache.
type Shape struct {
	id    uint64
	names [2]string
}

var shapes atomic.Uint64

// NewShape returns the shape of objects {a: …, b: …}.
func NewShape(a, b string) *Shape {
	return &Shape{id: shapes.Add(1), names: [2]string{a, b}}
}

// Object returns {names[0]: a, names[1]: b}.
func (s *Shape) Object(a, b string) Object { return Object{shape: s, v: [2]string{a, b}} }

// StringObject returns the object that is the JSON string s.
func StringObject(s string) Object { return Object{v: [2]string{s}} }

// AppendJSON appends the object as JSON, its strings as AppendJSONString
// writes them.
func (o Object) AppendJSON(dst []byte) []byte {
	if o.shape == nil {
		return AppendJSONString(dst, o.v[0])
	}
	dst = appendMember(append(dst, '{'), o.shape.names[0], o.v[0])
	dst = appendMember(append(dst, ','), o.shape.names[1], o.v[1])
	return append(dst, '}')
}

func appendMember(dst []byte, name, value string) []byte {
	return AppendJSONString(append(AppendJSONString(dst, name), ':'), value)
}

// JSON returns the object as JSON.
func (o Object) JSON() json.RawMessage { return o.AppendJSON(nil) }

// objectDigest is the cache key of verb and o: SHA-256, as cacheDigest,
// over a pre-image that determines the request body (the shape's id, then
// each string with its length) and never starts with the '{' every body
// digested by cacheDigest starts with, so the two kinds of key cannot
// meet but by a SHA-256 collision.
func objectDigest(verb string, o Object) [sha256.Size]byte {
	var stack [128]byte
	b := append(stack[:0], 0)
	if o.shape != nil {
		b = binary.AppendUvarint(b, o.shape.id)
	} else {
		b = append(b, 0)
	}
	b = appendLenString(b, verb)
	b = appendLenString(b, o.v[0])
	if o.shape != nil {
		b = appendLenString(b, o.v[1])
	}
	return sha256.Sum256(b)
}

func appendLenString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}
