// Package sasl is the server side of the dovecot auth protocol as
// postfix's smtpd speaks it for SMTP AUTH (smtpd_sasl_type = dovecot;
// src/xsasl/xsasl_dovecot_server.c; the protocol is described at
// https://doc.dovecot.org/2.3/developer_manual/design/auth_protocol/).
// See PROTOCOLS.md §8 for what was verified against postfix 3.7 and 3.10.
//
// The server sends its handshake as soon as a client connects, reads the
// client's VERSION and CPID lines, then AUTH and CONT requests, and runs
// the PLAIN and LOGIN exchanges itself: the Handler only ever sees a user
// name and a password. A temporary failure closes the connection without
// a reply, which postfix turns into "454 4.7.0 Temporary authentication
// failure"; a FAIL reply would be a permanent 535.
//
// The codec is pure; Server owns sockets and goroutines. Neither knows
// about the backend.
package sasl

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// MaxLine bounds one client line, newline excluded (issue #17: 8 KiB).
// Postfix's longest is an AUTH with a base64 initial response, which
// smtpd itself bounds by line_length_limit (2048 by default).
const MaxLine = 8 << 10

// Protocol violations: the connection is closed after any of them.
var (
	ErrLineTooLong = errors.New("sasl: line too long")
	ErrBadLine     = errors.New("sasl: malformed line")
	ErrBadVersion  = errors.New("sasl: unsupported protocol version")
	ErrNoVersion   = errors.New("sasl: request before the VERSION line")
	ErrDuplicateID = errors.New("sasl: request id already in use")
)

// Line kinds a client sends.
const (
	cmdVersion = "VERSION"
	cmdCPID    = "CPID"
	cmdAuth    = "AUTH"
	cmdCont    = "CONT"
)

// clientLine is one parsed client line.
type clientLine struct {
	cmd string
	// id is the request id of AUTH and CONT, kept as sent: postfix's
	// ids are a per-process counter, echoed back verbatim.
	id string
	// VERSION: major; AUTH: the mechanism as typed; CONT: the base64 data.
	arg string
	// AUTH parameters.
	params authParams
}

// authParams are the AUTH parameters shitenno uses. Others (nologin,
// session=, and those later dovecot releases add) are ignored.
type authParams struct {
	service, localIP, clientIP string
	secured                    bool
	// resp is the base64 initial response; hasResp tells "resp=" (an
	// empty initial response, the client sent "=") from no resp at all.
	resp    string
	hasResp bool
}

// parseLine parses one line without its newline.
//
// Complexity: one case per command and AUTH parameter of the protocol.
func parseLine(line []byte) (clientLine, error) {
	if bytes.IndexByte(line, 0) >= 0 {
		return clientLine{}, ErrBadLine
	}
	fields := strings.Split(string(bytes.TrimSuffix(line, []byte{'\r'})), "\t")
	l := clientLine{cmd: fields[0]}
	switch l.cmd {
	case cmdVersion:
		if len(fields) < 2 {
			return l, ErrBadLine
		}
		l.arg = fields[1]
	case cmdCPID:
		// The smtpd process id: informational only.
	case cmdAuth:
		if len(fields) < 3 || !validID(fields[1]) || fields[2] == "" {
			return l, ErrBadLine
		}
		l.id, l.arg = fields[1], fields[2]
		for _, f := range fields[3:] {
			name, value, _ := strings.Cut(f, "=")
			value = unescape(value)
			switch name {
			case "service":
				l.params.service = value
			case "lip":
				l.params.localIP = value
			case "rip":
				l.params.clientIP = value
			case "secured":
				l.params.secured = true
			case "resp":
				l.params.resp, l.params.hasResp = value, true
			}
		}
	case cmdCont:
		if len(fields) < 2 || !validID(fields[1]) {
			return l, ErrBadLine
		}
		l.id = fields[1]
		if len(fields) > 2 {
			l.arg = fields[2]
		}
	default:
		// Dovecot ignores unknown commands from a compatible client
		// version; so does shitenno.
	}
	return l, nil
}

