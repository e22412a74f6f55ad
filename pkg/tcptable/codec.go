// Package tcptable speaks postfix's tcp_table(5) lookup protocol, as the
// client in postfix's src/util/dict_tcp.c implements it: one request line
// "get <key>\n" per lookup on a connection postfix keeps open, one reply
// line "200 <data>\n" (found), "500 <text>\n" (not found) or
// "400 <text>\n" (try again later) per request. Key, data and text are
// %XX-encoded (src/util/hex_quote.c).
//
// The codec is pure; Server owns sockets and goroutines. Neither knows
// about the backend.
package tcptable

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// MaxReplyLine is postfix's reply limit, newline included
// (DICT_TCP_MAXLEN in dict_tcp.c, read with vstring_get_nonl_bound: a
// reply whose newline is not among the first 4096 bytes is "text longer
// than 4096", the connection is dropped and the lookup retried).
const MaxReplyLine = 4096

// MaxData is the longest encoded data that fits in a 200 reply.
const MaxData = MaxReplyLine - len("200 \n")

// MaxRequestLine is the default bound on a request line (newline
// excluded). Postfix sets none; its keys are bounded by its own line
// limits, and %XX encoding can triple them, so 64 KiB leaves room for a
// header_checks-sized key.
const MaxRequestLine = 64 << 10

// Errors of the request codec.
var (
	// ErrLineTooLong: a request line longer than the bound.
	ErrLineTooLong = errors.New("tcptable: request line too long")
	// ErrOverrun: a line so long that it was not skipped; the stream
	// cannot be resynchronised.
	ErrOverrun = errors.New("tcptable: request line far too long")
	// ErrTruncated: the connection ended inside a line.
	ErrTruncated = errors.New("tcptable: connection closed inside a request")
	// ErrBadEncoding: a % not followed by two hex digits (hex_unquote
	// refuses those too).
	ErrBadEncoding = errors.New("tcptable: bad %XX encoding")
	// ErrCommand: a request other than "get <key>" ("put" is documented
	// but not implemented by postfix either).
	ErrCommand = errors.New("tcptable: request is not \"get <key>\"")
)

// ReadLine reads one LF-terminated line of at most max bytes (LF
// excluded) from r. A line that spans several buffer fills is joined in
// *scratch (nil: a new buffer), which ReadLine keeps for the next call;
// one that fits in r's buffer is returned from it, without a copy, valid
// until the next read. The two must not meet: joined in the reader's own
// buffer, a line would be overwritten by the refill it needs. io.EOF means
// the stream ended cleanly between lines.
//
// A longer line is skipped to its LF, so the stream stays in step, and
// ErrLineTooLong is returned; if no LF comes within MaxSkip bytes,
// ErrOverrun is returned and the stream is lost.
func ReadLine(r *bufio.Reader, scratch *[]byte, max int) ([]byte, error) {
	var buf []byte
	if scratch != nil {
		buf = (*scratch)[:0]
		defer func() { *scratch = buf[:0] }()
	}
	for {
		frag, err := r.ReadSlice('\n')
		switch err {
		case nil:
			if len(buf)+len(frag)-1 > max {
				return nil, ErrLineTooLong
			}
			if len(buf) == 0 {
				return frag[:len(frag)-1], nil // whole line buffered: no copy
			}
			buf = append(buf, frag...)
			return buf[:len(buf)-1], nil
		case bufio.ErrBufferFull:
			if len(buf)+len(frag) > max {
				return nil, skipLine(r, len(buf)+len(frag))
			}
			buf = append(buf, frag...)
		case io.EOF:
			if len(buf)+len(frag) == 0 {
				return nil, io.EOF
			}
			return nil, ErrTruncated
		default:
			return nil, err
		}
	}
}

// MaxSkip bounds how much of an overlong line ReadLine skips.
const MaxSkip = 1 << 20

// skipLine discards input through the next LF; n bytes of the line were
// already read.
func skipLine(r *bufio.Reader, n int) error {
	for n < MaxSkip {
		frag, err := r.ReadSlice('\n')
		n += len(frag)
		switch err {
		case nil:
			return ErrLineTooLong
		case bufio.ErrBufferFull:
		case io.EOF:
			return ErrTruncated
		default:
			return err
		}
	}
	return ErrOverrun
}

