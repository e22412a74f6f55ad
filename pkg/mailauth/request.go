package mailauth

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Header names as nginx spells them. Go's net/http canonicalises incoming
// names ("Client-Ip", "Auth-Smtp-Helo", "Auth-Ssl-Verify"); Request.Fields
// uses these spellings instead, so a backend sees exactly what nginx sent.
const (
	HeaderMethod       = "Auth-Method"
	HeaderUser         = "Auth-User"
	HeaderPass         = "Auth-Pass"
	HeaderSalt         = "Auth-Salt"
	HeaderProtocol     = "Auth-Protocol"
	HeaderLoginAttempt = "Auth-Login-Attempt"
	HeaderClientIP     = "Client-IP"
	HeaderClientHost   = "Client-Host"
	HeaderSSLCert      = "Auth-SSL-Cert"
)

// requestHeaders lists every header nginx 1.22-1.26 may send that is
// forwarded to the Handler, with whether nginx percent-escapes its value
// (ngx_mail_auth_http_create_request). Anything else (Host, headers added
// with auth_http_header) is ignored.
var requestHeaders = []struct {
	name    string
	escaped bool
}{
	{HeaderMethod, false},
	{HeaderUser, true},
	{HeaderPass, true},
	{HeaderSalt, false},
	{HeaderProtocol, false},
	{HeaderLoginAttempt, false},
	{HeaderClientIP, false},
	{HeaderClientHost, false},
	{"Proxy-Protocol-Addr", false},
	{"Proxy-Protocol-Port", false},
	{"Proxy-Protocol-Server-Addr", false},
	{"Proxy-Protocol-Server-Port", false},
	{"Auth-SMTP-Helo", false},
	{"Auth-SMTP-From", false},
	{"Auth-SMTP-To", false},
	{"Auth-SSL", false},
	{"Auth-SSL-Protocol", false},
	{"Auth-SSL-Cipher", false},
	{"Auth-SSL-Verify", false},
	{"Auth-SSL-Subject", false},
	{"Auth-SSL-Issuer", false},
	{"Auth-SSL-Serial", false},
	{"Auth-SSL-Fingerprint", false},
	{HeaderSSLCert, true},
}

// canonical maps Go's canonical header key to the index in requestHeaders.
var canonical = func() map[string]int {
	m := make(map[string]int, len(requestHeaders))
	for i, h := range requestHeaders {
		m[http.CanonicalHeaderKey(h.name)] = i
	}
	return m
}()

// ErrMalformed reports a request nginx would never send: a required header
// missing, a header repeated, or a bad escape.
var ErrMalformed = errors.New("mailauth: malformed auth request")

// maxAttempt bounds Auth-Login-Attempt; nginx counts per session and a
// session cannot last long enough to exceed it.
const maxAttempt = 1 << 20

// Request is one auth_http request from nginx.
type Request struct {
	// Method is Auth-Method: plain (LOGIN, PLAIN, USER/PASS), apop,
	// cram-md5, external, or none (SMTP without AUTH).
	Method string
	// User is Auth-User, decoded. Empty when Method is none.
	User string
	// Pass is Auth-Pass, decoded (for apop and cram-md5 the client's
	// digest). Empty when Method is none.
	Pass Secret
	// Protocol is Auth-Protocol: imap, pop3 or smtp.
	Protocol string
	// Attempt is Auth-Login-Attempt, counted from 1 within a client
	// session; 0 when nginx did not send it.
	Attempt int
	// ClientIP is Client-IP.
	ClientIP string
	// Fields holds every forwarded header nginx sent except Auth-Pass,
	// keyed by nginx's spelling; Auth-User and Auth-SSL-Cert are decoded,
	// the others verbatim.
	Fields map[string]string
}

// ParseRequest reads the auth_http headers from h.
//
// With Auth-Method "none" (SMTP without AUTH) Auth-User and Auth-Pass are
// forced empty: nginx before 1.29.1 may still carry the credentials of an
// earlier failed AUTH in the same session (nginx commit 9c02c84a7), and a
// backend must not mistake them for an authenticated user.
//
// Complexity: one case per header nginx sends.
func ParseRequest(h http.Header) (*Request, error) {
	r := &Request{Fields: make(map[string]string, 8)}
	for key, vals := range h {
		i, ok := canonical[key]
		if !ok {
			continue
		}
		name := requestHeaders[i].name
		if len(vals) != 1 {
			return nil, fmt.Errorf("%w: header %s repeated", ErrMalformed, name)
		}
		v := vals[0]
		if requestHeaders[i].escaped {
			var err error
			if v, err = Unescape(v); err != nil {
				return nil, fmt.Errorf("%w: header %s: %w", ErrMalformed, name, err)
			}
		}
		if name == HeaderPass {
			r.Pass = Secret(v)
			continue
		}
		if name != HeaderUser {
			// Information fields (HELO, MAIL FROM, RCPT TO, Client-Host…)
			// are passed on even when a client put invalid UTF-8 in them:
			// each invalid byte becomes U+FFFD, as JSON would make it, so
			// logs and the backend see the same text. The credentials are
			// kept byte for byte (a Handler decides about them).
			v = replaceInvalidUTF8(v)
		}
		r.Fields[name] = v
	}
	r.Method = r.Fields[HeaderMethod]
	r.Protocol = r.Fields[HeaderProtocol]
	r.User = r.Fields[HeaderUser]
	r.ClientIP = r.Fields[HeaderClientIP]
	if !isToken(r.Method) {
		return nil, fmt.Errorf("%w: missing or invalid %s", ErrMalformed, HeaderMethod)
	}
	if !isToken(r.Protocol) {
		return nil, fmt.Errorf("%w: missing or invalid %s", ErrMalformed, HeaderProtocol)
	}
	if a, ok := r.Fields[HeaderLoginAttempt]; ok {
		n, err := strconv.Atoi(a)
		if err != nil || n < 0 || n > maxAttempt || a[0] == '+' {
			return nil, fmt.Errorf("%w: invalid %s", ErrMalformed, HeaderLoginAttempt)
		}
		r.Attempt = n
	}
	if r.Method == "none" {
		r.User, r.Pass = "", ""
		if _, ok := r.Fields[HeaderUser]; ok {
			r.Fields[HeaderUser] = ""
		}
	}
	return r, nil
}

// replaceInvalidUTF8 returns s with each byte that is not part of valid
// UTF-8 replaced by U+FFFD (encoding/json's rule).
func replaceInvalidUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// isToken reports whether s is a non-empty lower-case keyword, the form of
// every Auth-Method and Auth-Protocol value nginx sends.
func isToken(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Object returns the request as the header map a backend receives: Fields
// plus Auth-Pass (always present, as nginx always sends it; a Secret, so
// only JSON encoding reveals it).
func (r *Request) Object() map[string]any {
	m := make(map[string]any, len(r.Fields)+1)
	for k, v := range r.Fields {
		m[k] = v
	}
	m[HeaderPass] = r.Pass
	return m
}

// LogValue summarises the request for logs; the password and the client
// certificate are never included.
func (r *Request) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("protocol", r.Protocol),
		slog.String("method", r.Method),
		slog.String("user", r.User),
		slog.Int("attempt", r.Attempt),
		slog.String("client", r.ClientIP),
	)
}
