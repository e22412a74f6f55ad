package logging

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// syslogMsg is an RFC 5424 message parsed back, field by field.
type syslogMsg struct {
	Pri       int
	Version   int
	Timestamp time.Time
	FracDigit int
	Hostname  string
	AppName   string
	ProcID    string
	MsgID     string
	SDID      string // "" for NILVALUE
	Params    [][2]string
	BOM       bool
	Msg       string
}

func (m *syslogMsg) param(name string) (string, bool) {
	for _, p := range m.Params {
		if p[0] == name {
			return p[1], true
		}
	}
	return "", false
}

// parse5424 is a strict parser of RFC 5424 §6 written independently of the
// formatter, so that a formatting bug fails the tests.
func parse5424(s string) (*syslogMsg, error) {
	m := &syslogMsg{}
	if !strings.HasPrefix(s, "<") {
		return nil, errors.New("no PRI")
	}
	end := strings.IndexByte(s, '>')
	if end < 2 || end > 4 {
		return nil, errors.New("bad PRI")
	}
	pri, err := strconv.Atoi(s[1:end])
	if err != nil || pri < 0 || pri > 191 || (len(s[1:end]) > 1 && s[1] == '0') {
		return nil, fmt.Errorf("bad PRIVAL %q", s[1:end])
	}
	m.Pri = pri
	s = s[end+1:]
	if !strings.HasPrefix(s, "1 ") {
		return nil, errors.New("VERSION is not 1")
	}
	m.Version = 1
	s = s[2:]
	fields := make([]string, 5)
	limits := []int{0, 255, 48, 128, 32}
	for i := range fields {
		sp := strings.IndexByte(s, ' ')
		if sp <= 0 {
			return nil, fmt.Errorf("header field %d missing", i)
		}
		fields[i], s = s[:sp], s[sp+1:]
		if i > 0 {
			if len(fields[i]) > limits[i] {
				return nil, fmt.Errorf("header field %d too long", i)
			}
			for _, c := range []byte(fields[i]) {
				if c < 33 || c > 126 {
					return nil, fmt.Errorf("header field %d not PRINTUSASCII", i)
				}
			}
		}
	}
	if fields[0] != "-" {
		ts := fields[0]
		if dot := strings.IndexByte(ts, '.'); dot >= 0 {
			j := dot + 1
			for j < len(ts) && ts[j] >= '0' && ts[j] <= '9' {
				j++
			}
			m.FracDigit = j - dot - 1
			if m.FracDigit < 1 || m.FracDigit > 6 {
				return nil, fmt.Errorf("TIME-SECFRAC has %d digits", m.FracDigit)
			}
		}
		if len(ts) < 20 || ts[4] != '-' || ts[10] != 'T' {
			return nil, fmt.Errorf("bad TIMESTAMP %q", ts)
		}
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return nil, fmt.Errorf("bad TIMESTAMP %q: %v", ts, err)
		}
		m.Timestamp = t
	}
	m.Hostname, m.AppName, m.ProcID, m.MsgID = fields[1], fields[2], fields[3], fields[4]

	if strings.HasPrefix(s, "-") {
		s = s[1:]
	} else {
		if !strings.HasPrefix(s, "[") {
			return nil, errors.New("no STRUCTURED-DATA")
		}
		for strings.HasPrefix(s, "[") {
			s = s[1:]
			id, rest, err := sdName5424(s)
			if err != nil {
				return nil, fmt.Errorf("SD-ID: %v", err)
			}
			if m.SDID == "" {
				m.SDID = id
			}
			s = rest
			for strings.HasPrefix(s, " ") {
				name, rest, err := sdName5424(s[1:])
				if err != nil {
					return nil, fmt.Errorf("PARAM-NAME: %v", err)
				}
				if !strings.HasPrefix(rest, `="`) {
					return nil, errors.New(`PARAM-NAME not followed by ="`)
				}
				rest = rest[2:]
				var val strings.Builder
				closed := false
				for i := 0; i < len(rest); i++ {
					c := rest[i]
					if c == '\\' && i+1 < len(rest) && (rest[i+1] == '"' || rest[i+1] == '\\' || rest[i+1] == ']') {
						val.WriteByte(rest[i+1])
						i++
						continue
					}
					if c == '"' || c == ']' {
						if c == ']' {
							return nil, errors.New("unescaped ] in PARAM-VALUE")
						}
						rest = rest[i+1:]
						closed = true
						break
					}
					val.WriteByte(c)
				}
				if !closed {
					return nil, errors.New("unterminated PARAM-VALUE")
				}
				if !utf8.ValidString(val.String()) {
					return nil, errors.New("PARAM-VALUE not UTF-8")
				}
				m.Params = append(m.Params, [2]string{name, val.String()})
				s = rest
			}
			if !strings.HasPrefix(s, "]") {
				return nil, errors.New("SD-ELEMENT not closed")
			}
			s = s[1:]
		}
	}
	if s == "" {
		return m, nil
	}
	if s[0] != ' ' {
		return nil, errors.New("no SP before MSG")
	}
	s = s[1:]
	if strings.HasPrefix(s, "\xEF\xBB\xBF") {
		m.BOM = true
		s = s[3:]
		if !utf8.ValidString(s) {
			return nil, errors.New("MSG-UTF8 not UTF-8")
		}
	}
	m.Msg = s
	return m, nil
}

func sdName5424(s string) (name, rest string, err error) {
	i := 0
	for i < len(s) {
		c := s[i]
		if c < 33 || c > 126 || c == '=' || c == ']' || c == '"' {
			break
		}
		if c == ' ' {
			break
		}
		i++
	}
	if i == 0 || i > 32 {
		return "", "", fmt.Errorf("SD-NAME of %d chars", i)
	}
	return s[:i], s[i:], nil
}