// ParseRequest decodes a request line (without its newline) into the
// raw key. The result is appended to dst[:0]. One trailing CR is ignored:
// postfix never sends a raw CR (hex_quote encodes it), but a person
// typing at the port with telnet does.
func ParseRequest(dst, line []byte) ([]byte, error) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	key, ok := bytes.CutPrefix(line, []byte("get "))
	if !ok {
		return nil, ErrCommand
	}
	return Decode(dst[:0], key)
}

// Decode appends src with its %XX escapes (hex digits in any case)
// decoded to dst. Other bytes are taken literally, as hex_unquote does.
func Decode(dst, src []byte) ([]byte, error) {
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c != '%' {
			dst = append(dst, c)
			continue
		}
		if i+2 >= len(src) {
			return nil, ErrBadEncoding
		}
		hi, ok1 := unhex(src[i+1])
		lo, ok2 := unhex(src[i+2])
		if !ok1 || !ok2 {
			return nil, ErrBadEncoding
		}
		dst = append(dst, hi<<4|lo)
		i += 2
	}
	return dst, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// AppendEncoded appends s encoded the way hex_quote does: '%', ASCII
// whitespace, and every byte that is not printable ASCII (so all bytes
// >= 0x80) become %XX with upper-case digits.
func AppendEncoded(dst []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > ' ' && c < 0x7f && c != '%' {
			dst = append(dst, c)
		} else {
			dst = append(dst, '%', hex[c>>4], hex[c&0xf])
		}
	}
	return dst
}

// EncodedLen is len(AppendEncoded(nil, s)).
func EncodedLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c > ' ' && c < 0x7f && c != '%') {
			n += 2
		}
	}
	return n
}

// Kind is the reply status.
type Kind uint8

// Reply kinds and their status codes.
const (
	OK       Kind = iota // 200: found, Text is the data
	NotFound             // 500: no such key
	Temp                 // 400: error, postfix retries later
)

// String returns the outcome word.
func (k Kind) String() string {
	switch k {
	case OK:
		return "ok"
	case NotFound:
		return "notfound"
	}
	return "temp"
}

// Reply is one answer.
type Reply struct {
	Kind Kind
	Text string // OK: the data; otherwise a reason for postfix's log
}

// maxReason bounds a 400/500 text: postfix prints at most 100 bytes of a
// reply it complains about (msg_warn "%.100s" in dict_tcp.c).
const maxReason = 200

// AppendReply appends r as one reply line. It never produces a line
// postfix would refuse: data that is empty after all (the backend's bug,
// and not what tcp_table can express as found) or whose encoding does not
// fit MaxReplyLine becomes a 400. Postfix requires a space after the
// code even for an empty text, so a text is always present.
func AppendReply(dst []byte, r Reply) []byte {
	switch r.Kind {
	case OK:
		if r.Text == "" {
			r = Reply{Kind: Temp, Text: "backend returned an empty value"}
		} else if EncodedLen(r.Text) > MaxData {
			r = Reply{Kind: Temp, Text: "backend value longer than postfix's 4096-byte tcp_table reply limit"}
		}
	case NotFound, Temp:
	default:
		r = Reply{Kind: Temp, Text: "internal error"}
	}
	switch r.Kind {
	case OK:
		dst = append(dst, "200 "...)
		dst = AppendEncoded(dst, r.Text)
		return append(dst, '\n')
	case NotFound:
		dst = append(dst, "500 "...)
		if r.Text == "" {
			r.Text = "not found"
		}
	default:
		dst = append(dst, "400 "...)
		if r.Text == "" {
			r.Text = "temporary failure"
		}
	}
	if len(r.Text) > maxReason {
		r.Text = r.Text[:maxReason]
	}
	dst = AppendEncoded(dst, r.Text)
	return append(dst, '\n')
}

// complete reports whether b holds a whole line, which ReadLine then
// reads without waiting for the connection.
func complete(b []byte) bool { return bytes.IndexByte(b, '\n') >= 0 }
