// Package dict speaks the server side of dovecot's proxy dict protocol
// (dovecot/core src/lib-dict/dict-client.{c,h}, src/dict/dict-commands.c),
// as used by the passdb/userdb "dict" drivers of dovecot 2.2 and 2.3 and
// by the proxy dict client of 2.4.
//
// The protocol is line based: each line is one command letter followed by
// tab-separated arguments, each escaped with dovecot's \x01 escaping
// (src/lib/strescape.c). Replies are lines too, matched to requests in
// FIFO order; only lookups, iterations and commits get one.
//
// This is a read-only dict: lookups are answered by a Handler, iterations
// are empty and commits are refused. The codec (this file) is pure; Server
// owns sockets, goroutines and deadlines. Neither knows about the backend.
package dict

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"unicode/utf8"
)

// MaxLineSize is the default bound on a command line, LF excluded. It is
// dovecot's own DICT_CLIENT_MAX_LINE_LENGTH (64 KiB, dict-client.h): no
// client line is longer, and no reply longer than it is accepted.
const MaxLineSize = 64 << 10

// Protocol errors. After one of them the connection is closed: a line
// stream cannot be trusted once a line was cut or misread.
var (
	ErrLineTooLong     = errors.New("dict: line longer than the limit")
	ErrTruncated       = errors.New("dict: connection closed inside a line")
	ErrInvalidUTF8     = errors.New("dict: line is not valid UTF-8")
	ErrEmptyLine       = errors.New("dict: empty command line")
	ErrUnknownCommand  = errors.New("dict: unknown command")
	ErrMalformed       = errors.New("dict: malformed command")
	ErrUnsupported     = errors.New("dict: unsupported protocol version")
	ErrMissingHello    = errors.New("dict: first command is not a hello")
	ErrDuplicateHello  = errors.New("dict: hello sent twice")
	errReplyKindBroken = errors.New("dict: invalid reply kind")
)

// LineReader reads LF-terminated lines with a length bound.
type LineReader struct {
	r   *bufio.Reader
	buf []byte
	max int
}

// NewLineReader reads lines of at most max bytes (LF excluded) from r;
// max <= 0 means MaxLineSize. Its read buffer is small: only lines longer
// than it are copied, into a buffer that grows up to max.
func NewLineReader(r io.Reader, max int) *LineReader {
	return newLineReaderSize(r, max, 4096)
}

// newLineReaderSize lets tests use a tiny read buffer, so that the path
// for lines longer than the buffer is reached with short inputs.
func newLineReaderSize(r io.Reader, max, size int) *LineReader {
	if max <= 0 {
		max = MaxLineSize
	}
	return &LineReader{r: bufio.NewReaderSize(r, size), max: max}
}

// ReadLine returns the next line without its LF (and without one CR
// before it: dovecot's i_stream_next_line strips it too). The result is
// valid until the next call. A line longer than the bound returns
// ErrLineTooLong after at most bound + 4 KiB (the read buffer) of it were
// read. io.EOF is
// returned only when the stream ends cleanly between lines, ErrTruncated
// when it ends inside one.
func (lr *LineReader) ReadLine() ([]byte, error) {
	buf := lr.buf[:0]
	defer func() {
		if cap(buf) <= 2*lr.r.Size() {
			lr.buf = buf[:0] // keep small buffers; let a one-off 64 KiB go
		}
	}()
	for {
		frag, err := lr.r.ReadSlice('\n')
		if err == nil {
			if len(buf) == 0 {
				// Common case: the whole line sits in the read buffer; no copy.
				return trimEOL(frag, lr.max)
			}
			buf = append(buf, frag...)
			return trimEOL(buf, lr.max)
		}
		if err == bufio.ErrBufferFull {
			if len(buf)+len(frag) > lr.max+1 { // +1: a CR may still be dropped
				return nil, ErrLineTooLong
			}
			buf = append(buf, frag...)
			continue
		}
		if err == io.EOF {
			if len(buf)+len(frag) == 0 {
				return nil, io.EOF
			}
			return nil, ErrTruncated
		}
		return nil, err
	}
}

