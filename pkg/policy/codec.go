// Package policy speaks postfix's SMTP access policy delegation protocol
// (SMTPD_POLICY_README, "Protocol description"; check_policy_service in
// src/smtpd/smtpd_check.c): a request is name=value lines ended by an
// empty line, the reply is one "action=..." line ended by an empty line,
// many requests per connection. In case of trouble the server sends no
// reply and disconnects; postfix then retries and finally applies its
// smtpd_policy_service_default_action.
//
// The codec is pure; Server owns sockets and goroutines. Neither knows
// about the backend.
package policy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"unicode/utf8"
)

// Bounds of a request (issue #17). Postfix itself allows an attribute
// string of 4*line_length_limit (8 KiB by default, attr_scan_plain.c) and
// sends about 30 attributes; these leave room for every attribute postfix
// sends while keeping what a local peer can make the daemon hold small.
const (
	MaxLine       = 4 << 10  // one name=value line, newline excluded
	MaxAttributes = 256      // attributes in one request
	MaxRequest    = 64 << 10 // one request, newlines included
)

// MaxAction bounds the action sent back. Postfix reads the reply value
// with attr_scan_plain, whose limit is 4*line_length_limit (8192 with the
// default line_length_limit = 2048); half of it leaves room for an
// administrator who lowered line_length_limit, and is far more than an
// SMTP reply needs.
const MaxAction = 4 << 10

// Protocol violations. After one of them the connection is closed
// without a reply, as SMTPD_POLICY_README asks of a server in trouble.
var (
	ErrLineTooLong     = errors.New("policy: attribute line too long")
	ErrTooManyAttrs    = errors.New("policy: too many attributes")
	ErrRequestTooLarge = errors.New("policy: request too large")
	ErrNoEquals        = errors.New("policy: attribute line without '='")
	ErrEmptyName       = errors.New("policy: attribute with an empty name")
	ErrEmptyRequest    = errors.New("policy: request without attributes")
	ErrTruncated       = errors.New("policy: connection closed inside a request")
)

// Attr is one attribute as received.
type Attr struct {
	Name, Value string
}

// Request is one policy request: every attribute received, in order.
type Request struct {
	Attrs []Attr
}

// Get returns the value of the first attribute called name ("" if none).
// SMTPD_POLICY_README lets a server keep the first or the last of
// repeated attributes; shitenno keeps the first everywhere, as postfix's
// own attr_scan into a hash table does ("existing entries are not
// replaced").
func (r Request) Get(name string) string {
	for _, a := range r.Attrs {
		if a.Name == name {
			return a.Value
		}
	}
	return ""
}

// ReadRequest reads one request from r. The reader's buffer must hold at
// least MaxLine+1 bytes (NewReader makes one): a line that does not fit
// is a violation. io.EOF means the stream ended cleanly between requests.
func ReadRequest(r *bufio.Reader) (Request, error) {
	var req Request
	total := 0
	for {
		line, err := r.ReadSlice('\n')
		switch err {
		case nil:
		case bufio.ErrBufferFull:
			return Request{}, ErrLineTooLong
		case io.EOF:
			if len(line) == 0 && total == 0 {
				return Request{}, io.EOF
			}
			return Request{}, ErrTruncated
		default:
			return Request{}, err
		}
		total += len(line)
		if total > MaxRequest {
			return Request{}, ErrRequestTooLarge
		}
		line = line[:len(line)-1]
		if len(line) > MaxLine {
			return Request{}, ErrLineTooLong
		}
		if len(line) == 0 {
			if len(req.Attrs) == 0 {
				return Request{}, ErrEmptyRequest
			}
			return req, nil
		}
		if len(req.Attrs) == MaxAttributes {
			return Request{}, ErrTooManyAttrs
		}
		// Names never contain '=' (SMTPD_POLICY_README); values may.
		i := bytes.IndexByte(line, '=')
		if i < 0 {
			return Request{}, ErrNoEquals
		}
		if i == 0 {
			return Request{}, ErrEmptyName
		}
		req.Attrs = append(req.Attrs, Attr{Name: string(line[:i]), Value: string(line[i+1:])})
	}
}

// NewReader returns a reader for a connection sized for ReadRequest.
func NewReader(r io.Reader) *bufio.Reader {
	return bufio.NewReaderSize(r, MaxLine+1)
}

// AppendRequest appends req in wire form (attribute lines and the empty
// line). Tests and the query subcommand use it.
func AppendRequest(dst []byte, req Request) []byte {
	for _, a := range req.Attrs {
		dst = append(dst, a.Name...)
		dst = append(dst, '=')
		dst = append(dst, a.Value...)
		dst = append(dst, '\n')
	}
	return append(dst, '\n')
}

// Action errors.
var (
	ErrActionEmpty   = errors.New("policy: empty action")
	ErrActionLine    = errors.New("policy: action is not one line of printable text")
	ErrActionTooLong = errors.New("policy: action too long")
	ErrActionUTF8    = errors.New("policy: action is not valid UTF-8")
)

// CheckAction reports whether s can be sent as an action: non-empty, one
// line without control characters (a newline would end the reply early
// and desynchronise the connection), valid UTF-8 (smtpd refuses anything
// else when smtputf8_enable is on, valid_utf8_action in smtpd_check.c),
// at most MaxAction bytes. It does not judge the action word itself:
// postfix accepts any access(5) action and logs a bad one.
func CheckAction(s string) error {
	if strings.TrimSpace(s) == "" {
		return ErrActionEmpty
	}
	if len(s) > MaxAction {
		return ErrActionTooLong
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return ErrActionLine
		}
	}
	if !utf8.ValidString(s) {
		return ErrActionUTF8
	}
	return nil
}

// AppendReply appends the reply "action=<action>\n\n". The caller checks
// the action with CheckAction first.
func AppendReply(dst []byte, action string) []byte {
	dst = append(dst, "action="...)
	dst = append(dst, action...)
	return append(dst, '\n', '\n')
}

// complete reports whether b holds a whole request (through its empty
// line), which ReadRequest then reads without waiting for the connection.
func complete(b []byte) bool {
	return len(b) > 0 && b[0] == '\n' || bytes.Contains(b, []byte("\n\n"))
}
