package mailauth

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func reqFor(proto, method string, attempt int) *Request {
	return &Request{Protocol: proto, Method: method, Attempt: attempt, Fields: map[string]string{}}
}

func joinFields(f []field) string {
	var b strings.Builder
	for _, x := range f {
		b.WriteString(x.name + ": " + x.value + "\n")
	}
	return b.String()
}

func TestReplyFields(t *testing.T) {
	ip := netip.MustParseAddr("127.0.0.1")
	imap1 := reqFor("imap", "plain", 1)
	smtp1 := reqFor("smtp", "plain", 1)
	for _, tc := range []struct {
		name string
		rep  Reply
		req  *Request
		want string // joined fields; "" means an error is expected
	}{
		{"ok", Reply{Status: "OK", Server: ip, Port: 143}, imap1, "Auth-Status: OK\nAuth-Server: 127.0.0.1\nAuth-Port: 143\n"},
		{"ok with creds", Reply{Status: "OK", Server: netip.MustParseAddr("2001:db8::1"), Port: 110, User: "u@x", Pass: "p w+%"}, imap1,
			"Auth-Status: OK\nAuth-Server: 2001:db8::1\nAuth-Port: 110\nAuth-User: u@x\nAuth-Pass: p w+%\n"},
		{"ok v4-mapped", Reply{Status: "OK", Server: netip.MustParseAddr("::ffff:10.0.0.5"), Port: 143}, imap1, "Auth-Status: OK\nAuth-Server: 10.0.0.5\nAuth-Port: 143\n"},
		{"ok wait ignored", Reply{Status: "OK", Server: ip, Port: 143, Wait: 3}, imap1, "Auth-Status: OK\nAuth-Server: 127.0.0.1\nAuth-Port: 143\n"},
		{"denied imap", Denied(imap1), imap1, "Auth-Status: Invalid login or password\nAuth-Wait: 3\n"},
		{"denied smtp", Denied(smtp1), smtp1, "Auth-Status: Invalid login or password\nAuth-Wait: 3\nAuth-Error-Code: 535 5.7.8\n"},
		{"tempfail smtp", TempFail(smtp1), smtp1, "Auth-Status: Temporary server problem, try again later\nAuth-Wait: 3\nAuth-Error-Code: 451 4.3.0\n"},
		{"tempfail unparsed", TempFail(nil), nil, "Auth-Status: Temporary server problem, try again later\n"},
		{"error code dropped for imap", Reply{Status: "No", ErrorCode: "550"}, imap1, "Auth-Status: No\n"},
		{"no wait past attempt cap", Denied(imap1), reqFor("imap", "plain", MaxWaitAttempts), "Auth-Status: Invalid login or password\n"},
		{"wait below cap", Denied(imap1), reqFor("imap", "plain", MaxWaitAttempts-1), "Auth-Status: Invalid login or password\nAuth-Wait: 3\n"},
		{"no wait for cram-md5", Denied(imap1), reqFor("imap", "cram-md5", 1), "Auth-Status: Invalid login or password\n"},
		{"no wait for apop", Denied(imap1), reqFor("pop3", "apop", 1), "Auth-Status: Invalid login or password\n"},
		{"wait zero", Reply{Status: "nope", Wait: 0}, imap1, "Auth-Status: nope\n"},
		{"wait max", Reply{Status: "nope", Wait: MaxWait}, imap1, "Auth-Status: nope\nAuth-Wait: 300\n"},

		{"empty status", Reply{}, imap1, ""},
		{"WAIT status", Reply{Status: "WAIT", Wait: 1}, imap1, ""},
		{"ok without server", Reply{Status: "OK", Port: 143}, imap1, ""},
		{"ok with zone", Reply{Status: "OK", Server: netip.MustParseAddr("fe80::1%eth0"), Port: 143}, imap1, ""},
		{"ok port 0", Reply{Status: "OK", Server: ip}, imap1, ""},
		{"ok port too big", Reply{Status: "OK", Server: ip, Port: 65536}, imap1, ""},
		{"status CRLF injection", Reply{Status: "no\r\nAuth-Status: OK"}, imap1, ""},
		{"status LF", Reply{Status: "no\nx"}, imap1, ""},
		{"status NUL", Reply{Status: "no\x00x"}, imap1, ""},
		{"status DEL", Reply{Status: "no\x7f"}, imap1, ""},
		{"status trailing blank", Reply{Status: "no "}, imap1, ""},
		{"user CR", Reply{Status: "OK", Server: ip, Port: 1, User: "a\rb"}, imap1, ""},
		{"pass leading blank", Reply{Status: "OK", Server: ip, Port: 1, Pass: " pw"}, imap1, ""},
		{"pass LF", Reply{Status: "OK", Server: ip, Port: 1, Pass: "p\nAuth-Server: 10.0.0.1"}, imap1, ""},
		{"negative wait", Reply{Status: "no", Wait: -1}, imap1, ""},
		{"huge wait", Reply{Status: "no", Wait: MaxWait + 1}, imap1, ""},
		{"success code", Reply{Status: "no", ErrorCode: "235 2.7.0"}, smtp1, ""},
		{"garbage code", Reply{Status: "no", ErrorCode: "535 5.7.8\r\nX: y"}, smtp1, ""},
		{"too long", Reply{Status: strings.Repeat("x", MaxReplyBytes)}, imap1, ""},
		{"too long ok", Reply{Status: "OK", Server: ip, Port: 1, Pass: Secret(strings.Repeat("x", MaxReplyBytes))}, imap1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := tc.rep.fields(tc.req)
			if tc.want == "" {
				if !errors.Is(err, ErrBadReply) {
					t.Fatalf("fields = %q, %v; want ErrBadReply", joinFields(f), err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := joinFields(f); got != tc.want {
				t.Fatalf("got\n%swant\n%s", got, tc.want)
			}
		})
	}
}

func TestValidErrorCode(t *testing.T) {
	for s, want := range map[string]bool{
		"535": true, "451": true, "535 5.7.8": true, "451 4.3.0": true, "554 5.123.456": true,
		"": false, "235": false, "335 3.0.0": false, "5355": false, "535 4.7.8": false, "535 5.7": false,
		"535 5.7.": false, "535 5..8": false, "535 5.1234.1": false, "535  5.7.8": false, "53a": false, "535 5.7.8 ": false,
	} {
		if got := ValidErrorCode(s); got != want {
			t.Errorf("ValidErrorCode(%q) = %v, want %v", s, got, want)
		}
	}
}

func FuzzReplyFields(f *testing.F) {
	f.Add("OK", "127.0.0.1", 143, "u", "p", 3, "", "imap", "plain", 1)
	f.Add("Invalid login or password", "", 0, "", "", 3, "535 5.7.8", "smtp", "plain", 2)
	f.Add("no\r\nAuth-Status: OK", "::1", 1, "a\nb", " ", -1, "235", "pop3", "apop", 10)
	f.Fuzz(func(t *testing.T, status, server string, port int, user, pass string, wait int, code, proto, method string, attempt int) {
		var addr netip.Addr
		if a, err := netip.ParseAddr(server); err == nil {
			addr = a
		}
		r := Reply{Status: status, Server: addr, Port: port, User: user, Pass: Secret(pass), Wait: wait, ErrorCode: code}
		fs, err := r.fields(reqFor(proto, method, attempt))
		if err != nil {
			if !errors.Is(err, ErrBadReply) {
				t.Fatalf("error %v is not ErrBadReply", err)
			}
			return
		}
		n := 0
		for _, x := range fs {
			n += len(x.name) + len(x.value) + 4
			if strings.ContainsAny(x.value, "\r\n\x00") || strings.Trim(x.value, " \t") != x.value {
				t.Fatalf("unsendable value %q", x.value)
			}
			if strings.Contains(x.name, "_") {
				t.Fatalf("underscore in %q", x.name)
			}
		}
		if n > MaxReplyBytes {
			t.Fatalf("%d bytes", n)
		}
		if fs[0].name != "Auth-Status" || fs[0].value != status {
			t.Fatalf("first field %v", fs[0])
		}
		if status == StatusOK && (len(fs) < 3 || fs[1].name != "Auth-Server" || fs[2].name != "Auth-Port") {
			t.Fatalf("OK without server/port: %v", fs)
		}
	})
}