// LineBuffered reports whether a complete line is already buffered, so
// that ReadLine would return without reading from the connection.
func (lr *LineReader) LineBuffered() bool {
	b, _ := lr.r.Peek(lr.r.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

func trimEOL(line []byte, max int) ([]byte, error) {
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) > max {
		return nil, ErrLineTooLong
	}
	return line, nil
}

// Escape returns s escaped the way dovecot's str_append_tabescaped_n does:
// NUL, \x01, TAB, CR and LF become \x01 followed by '0', '1', 't', 'r', 'n'.
func Escape(s string) string {
	return string(AppendEscaped(nil, s))
}

// AppendEscaped appends s to dst, escaped as Escape does.
func AppendEscaped(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		// Every byte to escape is below 0x0e: eight bytes at a time are
		// skipped while none is (a reply value usually has none at all).
		for i+8 <= len(s) && !hasBelow0e(s[i:i+8]) {
			i += 8
		}
		if i == len(s) {
			break
		}
		var e byte
		switch s[i] {
		case 0x00:
			e = '0'
		case 0x01:
			e = '1'
		case '\t':
			e = 't'
		case '\r':
			e = 'r'
		case '\n':
			e = 'n'
		default:
			continue
		}
		dst = append(dst, s[start:i]...)
		dst = append(dst, 0x01, e)
		start = i + 1
	}
	return append(dst, s[start:]...)
}

// hasBelow0e reports whether one of the 8 bytes of w is below 0x0e:
// the "hasless" test of Bit Twiddling Hacks (exact for a bound of at
// most 128), on the bytes as one little-endian word.
func hasBelow0e(w string) bool {
	x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
		uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	return (x-ones*0x0e)&^x&highs != 0
}

// Unescape reverses Escape exactly as dovecot's str_tabunescape does:
// \x01 followed by '0', '1', 't', 'r' or 'n' gives NUL, \x01, TAB, CR or
// LF; \x01 followed by any other byte gives that byte; a \x01 at the very
// end is dropped.
func Unescape(s []byte) string {
	i := bytes.IndexByte(s, 0x01)
	if i < 0 {
		return string(s)
	}
	out := make([]byte, 0, len(s))
	for ; i >= 0; i = bytes.IndexByte(s, 0x01) {
		out = append(out, s[:i]...)
		if i+1 == len(s) {
			return string(out) // truncated escape: dropped, like dovecot
		}
		switch c := s[i+1]; c {
		case '0':
			out = append(out, 0x00)
		case '1':
			out = append(out, 0x01)
		case 't':
			out = append(out, '\t')
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		default:
			out = append(out, c)
		}
		s = s[i+2:]
	}
	return string(append(out, s...))
}

// The command letters of enum dict_protocol_cmd (dict-client.h).
const (
	CmdHello       = 'H' // major, minor, value type, user, dict name
	CmdLookup      = 'L' // key [, user]
	CmdIterate     = 'I' // flags, max rows (not before 2.3), path [, user]
	CmdBegin       = 'B' // id [, user (2.3.17)] [, expire secs (2.4)]
	CmdCommit      = 'C' // id
	CmdCommitAsync = 'D' // id (gone in 2.4)
	CmdRollback    = 'R' // id
	CmdSet         = 'S' // id, key, value
	CmdUnset       = 'U' // id, key
	CmdAtomicInc   = 'A' // id, key, diff
	CmdTimestamp   = 'T' // id, secs, nsecs
	CmdHideLog     = 'V' // id, flag (2.4)
)

// Command is one decoded command line: its letter and its arguments,
// split on raw tabs and unescaped.
type Command struct {
	Op   byte
	Args []string
}

// Arg returns the i-th argument, or "" when there are fewer.
func (c Command) Arg(i int) string {
	if i < len(c.Args) {
		return c.Args[i]
	}
	return ""
}

// ParseCommand decodes one line as read by ReadLine. The line must be
// valid UTF-8 (unescaping only removes ASCII \x01 bytes, so the arguments
// then are too) and start with a known command letter. Arguments are split
// on raw tabs first and unescaped afterwards, as dovecot's
// t_strsplit_tabescaped does, so an escaped tab stays inside its argument.
func ParseCommand(line []byte) (Command, error) {
	if len(line) == 0 {
		return Command{}, ErrEmptyLine
	}
	if !utf8.Valid(line) {
		return Command{}, ErrInvalidUTF8
	}
	op := line[0]
	min := 0
	switch op {
	case CmdHello:
		min = 5
	case CmdLookup, CmdCommit, CmdCommitAsync, CmdRollback, CmdBegin:
		// B's user came with 2.3.17 (protocol 3); 2.2 and 2.3.0-2.3.16
		// send the id alone.
		min = 1
	case CmdIterate:
		// 2.2 sends no max_rows: flags and path.
		min = 2
	case CmdUnset, CmdHideLog:
		min = 2
	case CmdSet, CmdAtomicInc, CmdTimestamp:
		min = 3
	default:
		return Command{}, ErrUnknownCommand
	}
	rest := line[1:]
	args := make([]string, 0, bytes.Count(rest, []byte{'\t'})+1)
	for {
		i := bytes.IndexByte(rest, '\t')
		if i < 0 {
			args = append(args, Unescape(rest))
			break
		}
		args = append(args, Unescape(rest[:i]))
		rest = rest[i+1:]
	}
	if len(args) < min {
		return Command{}, ErrMalformed
	}
	return Command{Op: op, Args: args}, nil
}

