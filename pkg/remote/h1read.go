package remote

// The response side of the in-goroutine HTTP/1.1 client (h1.go): the
// status line and header fields, then the body's framing. Everything a
// backend sends is bounded and checked, and nothing of it is echoed into
// error texts. Where RFC 9112 lets a client choose between recovering and
// refusing, this refuses: a backend speaks plain HTTP/1.1, and an odd
// reply is more likely an attack or a broken proxy than a dialect.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
)

const (
	// h1MaxHead bounds the bytes of a response head, the 1xx heads before
	// it included (net/http allows 10 MB; a backend's reply head is a few
	// hundred bytes).
	h1MaxHead = 64 << 10
	// h1MaxFields bounds the header fields of one head.
	h1MaxFields = 128
	// h1Max1xx bounds the informational responses before the final one,
	// as net/http does (transport.go, max1xxResponses).
	h1Max1xx = 5
	// h1MaxChunkLine bounds a chunk-size line, extensions included
	// (net/http/internal/chunked.go, maxLineLength).
	h1MaxChunkLine = 4096
)

// h1Error is a reply that is not acceptable HTTP/1.1. Its text never
// quotes the reply.
type h1Error string

func (e h1Error) Error() string { return "malformed HTTP response: " + string(e) }

// The ways a reply can be refused.
var (
	errH1Head      error = h1Error("head larger than 64 KiB or over 128 fields")
	errH1Status    error = h1Error("bad status line")
	errH1Field     error = h1Error("bad header field")
	errH1Fold      error = h1Error("folded header field")
	errH1Length    error = h1Error("bad Content-Length")
	errH1TE        error = h1Error("unsupported Transfer-Encoding")
	errH1Framing   error = h1Error("both Content-Length and Transfer-Encoding")
	errH1Chunk     error = h1Error("malformed chunked encoding")
	errH1ChunkJunk error = h1Error("chunked encoding contains too much non-data")
	errH1Too1xx    error = h1Error("too many 1xx informational responses")
)

// Body framings.
const (
	bodyNone    = iota // no body (1xx, 204, 304)
	bodyLength         // Content-Length bytes
	bodyChunked        // chunked transfer coding
	bodyEOF            // until the backend closes the connection
)

// h1Head is what the client keeps of a response head.
type h1Head struct {
	status  int
	minor   int // HTTP/1.minor
	framing int
	length  int64 // for bodyLength
	close   bool  // the connection cannot carry another request
	gzip    bool  // Content-Encoding: gzip
	// header holds the fields the cache reads (parseCachePolicy), keyed
	// canonically; nil when there were none.
	header http.Header
}

// headReader reads the lines of heads within one byte budget.
type headReader struct {
	br     *bufio.Reader
	budget int
	// scratch joins a line longer than br's buffer.
	scratch []byte
	// crlf refuses a line ended by a bare LF (chunked trailers, as
	// net/http's readTrailer, which looks for CRLF CRLF).
	crlf bool
}

