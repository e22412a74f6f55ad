// Package socketmap speaks postfix's socketmap protocol (socketmap_table(5)):
// netstring-framed requests "name key" and replies "OK data", "NOTFOUND ",
// "TEMP reason", "TIMEOUT reason" or "PERM reason".
//
// The codec is pure and allocation-conscious; Server owns sockets and
// goroutines. Neither knows about the backend.
package socketmap

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
)

// MaxPayload is postfix's fixed reply limit (DICT_SOCKMAP_DEF_MAX_REPLY in
// dict_sockmap.c); a longer reply is refused as "input exceeds size limit".
// It also bounds the requests shitenno reads.
const MaxPayload = 100000

// Framing errors. After one of them the stream cannot be resynchronised and
// the connection must be closed.
var (
	ErrTooLong    = errors.New("socketmap: netstring longer than the limit")
	ErrBadLength  = errors.New("socketmap: netstring length is not a decimal number")
	ErrNoComma    = errors.New("socketmap: netstring not terminated by a comma")
	ErrNoSpace    = errors.New("socketmap: request has no space between name and key")
	ErrEmptyName  = errors.New("socketmap: request has an empty name")
	ErrTruncated  = errors.New("socketmap: connection closed inside a netstring")
	errLeadZeroes = errors.New("socketmap: netstring length has a leading zero")
)

// ReadNetstring reads one netstring from r into buf (reused when large
// enough) and returns the payload. max bounds the payload length; the length
// is checked before anything is allocated. io.EOF is returned only when the
// stream ends cleanly between netstrings.
//
// Complexity: a byte-level parser of the netstring grammar; each branch is
// one malformed-input case.
func ReadNetstring(r *bufio.Reader, buf []byte, max int) ([]byte, error) {
	n := 0
	digits := 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			if err == io.EOF {
				if digits == 0 {
					return nil, io.EOF
				}
				return nil, ErrTruncated
			}
			return nil, err
		}
		if c == ':' {
			if digits == 0 {
				return nil, ErrBadLength
			}
			break
		}
		if c < '0' || c > '9' {
			return nil, ErrBadLength
		}
		if digits == 1 && n == 0 {
			// DJB's spec forbids leading zeros; postfix never sends them.
			return nil, errLeadZeroes
		}
		n = n*10 + int(c-'0')
		digits++
		if n > max {
			return nil, ErrTooLong
		}
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, ErrTruncated
		}
		return nil, err
	}
	c, err := r.ReadByte()
	if err != nil {
		if err == io.EOF {
			return nil, ErrTruncated
		}
		return nil, err
	}
	if c != ',' {
		return nil, ErrNoComma
	}
	return buf, nil
}

// AppendNetstring appends payload as a netstring to dst.
func AppendNetstring(dst, payload []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(payload)), 10)
	dst = append(dst, ':')
	dst = append(dst, payload...)
	return append(dst, ',')
}

// Request is one decoded lookup. Name and Key alias the read buffer.
type Request struct {
	Name []byte // the socketmap name: the backend verb
	Key  []byte // the lookup key, verbatim (may contain spaces, may be empty)
}

// ParseRequest splits a payload at its first space (dict_sockmap.c builds
// it as "%s %s"; only the name is free of spaces).
func ParseRequest(p []byte) (Request, error) {
	i := bytes.IndexByte(p, ' ')
	if i < 0 {
		return Request{}, ErrNoSpace
	}
	if i == 0 {
		return Request{}, ErrEmptyName
	}
	return Request{Name: p[:i], Key: p[i+1:]}, nil
}

// Kind is the reply keyword.
type Kind uint8

// Reply kinds, spelled exactly as postfix compares them (case-sensitive).
const (
	OK Kind = iota
	NotFound
	Temp
	Timeout
	Perm
)

var kindWords = [...]string{OK: "OK ", NotFound: "NOTFOUND ", Temp: "TEMP ", Timeout: "TIMEOUT ", Perm: "PERM "}

// String returns the keyword.
func (k Kind) String() string {
	if int(k) < len(kindWords) {
		return kindWords[k][:len(kindWords[k])-1]
	}
	return "UNKNOWN"
}

// Reply is one answer. For OK, Text is the value; for TEMP, TIMEOUT and
// PERM, the reason; for NOTFOUND it is ignored.
type Reply struct {
	Kind Kind
	Text string
}

// maxReason bounds an error reason: postfix logs at most 200 bytes of it.
const maxReason = 200

// AppendReply appends r as a netstring. It never produces a frame postfix
// would refuse: an OK value that is empty or does not fit in MaxPayload
// becomes PERM (postfix treats "OK " as a configuration error too, and an
// oversize frame as a retry error that also kills the connection).
func AppendReply(dst []byte, r Reply) []byte {
	switch r.Kind {
	case OK:
		if r.Text == "" {
			r = Reply{Kind: Perm, Text: "backend returned an empty value"}
		} else if len(kindWords[OK])+len(r.Text) > MaxPayload {
			r = Reply{Kind: Perm, Text: "backend value longer than postfix's 100000-byte limit"}
		}
	case NotFound:
		r.Text = ""
	case Temp, Timeout, Perm:
		r.Text = sanitizeReason(r.Text)
	default:
		r = Reply{Kind: Temp, Text: "internal error"}
	}
	w := kindWords[r.Kind]
	dst = strconv.AppendInt(dst, int64(len(w)+len(r.Text)), 10)
	dst = append(dst, ':')
	dst = append(dst, w...)
	dst = append(dst, r.Text...)
	return append(dst, ',')
}

// sanitizeReason keeps a reason printable and short; postfix would print
// non-printables as '?' anyway.
func sanitizeReason(s string) string {
	if len(s) > maxReason {
		s = s[:maxReason]
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] < 0x20 || b[j] >= 0x7f {
					b[j] = '?'
				}
			}
			return string(b)
		}
	}
	return s
}

// complete reports whether b starts with a whole netstring, which
// ReadNetstring then reads without waiting for the connection.
func complete(b []byte) bool {
	i := bytes.IndexByte(b, ':')
	if i <= 0 || i > 9 {
		return false
	}
	n := 0
	for _, c := range b[:i] {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return len(b) >= i+1+n+1 // digits, ':', payload, ','
}
