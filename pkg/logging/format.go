package logging

import (
	"encoding"
	"fmt"
	"log/slog"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// facilityMail is LOG_MAIL (RFC 5424 §6.2.1): shitenno's records explain
// postfix and dovecot lookups, so they belong next to theirs in mail.log.
const facilityMail = 2

// sdID names shitenno's SD-ELEMENT. 32473 is the documentation enterprise
// number of RFC 5612; see the package doc.
const sdID = "shitenno@32473"

// Bounds on single pieces, so one huge attribute cannot push every other
// one out of the frame.
const (
	maxMsgBytes   = 2048
	maxValueBytes = 1024
)

// header holds the per-process RFC 5424 header fields, already checked.
type header struct {
	host, app, procid string
}

func newHeader(host, app string, pid int) header {
	return header{
		host:   printUSASCII(host, 255),
		app:    printUSASCII(app, 48),
		procid: strconv.Itoa(pid),
	}
}

// printUSASCII keeps s if it is 1..max printable US-ASCII characters
// without space (RFC 5424 PRINTUSASCII), else returns the NILVALUE "-"
// after replacing what is wrong: a field is never silently emptied.
func printUSASCII(s string, n int) string {
	if s == "" {
		return "-"
	}
	b := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(b) < n; i++ {
		c := s[i]
		if c < 33 || c > 126 {
			c = '_'
		}
		b = append(b, c)
	}
	return string(b)
}

// sdName makes an attribute key a valid SD-NAME: 1..32 PRINTUSASCII
// except '=', SP, ']' and '"'.
func sdName(s string) string {
	if s == "" {
		return "_"
	}
	b := make([]byte, 0, min(len(s), 32))
	for i := 0; i < len(s) && len(b) < 32; i++ {
		c := s[i]
		if c < 33 || c > 126 || c == '=' || c == ']' || c == '"' {
			c = '_'
		}
		b = append(b, c)
	}
	return string(b)
}

// severity maps a slog level to an RFC 5424 severity.
func severity(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3 // err
	case l >= slog.LevelWarn:
		return 4 // warning
	case l >= slog.LevelInfo:
		return 6 // info
	}
	return 7 // debug
}

// formatter renders one record in one layout.
type formatter struct {
	format   Format
	hdr      header
	journald bool // text layout: "<N>" prefix, no timestamp
}

// appendRecord renders a record into dst, within maxFrame bytes (for the
// text layout, without its final newline).
func (f *formatter) appendRecord(dst []byte, t time.Time, l slog.Level, msg string, fields []field, maxFrame int) []byte {
	start := len(dst)
	switch f.format {
	case FormatRFC5424:
		return f.append5424(dst, start, t, l, msg, fields, maxFrame)
	case FormatRFC3164:
		dst = append(dst, '<')
		dst = strconv.AppendInt(dst, int64(facilityMail*8+severity(l)), 10)
		dst = append(dst, '>')
		if t.IsZero() {
			t = time.Now()
		}
		// RFC 3164 stamps are local time without a year, as syslog(3) sends.
		dst = t.Local().AppendFormat(dst, time.Stamp)
		dst = append(dst, ' ')
		dst = append(dst, f.hdr.app...)
		dst = append(dst, '[')
		dst = append(dst, f.hdr.procid...)
		dst = append(dst, "]: "...)
		dst = appendSafe(dst, msg, false, msgLimit(maxFrame-(len(dst)-start)))
		return appendTextFields(dst, start, fields, maxFrame)
	}
	if f.journald {
		// sd-daemon(3) prefix: journald stores it as PRIORITY and strips it.
		dst = append(dst, '<')
		dst = strconv.AppendInt(dst, int64(severity(l)), 10)
		dst = append(dst, '>')
	} else if !t.IsZero() {
		dst = append(dst, "time="...)
		dst = t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
		dst = append(dst, ' ')
	}
	dst = append(dst, "level="...)
	dst = append(dst, l.String()...)
	dst = append(dst, " msg="...)
	// Quoting can double the length: leave room for it.
	dst = appendQuoted(dst, truncate(msg, msgLimit((maxFrame-(len(dst)-start))/4)))
	return appendTextFields(dst, start, fields, maxFrame)
}

func (f *formatter) append5424(dst []byte, start int, t time.Time, l slog.Level, msg string, fields []field, maxFrame int) []byte {
	dst = f.append5424Header(dst, t, l, fields)
	// The message goes last on the wire. It may use up to half of the
	// room when there are attributes; structured data gets the rest, and
	// the message then takes whatever the attributes left over.
	room := maxFrame - (len(dst) - start)
	msgHead := ""
	if msg != "" {
		msgHead = " "
		if !isASCII(msg) {
			// RFC 5424 §6.4: UTF-8 text starts with a BOM; pure ASCII
			// is valid MSG-ANY and is left alone.
			msgHead = " \xEF\xBB\xBF"
		}
	}
	m := appendSafe([]byte(msgHead), msg, false, msgLimit(room-len(msgHead)-1))
	budget := room - min(len(m), room/2) - 1
	sdStart := len(dst)
	dst = appendSD(dst, fields, budget)
	if left := room - (len(dst) - sdStart); len(m) > left && msg != "" {
		m = appendSafe(m[:len(msgHead)], msg, false, msgLimit(left-len(msgHead)))
	}
	return append(dst, m...)
}