// line returns the next line without its LF or CRLF, valid until the
// next read.
func (r *headReader) line() ([]byte, error) {
	var long []byte
	for {
		frag, err := r.br.ReadSlice('\n')
		r.budget -= len(frag)
		if r.budget < 0 {
			return nil, errH1Head
		}
		switch {
		case err == bufio.ErrBufferFull:
			if long == nil {
				long = r.scratch[:0]
			}
			long = append(long, frag...)
			r.scratch = long
			continue
		case err != nil:
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if long != nil {
			frag = append(long, frag...)
			r.scratch = frag
		}
		frag = frag[:len(frag)-1]
		if n := len(frag); n > 0 && frag[n-1] == '\r' {
			frag = frag[:n-1]
		} else if r.crlf {
			return nil, errH1Chunk
		}
		return frag, nil
	}
}

// readHead reads a final response head, skipping up to h1Max1xx
// informational ones as net/http's transport does (101 Switching
// Protocols is final: it ends the connection). hdr is reused for the
// cache's fields.
func readHead(r *headReader, hdr http.Header) (h1Head, error) {
	for n := 0; ; n++ {
		h, err := readOneHead(r, hdr)
		if err != nil {
			return h1Head{}, err
		}
		if h.status >= 200 || h.status == http.StatusSwitchingProtocols {
			return h, nil
		}
		if n == h1Max1xx-1 {
			return h1Head{}, errH1Too1xx
		}
	}
}

// readOneHead reads one status line and its header fields.
func readOneHead(r *headReader, hdr http.Header) (h1Head, error) {
	line, err := r.line()
	if err != nil {
		return h1Head{}, err
	}
	h := h1Head{header: hdr}
	if h.minor, h.status, err = parseStatusLine(line); err != nil {
		return h1Head{}, err
	}
	clear(hdr)
	var f headFields
	for fields := 0; ; fields++ {
		line, err := r.line()
		if err != nil {
			return h1Head{}, err
		}
		if len(line) == 0 {
			break
		}
		if fields == h1MaxFields {
			return h1Head{}, errH1Head
		}
		if err := f.add(line, hdr); err != nil {
			return h1Head{}, err
		}
	}
	if err := h.frame(&f); err != nil {
		return h1Head{}, err
	}
	if len(hdr) == 0 {
		h.header = nil
	}
	return h, nil
}

// parseStatusLine parses "HTTP/1.x SP 3DIGIT [SP reason]" (RFC 9112
// §4). Only HTTP/1.0 and 1.1 are accepted, and codes 100 to 599
// (RFC 9110 §15); the reason phrase is ignored.
func parseStatusLine(line []byte) (minor, status int, err error) {
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return 0, 0, errH1Status
	}
	switch line[7] {
	case '0':
	case '1':
		minor = 1
	default:
		return 0, 0, errH1Status
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, 0, errH1Status
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 || status > 599 || !fieldText(line[12:]) {
		return 0, 0, errH1Status
	}
	return minor, status, nil
}

// fieldText reports whether b holds no control byte but HTAB (RFC 9110
// §5.5 field-vchar, SP, HTAB and obs-text), as a field value, reason
// phrase or chunk extension must.
func fieldText(b []byte) bool {
	for _, c := range b {
		if c != '\t' && (c < ' ' || c == 0x7f) {
			return false
		}
	}
	return true
}

// headFields gathers the framing fields of one head.
type headFields struct {
	length    int64 // -1 until a Content-Length
	haveLen   bool
	te        int // Transfer-Encoding fields seen
	chunked   bool
	close     bool
	keepAlive bool
	gzip      bool
	encoding  bool // a Content-Encoding field was seen
}

// cacheFields are the header fields parseCachePolicy reads, in their
// canonical spelling.
var cacheFields = [...]string{"Cache-Control", "Expires", "Date", "Age"}

// add checks one "name: value" line (RFC 9110 §5.1, §5.5: a token, no
// space before the colon, no control byte but HTAB in the value) and
// notes what it says.
func (f *headFields) add(line []byte, hdr http.Header) error {
	name, value, err := splitField(line)
	if err != nil {
		return err
	}
	switch {
	case bytes.EqualFold(name, []byte("Content-Length")):
		return f.contentLength(value)
	case bytes.EqualFold(name, []byte("Transfer-Encoding")):
		f.te++
		f.chunked = bytes.EqualFold(value, []byte("chunked"))
	case bytes.EqualFold(name, []byte("Connection")):
		f.connection(value)
	case bytes.EqualFold(name, []byte("Content-Encoding")):
		if !f.encoding {
			f.encoding, f.gzip = true, bytes.EqualFold(value, []byte("gzip"))
		}
	default:
		for _, k := range cacheFields {
			if bytes.EqualFold(name, []byte(k)) {
				hdr[k] = append(hdr[k], string(value))
			}
		}
	}
	return nil
}

// splitField checks a field line and splits it into name and value.
func splitField(line []byte) (name, value []byte, err error) {
	if line[0] == ' ' || line[0] == '\t' {
		// obs-fold (RFC 9112 §5.2): refused rather than unfolded.
		return nil, nil, errH1Fold
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, nil, errH1Field
	}
	name, value = line[:colon], bytes.Trim(line[colon+1:], " \t")
	for _, c := range name {
		if !isTokenByte(c) {
			return nil, nil, errH1Field
		}
	}
	if !fieldText(value) {
		return nil, nil, errH1Field
	}
	return name, value, nil
}

// contentLength notes a Content-Length: digits only, and repeated fields
// must agree (RFC 9110 §8.6; net/http's fixLength).
func (f *headFields) contentLength(v []byte) error {
	if len(v) == 0 || len(v) > 18 {
		return errH1Length
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return errH1Length
		}
		n = n*10 + int64(c-'0')
	}
	if f.haveLen && n != f.length {
		return errH1Length
	}
	f.length, f.haveLen = n, true
	return nil
}

