package mailauth

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
)

// Texts and codes of the replies shitenno's contract defines.
const (
	// StatusOK is the Auth-Status keyword for a successful login.
	StatusOK = "OK"
	// StatusDenied is the default Auth-Status of a refused login.
	StatusDenied = "Invalid login or password"
	// StatusTempFail is the Auth-Status of a backend failure. It must never
	// read like a wrong password: the client should retry, not give up.
	StatusTempFail = "Temporary server problem, try again later"
	// CodeDenied is the default SMTP Auth-Error-Code of a refused login
	// (RFC 4954 535, RFC 3463 5.7.8 "authentication credentials invalid").
	CodeDenied = "535 5.7.8"
	// CodeTempFail is the SMTP Auth-Error-Code of a backend failure
	// (451, RFC 3463 4.3.0 "other or undefined mail system status").
	CodeTempFail = "451 4.3.0"
	// DefaultWait is the default Auth-Wait of a non-OK reply, in seconds.
	DefaultWait = 3
	// MaxWait bounds Auth-Wait: nginx holds the client for that long.
	MaxWait = 300
	// MaxWaitAttempts is the Auth-Login-Attempt from which a non-OK reply
	// carries no Auth-Wait, so nginx answers and closes the session. nginx
	// allocates memory for every attempt until the session ends; its
	// documentation recommends stopping Auth-Wait after 10-20 attempts.
	MaxWaitAttempts = 10
	// MaxReplyBytes bounds the Auth-* header lines of a reply. nginx reads
	// the status line and every header into one 1024-byte buffer
	// (ngx_mail_auth_http_read_handler) and never answers the client if
	// they do not fit. net/http adds about 60 bytes of its own (status
	// line, Content-Length, Connection); behind an http{} proxy_pass,
	// nginx's proxy replaces them with about 120 (Server, Date, ...), and
	// at 960 bytes that form already failed in the e2e tests. 800 leaves
	// room for longer Server strings and an added header or two.
	MaxReplyBytes = 800
)

// ErrBadReply reports a Reply that nginx could not receive intact.
var ErrBadReply = errors.New("mailauth: invalid reply")

// Reply is the answer to one auth_http request.
type Reply struct {
	// Status is StatusOK or the message nginx shows the client (IMAP
	// "<tag> NO <Status>", POP3 "-ERR <Status>", SMTP
	// "<ErrorCode> <Status>").
	Status string
	// Server and Port are where nginx proxies the session; required with
	// StatusOK. nginx only accepts an IP address here.
	Server netip.Addr
	Port   int
	// User and Pass, when not empty, replace the credentials nginx uses
	// towards Server. Pass is required with StatusOK when the client
	// authenticated with apop or cram-md5 (nginx only has a digest).
	User string
	Pass Secret
	// Wait is Auth-Wait in seconds for a non-OK reply: nginx holds the
	// error that long and keeps the session open for another attempt.
	// 0 sends no Auth-Wait: nginx answers at once and closes.
	Wait int
	// ErrorCode is the SMTP reply code and enhanced status code put before
	// Status, e.g. "535 5.7.8"; ignored for IMAP and POP3.
	ErrorCode string
}

// Denied is the default refusal for req: Auth-Wait DefaultWait and, for
// SMTP, CodeDenied.
func Denied(req *Request) Reply {
	r := Reply{Status: StatusDenied, Wait: DefaultWait}
	if req != nil && req.Protocol == "smtp" {
		r.ErrorCode = CodeDenied
	}
	return r
}

// TempFail is the reply to a backend failure: StatusTempFail, Auth-Wait
// DefaultWait and, for SMTP, CodeTempFail. req may be nil when the request
// itself could not be parsed.
func TempFail(req *Request) Reply {
	r := Reply{Status: StatusTempFail, Wait: DefaultWait}
	if req == nil {
		r.Wait = 0
	} else if req.Protocol == "smtp" {
		r.ErrorCode = CodeTempFail
	}
	return r
}

// Validate reports whether r can be sent to nginx as the answer to req
// (ErrBadReply when not). HTTPHandler checks every reply anyway and sends
// TempFail instead of an invalid one; a Handler calls Validate to classify
// such a reply as its own failure.
func (r Reply) Validate(req *Request) error {
	_, err := r.fields(req)
	return err
}

// field is one response header line.
type field struct{ name, value string }