// append5424Header adds "<PRI>1 TIMESTAMP HOST APP PROCID MSGID ".
func (f *formatter) append5424Header(dst []byte, t time.Time, l slog.Level, fields []field) []byte {
	dst = append(dst, '<')
	dst = strconv.AppendInt(dst, int64(facilityMail*8+severity(l)), 10)
	dst = append(dst, ">1 "...)
	if t.IsZero() {
		dst = append(dst, '-')
	} else {
		// RFC 5424 §6.2.3: at most 6 fraction digits.
		dst = t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000Z07:00")
	}
	dst = append(dst, ' ')
	dst = append(dst, f.hdr.host...)
	dst = append(dst, ' ')
	dst = append(dst, f.hdr.app...)
	dst = append(dst, ' ')
	dst = append(dst, f.hdr.procid...)
	dst = append(dst, ' ')
	msgid := "-"
	for _, fl := range fields {
		if fl.key == MsgIDKey {
			msgid = printUSASCII(valueString(fl.val), 32)
			break
		}
	}
	dst = append(dst, msgid...)
	return append(dst, ' ')
}

// appendSD adds the attributes (msgid aside) as one SD-ELEMENT of at most
// budget bytes, marked truncated="1" when some did not fit, or "-" when
// there are none (or not even the mark fits).
func appendSD(dst []byte, fields []field, budget int) []byte {
	const trunc = ` truncated="1"]`
	sd := make([]byte, 0, 256)
	sd = append(sd, '[')
	sd = append(sd, sdID...)
	n, cut := 0, false
	var p []byte
	for _, fl := range fields {
		if fl.key == MsgIDKey {
			continue
		}
		p = append(p[:0], ' ')
		p = append(p, sdName(fl.key)...)
		p = append(p, `="`...)
		p = appendSafe(p, valueString(fl.val), true, maxValueBytes)
		p = append(p, '"')
		if len(sd)+len(p)+len(trunc) > budget {
			cut = true
			break
		}
		sd = append(sd, p...)
		n++
	}
	switch {
	case cut && len(sd)+len(trunc) <= budget:
		dst = append(dst, sd...)
		return append(dst, trunc...)
	case n > 0 && !cut:
		dst = append(dst, sd...)
		return append(dst, ']')
	default:
		return append(dst, '-')
	}
}

// msgLimit bounds the message text by maxMsgBytes and by the room left
// in the frame (minus the "…" mark).
func msgLimit(room int) int {
	return max(0, min(maxMsgBytes, room-len("…")))
}

// appendTextFields adds " key=value" pairs while they fit in maxFrame
// (measured from start), then " truncated=1" if some did not.
func appendTextFields(dst []byte, start int, fields []field, maxFrame int) []byte {
	const trunc = " truncated=1"
	var p []byte
	for _, fl := range fields {
		p = append(p[:0], ' ')
		p = appendQuoted(p, fl.key)
		p = append(p, '=')
		p = appendQuoted(p, truncate(valueString(fl.val), maxValueBytes))
		if len(dst)-start+len(p)+len(trunc) > maxFrame {
			return append(dst, trunc...)
		}
		dst = append(dst, p...)
	}
	return dst
}

// valueString renders an attribute value as text. A panicking String or
// Error method must not take the daemon down with it.
func valueString(v slog.Value) (s string) {
	defer func() {
		if r := recover(); r != nil {
			s = fmt.Sprintf("!PANIC: %v", r)
		}
	}()
	switch v.Kind() {
	case slog.KindString:
		return v.String()
	case slog.KindTime:
		return v.Time().Format(time.RFC3339Nano)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return x.Error()
		case fmt.Stringer:
			return x.String()
		case encoding.TextMarshaler:
			b, err := x.MarshalText()
			if err != nil {
				return "!ERROR: " + err.Error()
			}
			return string(b)
		case []byte:
			return string(x)
		}
		return fmt.Sprint(v.Any())
	}
	return v.String()
}

// appendQuoted writes s bare when it is a simple token and Go-quoted
// otherwise, as slog's TextHandler does; a hostile key cannot start a new
// line or a new key=value pair.
func appendQuoted(dst []byte, s string) []byte {
	if needsQuoting(s) {
		return strconv.AppendQuote(dst, s)
	}
	return append(dst, s...)
}

func needsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for _, r := range s {
		if r == utf8.RuneError || r == ' ' || r == '=' || r == '"' || !unicode.IsPrint(r) {
			return true
		}
	}
	return false
}

// appendSafe writes s with control characters shown as \xNN (or \u00NN for
// C1), invalid UTF-8 as U+FFFD and, for SD-PARAM values, '"', '\' and ']'
// escaped with a backslash (RFC 5424 §6.3.3). Output beyond limit bytes is
// cut at a character boundary and marked with "…".
func appendSafe(dst []byte, s string, sdValue bool, limit int) []byte {
	const hex = "0123456789abcdef"
	start := len(dst)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		mark := len(dst)
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, "\uFFFD"...)
		case r < 0x20 || r == 0x7f:
			dst = append(dst, '\\', 'x', hex[r>>4], hex[r&0xf])
		case r >= 0x80 && r <= 0x9f:
			dst = append(dst, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
		case sdValue && (r == '"' || r == '\\' || r == ']'):
			dst = append(dst, '\\', byte(r))
		default:
			dst = append(dst, s[i:i+size]...)
		}
		if len(dst)-start > limit {
			return append(dst[:mark], "…"...)
		}
		i += size
	}
	return dst
}

// truncate cuts s to at most n bytes at a character boundary, marking the
// cut with "…".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