// validID accepts the unsigned decimal ids clients send.
func validID(s string) bool {
	if s == "" || len(s) > 10 {
		return false
	}
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}

// checkVersion accepts major version 1, as dovecot does; the minor
// version is informational.
func checkVersion(major string) error {
	if major != "1" {
		return ErrBadVersion
	}
	return nil
}

// unescape undoes dovecot's str_tabescape (\001 followed by 1, t, r or n
// for \001, tab, CR and LF). Postfix never escapes (its values are IP
// addresses, a service name and base64), but other clients may.
func unescape(s string) string {
	if strings.IndexByte(s, 1) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 1 && i+1 < len(s) {
			i++
			switch s[i] {
			case '1':
				c = 1
			case 't':
				c = '\t'
			case 'r':
				c = '\r'
			case 'n':
				c = '\n'
			default:
				c = s[i]
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Mechanism names the server can run.
const (
	MechPLAIN = "PLAIN"
	MechLOGIN = "LOGIN"
)

// appendHandshake appends the server handshake in dovecot's order:
// VERSION, every MECH, then SPID, CUID, COOKIE and DONE. Postfix refuses
// an SPID before the first MECH ("connected to wrong auth socket") and
// takes the mechanism list to be complete at DONE. Both mechanisms carry
// the plaintext flag, so smtpd_sasl_security_options = noplaintext filters
// them out, as it should: the password crosses the SMTP session.
func appendHandshake(dst []byte, mechs []string, pid, cuid int, cookie string) []byte {
	dst = append(dst, "VERSION\t1\t2\n"...)
	for _, m := range mechs {
		dst = append(dst, "MECH\t"...)
		dst = append(dst, m...)
		dst = append(dst, "\tplaintext\n"...)
	}
	dst = append(dst, "SPID\t"...)
	dst = strconv.AppendInt(dst, int64(pid), 10)
	dst = append(dst, "\nCUID\t"...)
	dst = strconv.AppendInt(dst, int64(cuid), 10)
	dst = append(dst, "\nCOOKIE\t"...)
	dst = append(dst, cookie...)
	return append(dst, "\nDONE\n"...)
}

// appendOK appends "OK\t<id>\tuser=<user>". Postfix needs user= (without
// it: 535 "Authentication backend error") and uses that name, not the
// one the client typed, as sasl_username.
func appendOK(dst []byte, id, user string) []byte {
	dst = append(dst, "OK\t"...)
	dst = append(dst, id...)
	dst = append(dst, "\tuser="...)
	dst = append(dst, user...)
	return append(dst, '\n')
}

// appendFail appends "FAIL\t<id>[\tuser=<user>]\treason=<reason>". The
// reason reaches the SMTP client verbatim after "535 5.7.8 Error:
// authentication failed: ". user is left out when it is not one
// printable line (it would break the line protocol).
func appendFail(dst []byte, id, user, reason string) []byte {
	dst = append(dst, "FAIL\t"...)
	dst = append(dst, id...)
	if user != "" && Printable(user) {
		dst = append(dst, "\tuser="...)
		dst = append(dst, user...)
	}
	if reason != "" && Printable(reason) {
		dst = append(dst, "\treason="...)
		dst = append(dst, reason...)
	}
	return append(dst, '\n')
}

// appendCont appends "CONT\t<id>\t<base64 challenge>"; an empty challenge
// is sent as an empty field, which postfix shows as "334 ".
func appendCont(dst []byte, id, challenge string) []byte {
	dst = append(dst, "CONT\t"...)
	dst = append(dst, id...)
	dst = append(dst, '\t')
	dst = append(dst, challenge...)
	return append(dst, '\n')
}

// Printable reports whether s can be sent as a protocol value: no control
// bytes (tab and newline would split the line), no DEL.
func Printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}