// connection notes the close and keep-alive options of a Connection
// field (a comma-separated token list).
func (f *headFields) connection(v []byte) {
	for len(v) > 0 {
		var tok []byte
		tok, v, _ = bytes.Cut(v, []byte(","))
		tok = bytes.Trim(tok, " \t")
		switch {
		case bytes.EqualFold(tok, []byte("close")):
			f.close = true
		case bytes.EqualFold(tok, []byte("keep-alive")):
			f.keepAlive = true
		}
	}
}

// frame decides the body's framing (RFC 9112 §6.3) and whether the
// connection may carry another request (net/http's shouldClose: HTTP/1.1
// unless "close", HTTP/1.0 only with "keep-alive").
func (h *h1Head) frame(f *headFields) error {
	h.close = f.close || (h.minor == 0 && !f.keepAlive)
	h.gzip = f.gzip
	if f.te > 1 || (f.te == 1 && (!f.chunked || h.minor == 0)) {
		// One field, "chunked", HTTP/1.1 only: as strict as net/http's
		// parseTransferEncoding (which ignores it in HTTP/1.0), and, as
		// there, whatever the status: a 1xx, 204 or 304 with another
		// coding is refused too.
		return errH1TE
	}
	if h.status < 200 || h.status == 204 || h.status == 304 {
		// No body, whatever the fields say (RFC 9112 §6.3 items 1-2).
		h.framing = bodyNone
		h.close = h.close || h.status == http.StatusSwitchingProtocols
		return nil
	}
	switch {
	case f.te > 0 && f.haveLen:
		// RFC 9112 §6.3 item 3: "ought to be handled as an error";
		// net/http lets chunked win, this refuses the reply.
		return errH1Framing
	case f.te == 1:
		h.framing = bodyChunked
	case f.haveLen:
		h.framing, h.length = bodyLength, f.length
	default:
		h.framing, h.close = bodyEOF, true
	}
	return nil
}

// isTokenByte reports whether c is a tchar (RFC 9110 §5.6.2).
func isTokenByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// h1Body reads a response body in its framing from the connection's
// buffer. Closing it hands the connection back (h1Conn.release), for
// reuse only when the body was read to its end.
type h1Body struct {
	pc      *h1Conn
	framing int
	left    int64 // of the Content-Length body, or of the current chunk
	done    bool  // read to the end: the connection is at a message boundary
	err     error // sticky
	closed  bool
	// chunk state: inChunk is set between a chunk's size line and the
	// CRLF after its data; excess counts framing bytes beyond what the
	// data justify.
	inChunk bool
	excess  int64
}

// reset prepares b for a response with head h.
func (b *h1Body) reset(h *h1Head) {
	*b = h1Body{pc: b.pc, framing: h.framing, left: h.length}
	if h.framing == bodyNone || (h.framing == bodyLength && h.length == 0) {
		b.done = true
	}
}

// Read implements io.Reader.
func (b *h1Body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	var n int
	var err error
	switch b.framing {
	case bodyLength:
		n, err = b.readLength(p)
	case bodyChunked:
		n, err = b.readChunked(p)
	default:
		n, err = b.pc.br.Read(p)
		if err == io.EOF {
			b.done = true
		}
	}
	if err != nil && err != io.EOF {
		err = b.pc.bodyError(err)
		b.err = err
		return n, err
	}
	return n, err
}

