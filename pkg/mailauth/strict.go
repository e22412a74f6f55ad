package mailauth

import (
	"errors"
	"net"
	"sync"
)

// Framing errors found by the strict reader. net/http answers each with
// "400 Bad Request" and closes the connection.
var (
	errBareLF  = errors.New("mailauth: LF without CR in a request head")
	errBareCR  = errors.New("mailauth: CR not followed by LF in a request head")
	errObsFold = errors.New("mailauth: folded header line (obs-fold) in a request head")
)

// Serve accepts auth_http connections on l until Shutdown or Close; it
// then returns http.ErrServerClosed.
//
// A control byte (other than HTAB) or DEL inside a header line, which
// net/http would answer with a bare 400 and no Auth-Status, reaches it as
// "%XX" instead: nginx percent-escapes bytes below 0x20 in Auth-User and
// Auth-Pass but sends DEL raw, and a client may type one. In those
// escaped headers the value then decodes to the very bytes sent, so the
// backend judges the credential; in the others it reads as the text
// "%7F".
//
// Every request head is checked byte by byte before net/http parses it:
// a bare LF, a bare CR or a folded header line (obs-fold) ends the
// connection with 400 Bad Request. RFC 9112 lets a server accept these
// (§2.2, §5.2), and net/http does; but nginx never sends them (it builds
// the request itself and escapes control bytes in every client-supplied
// value), so they can only come from something else on the socket, and
// two parsers that disagree about where a header ends are what request
// smuggling is made of. Bodies, the other half of smuggling, are refused
// by HTTPHandler.
func (s *Server) Serve(l net.Listener) error {
	return s.hs.Serve(strictListener{l})
}

type strictListener struct{ net.Listener }

func (l strictListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &strictConn{Conn: c, requestLine: true}, nil
}

// strictConn checks the bytes net/http reads. Requests carry no body (a
// request with one is refused and the connection closed), so everything
// read is a sequence of request heads: lines ending in CRLF, an empty
// line ending each head.
type strictConn struct {
	net.Conn

	// mu guards the scanner: net/http's background read and a handler's
	// body read never overlap, but the race detector cannot know that.
	mu          sync.Mutex
	bad         error // the first framing error, returned from then on
	cr          bool  // the previous byte was CR
	lineLen     int   // bytes on the current line so far
	requestLine bool  // the current line is a request line
	// pending holds escaped bytes that did not fit the caller's buffer.
	pending []byte
}

func (c *strictConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		c.mu.Unlock()
		return n, nil
	}
	bad := c.bad
	c.mu.Unlock()
	if bad != nil {
		return 0, bad
	}
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	i, bad := c.scan(p[:n])
	if bad != nil {
		c.bad = bad
		if i == 0 {
			return 0, bad
		}
		// Hand over what came before the fault; the next Read fails.
		err = nil
	}
	return c.escape(p, i), err
}

// escape rewrites the refused bytes among p[:n] (already scanned) as %XX,
// keeping in c.pending what does not fit p, and returns the count in p.
func (c *strictConn) escape(p []byte, n int) int {
	k := 0
	for _, x := range p[:n] {
		if refused(x) {
			k++
		}
	}
	if k == 0 {
		return n
	}
	const hex = "0123456789ABCDEF"
	out := make([]byte, 0, n+2*k)
	for _, x := range p[:n] {
		if refused(x) {
			out = append(out, '%', hex[x>>4], hex[x&0xf])
			continue
		}
		out = append(out, x)
	}
	m := copy(p, out)
	c.pending = out[m:]
	return m
}

// refused reports whether net/http refuses byte x in a header line: a
// control byte other than HTAB, or DEL. CR and LF are the framing, which
// scan checks.
func refused(x byte) bool {
	return (x < 0x20 && x != '\t' && x != '\r' && x != '\n') || x == 0x7f
}

// scan advances the line state over b; on a framing fault it returns the
// offset of the offending byte and the error.
func (c *strictConn) scan(b []byte) (int, error) {
	for i, x := range b {
		if c.cr {
			if x != '\n' {
				return i, errBareCR
			}
			c.cr = false
			// An empty line ends a head; the next line is a request line
			// (empty lines before a request line are tolerated, RFC 9112
			// §2.2, as net/http does).
			c.requestLine = c.lineLen == 0
			c.lineLen = 0
			continue
		}
		switch x {
		case '\r':
			c.cr = true
		case '\n':
			return i, errBareLF
		case ' ', '\t':
			if c.lineLen == 0 && !c.requestLine {
				return i, errObsFold
			}
			c.lineLen++
		default:
			c.lineLen++
		}
	}
	return len(b), nil
}