// parseLookup decodes a lookup line as ParseCommand does, without the
// argument slice: the key and the user, the first two arguments. It
// reports false for a line ParseCommand would refuse.
func parseLookup(line []byte) (Request, bool) {
	if len(line) == 0 || line[0] != CmdLookup || !utf8.Valid(line) {
		return Request{}, false
	}
	key, rest, more := bytes.Cut(line[1:], []byte{'\t'})
	var user []byte
	if more {
		user, _, _ = bytes.Cut(rest, []byte{'\t'})
	}
	if n, end := len(key), 1+len(key)+1+len(user); more && bytes.IndexByte(line[:end], 0x01) < 0 {
		// Nothing escaped (the usual line): key and user are cut from one
		// copy of "<key>\t<user>", one allocation for both. Without a
		// user there is no tab, and end would be past the line.
		both := string(line[1:end])
		return Request{Key: both[:n], User: both[n+1:]}, true
	}
	req := Request{Key: Unescape(key)}
	if more {
		req.User = Unescape(user)
	}
	return req, true
}

// Hello is the decoded first line of a connection.
type Hello struct {
	Major, Minor int
	ValueType    string
	User         string // empty from 2.3.17 on: users travel with each command
	Name         string // the dict name: what follows the socket path in the uri
}

// ParseHello checks a hello command. Majors 2 (dovecot 2.2 and 2.3.0 to
// 2.3.16), 3 (2.3.17 and later 2.3) and 4 (2.4) share the lookup semantics
// this server needs; any other major is ErrUnsupported.
func ParseHello(c Command) (Hello, error) {
	if c.Op != CmdHello || len(c.Args) < 5 {
		return Hello{}, ErrMalformed
	}
	major, err1 := parseUint(c.Args[0])
	minor, err2 := parseUint(c.Args[1])
	if err1 != nil || err2 != nil {
		return Hello{}, ErrMalformed
	}
	h := Hello{Major: major, Minor: minor, ValueType: c.Args[2], User: c.Args[3], Name: c.Args[4]}
	if major < 2 || major > 4 {
		return h, ErrUnsupported
	}
	return h, nil
}

// parseUint accepts decimal digits only (no sign, no spaces), at most 9 of
// them so that the value fits an int everywhere.
func parseUint(s string) (int, error) {
	if len(s) == 0 || len(s) > 9 {
		return 0, ErrMalformed
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, ErrMalformed
		}
	}
	return strconv.Atoi(s)
}

// ReplyKind is the first byte of a lookup reply. Only these three are ever
// written: dovecot 2.3.19's auth worker crashes on an unexpected letter.
type ReplyKind byte

// Lookup reply kinds (enum dict_protocol_reply).
const (
	Found    ReplyKind = 'O' // Value is the value
	NotFound ReplyKind = 'N' // Value is ignored
	Failed   ReplyKind = 'F' // Value is a short error text, shown in dovecot's log
)

// Reply answers one lookup.
type Reply struct {
	Kind  ReplyKind
	Value string
}

// AppendReply appends the wire form of r to dst, LF included. A Reply
// with an unknown Kind is written as a failure rather than as a letter the
// client cannot handle.
func AppendReply(dst []byte, r Reply) []byte {
	switch r.Kind {
	case Found, Failed:
		dst = append(dst, byte(r.Kind))
		dst = AppendEscaped(dst, r.Value)
	case NotFound:
		dst = append(dst, 'N')
	default:
		dst = append(dst, 'F')
		dst = AppendEscaped(dst, errReplyKindBroken.Error())
	}
	return append(dst, '\n')
}

// AppendIterEnd appends the reply that ends an iteration: an empty line
// (DICT_PROTOCOL_REPLY_ITER_FINISHED is '\0', which the client sees when
// the line is empty). With no rows before it, the iteration is empty.
func AppendIterEnd(dst []byte) []byte {
	return append(dst, '\n')
}

// AppendCommitFailed appends the refusal of a commit: "F<id>\t<error>".
// For the async commit (D) the reply is prefixed with 'A', as dovecot's
// own dict server does (dict-commands.c, cmd_commit_finish). The id is
// echoed as received; dovecot ignores it ("obsolete trans_id") and logs
// the error.
func AppendCommitFailed(dst []byte, async bool, id, reason string) []byte {
	if async {
		dst = append(dst, 'A')
	}
	dst = append(dst, 'F')
	dst = AppendEscaped(dst, id)
	dst = append(dst, '\t')
	dst = AppendEscaped(dst, reason)
	return append(dst, '\n')
}
