package mailauth

import "errors"

// ErrBadEscape reports a '%' not followed by two hexadecimal digits.
var ErrBadEscape = errors.New("mailauth: malformed %XX escape")

// Unescape decodes nginx's percent-encoding of Auth-User, Auth-Pass and
// Auth-SSL-Cert: every "%XX" becomes the byte 0xXX and everything else,
// '+' included, is kept as is. A '%' without two hex digits after it is
// an error rather than a literal, because nginx always escapes '%' itself;
// accepting it would let two spellings decode to one password.
//
// url.QueryUnescape is wrong here ('+' would become a space) and
// url.PathUnescape is right today but documents no such guarantee, so the
// decoder is spelled out.
func Unescape(s string) (string, error) {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return "", ErrBadEscape
			}
			n++
			i += 2
		}
	}
	if n == 0 {
		return s, nil
	}
	b := make([]byte, 0, len(s)-2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			c = unhex(s[i+1])<<4 | unhex(s[i+2])
			i += 2
		}
		b = append(b, c)
	}
	return string(b), nil
}

// Escape encodes s the way nginx encodes Auth-User and Auth-Pass
// (ngx_escape_uri, NGX_ESCAPE_MAIL_AUTH: bytes 0x00-0x1F, space and '%'
// become "%XX" with upper-case hex). Tests use it to build the requests
// nginx would send.
func Escape(s string) string {
	const hex = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if needsEscape(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsEscape(c) {
			b = append(b, '%', hex[c>>4], hex[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

func needsEscape(c byte) bool { return c < 0x20 || c == ' ' || c == '%' }

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}