func (b *h1Body) readLength(p []byte) (int, error) {
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.pc.br.Read(p)
	b.left -= int64(n)
	if b.left == 0 {
		b.done = true
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *h1Body) readChunked(p []byte) (int, error) {
	for b.left == 0 {
		if err := b.nextChunk(); err != nil {
			return 0, err
		}
		if b.done {
			return 0, io.EOF
		}
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.pc.br.Read(p)
	b.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// nextChunk reads the CRLF ending the previous chunk's data, then the
// next chunk-size line; after the last chunk, the trailer fields (read
// and dropped, within the head budget).
func (b *h1Body) nextChunk() error {
	br := b.pc.br
	if b.inChunk {
		crlf, err := br.Peek(2)
		if err != nil {
			return eofUnexpected(err)
		}
		if crlf[0] != '\r' || crlf[1] != '\n' {
			return errH1Chunk
		}
		_, _ = br.Discard(2)
		b.inChunk = false
	}
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull || len(line) > h1MaxChunkLine {
		return errH1Chunk
	}
	if err != nil {
		return eofUnexpected(err)
	}
	size, err := parseChunkSize(line)
	if err != nil {
		return err
	}
	// net/http's rule (internal/chunked.go): 16 bytes of framing per
	// chunk plus twice its data are fine, more than 16 KiB beyond that is
	// a backend wasting our time.
	b.excess = max(b.excess+int64(len(line))+2-16-2*size, 0)
	if b.excess > 16<<10 {
		return errH1ChunkJunk
	}
	if size == 0 {
		return b.trailer()
	}
	b.left, b.inChunk = size, true
	return nil
}

// trailer reads the trailer section after the last chunk.
func (b *h1Body) trailer() error {
	r := headReader{br: b.pc.br, budget: h1MaxHead, crlf: true}
	for fields := 0; ; fields++ {
		line, err := r.line()
		if err != nil {
			return err
		}
		if len(line) == 0 {
			b.done = true
			return nil
		}
		if fields == h1MaxFields {
			return errH1Head
		}
		if _, _, err := splitField(line); err != nil {
			return err
		}
	}
}

// parseChunkSize parses "1*HEXDIG [ext] [OWS] CRLF" (RFC 9112 §7.1; a
// bare LF or a CR elsewhere is refused, as net/http does after RFC 9112
// erratum 7633); extensions are skipped, and sizes are bounded to what
// fits an int64 with room (15 hex digits).
func parseChunkSize(line []byte) (int64, error) {
	if len(line) < 2 || bytes.IndexByte(line, '\r') != len(line)-2 {
		return 0, errH1Chunk
	}
	line = bytes.TrimRight(line[:len(line)-2], " \t")
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		if !fieldText(line[i:]) {
			return 0, errH1Chunk
		}
		line = bytes.TrimRight(line[:i], " \t")
	}
	if len(line) == 0 || len(line) > 15 {
		return 0, errH1Chunk
	}
	var n int64
	for _, c := range line {
		d, ok := hexDigit(c)
		if !ok {
			return 0, errH1Chunk
		}
		n = n<<4 | int64(d)
	}
	return n, nil
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func eofUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Close implements io.Closer: it hands the connection back.
func (b *h1Body) Close() error {
	if !b.closed {
		b.closed = true
		b.pc.release(b.done && b.err == nil)
	}
	return nil
}

// h1Gzip decodes a gzip-encoded body, as net/http's transport does for
// the Accept-Encoding: gzip it adds to requests.
type h1Gzip struct {
	body *h1Body
	zr   *gzip.Reader
	err  error
}

// Read implements io.Reader.
func (g *h1Gzip) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	if g.zr == nil {
		zr, err := gzip.NewReader(g.body)
		if err != nil {
			g.err = eofUnexpected(err)
			return 0, g.err
		}
		g.zr = zr
	}
	return g.zr.Read(p)
}

// Close implements io.Closer.
func (g *h1Gzip) Close() error { return g.body.Close() }