// fields checks r and returns its header lines, adjusted for req: Auth-Wait
// is dropped from attempt MaxWaitAttempts on and for the apop and cram-md5
// methods (nginx 1.22.1 without the CVE-2026-27651 fix crashes a worker
// when such a session retries after Auth-Wait), and Auth-Error-Code is
// only sent for SMTP.
//
// Complexity: one branch per nginx header rule, kept flat so each rule
// reads next to the nginx behaviour it follows.
func (r Reply) fields(req *Request) ([]field, error) {
	if err := checkValue("Auth-Status", r.Status); err != nil {
		return nil, err
	}
	if r.Status == "" || r.Status == "WAIT" {
		return nil, fmt.Errorf("%w: Auth-Status %q", ErrBadReply, r.Status)
	}
	f := make([]field, 0, 5)
	f = append(f, field{"Auth-Status", r.Status})
	if r.Status == StatusOK {
		if !r.Server.IsValid() || r.Server.Zone() != "" {
			// ngx_parse_addr takes neither host names nor IPv6 zones.
			return nil, fmt.Errorf("%w: Auth-Server is not an IP address", ErrBadReply)
		}
		if r.Port < 1 || r.Port > 65535 {
			return nil, fmt.Errorf("%w: Auth-Port %d out of range", ErrBadReply, r.Port)
		}
		f = append(f, field{"Auth-Server", r.Server.Unmap().String()}, field{"Auth-Port", strconv.Itoa(r.Port)})
		if r.User != "" {
			if err := checkValue("Auth-User", r.User); err != nil {
				return nil, err
			}
			f = append(f, field{"Auth-User", r.User})
		}
		if r.Pass != "" {
			if err := checkValue("Auth-Pass", string(r.Pass)); err != nil {
				return nil, err
			}
			f = append(f, field{"Auth-Pass", string(r.Pass)})
		}
		return f, checkSize(f)
	}
	if r.Wait < 0 || r.Wait > MaxWait {
		return nil, fmt.Errorf("%w: Auth-Wait %d not in 0..%d", ErrBadReply, r.Wait, MaxWait)
	}
	wait := r.Wait
	if req == nil || req.Attempt >= MaxWaitAttempts || req.Method == "apop" || req.Method == "cram-md5" {
		wait = 0
	}
	if wait > 0 {
		f = append(f, field{"Auth-Wait", strconv.Itoa(wait)})
	}
	if r.ErrorCode != "" && req != nil && req.Protocol == "smtp" {
		if !ValidErrorCode(r.ErrorCode) {
			return nil, fmt.Errorf("%w: Auth-Error-Code %q", ErrBadReply, r.ErrorCode)
		}
		f = append(f, field{"Auth-Error-Code", r.ErrorCode})
	}
	return f, checkSize(f)
}

// checkValue refuses what nginx cannot receive in a header value: control
// bytes other than an inner TAB (CR or LF would end the header and let the
// backend inject others; NUL truncates), DEL, and leading or trailing
// blanks, which nginx's header parser strips.
func checkValue(name, v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return fmt.Errorf("%w: %s contains a control byte", ErrBadReply, name)
		}
	}
	if v != "" && (isBlank(v[0]) || isBlank(v[len(v)-1])) {
		return fmt.Errorf("%w: %s has leading or trailing blanks", ErrBadReply, name)
	}
	return nil
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

func checkSize(f []field) error {
	n := 0
	for _, x := range f {
		n += len(x.name) + len(x.value) + 4 // ": " and CRLF
	}
	if n > MaxReplyBytes {
		return fmt.Errorf("%w: %d header bytes exceed nginx's limit", ErrBadReply, n)
	}
	return nil
}

// ValidErrorCode reports whether s is an SMTP failure code nginx can put
// before Auth-Status: a 4xx or 5xx reply code, optionally followed by a
// space and an RFC 3463 enhanced status code of the same class. A 2xx or
// 3xx code would tell an SMTP client that a refused login succeeded.
//
// Complexity: a hand-written matcher of "[45]xx[ X.Y.Z]"; a regexp would
// allocate on every reply.
func ValidErrorCode(s string) bool {
	if len(s) < 3 || (s[0] != '4' && s[0] != '5') || !isDigit(s[1]) || !isDigit(s[2]) {
		return false
	}
	if len(s) == 3 {
		return true
	}
	e := s[3:]
	if len(e) < 6 || e[0] != ' ' || e[1] != s[0] || e[2] != '.' {
		return false
	}
	// subject "." detail, each 1-3 digits
	parts := 0
	digits := 0
	for i := 3; i < len(e); i++ {
		switch c := e[i]; {
		case isDigit(c):
			digits++
			if digits > 3 {
				return false
			}
		case c == '.' && digits > 0 && parts == 0:
			parts, digits = 1, 0
		default:
			return false
		}
	}
	return parts == 1 && digits > 0
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// write sends r as the response to req: the HTTP status code (nginx
// ignores it; it only helps someone reading a capture), the Auth-*
// headers, no body. Header names are set in the
// map directly so that they keep nginx's spelling.
func (r Reply) write(w http.ResponseWriter, req *Request, code int) error {
	f, err := r.fields(req)
	if err != nil {
		return err
	}
	h := w.Header()
	h["Date"] = nil // saves 37 of nginx's 1024 bytes
	for _, x := range f {
		h[x.name] = []string{x.value}
	}
	w.WriteHeader(code)
	return nil
}
