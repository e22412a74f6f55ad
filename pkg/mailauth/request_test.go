package mailauth

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"testing"
)

// Requests as nginx 1.22.1 sent them (PROTOCOLS.md §4.1, verified byte for
// byte), with the fields a backend must receive.
var wireRequests = []struct {
	name   string
	wire   string
	fields map[string]string
	pass   string
	err    bool
}{
	{
		name: "imap login",
		wire: "GET /auth HTTP/1.0\r\nHost: localhost\r\nAuth-Method: plain\r\nAuth-User: ok%20user\r\nAuth-Pass: p%25a+ss%20w\"d\r\nAuth-Protocol: imap\r\nAuth-Login-Attempt: 1\r\nClient-IP: 127.0.0.1\r\nX-Auth-Key: s3cret\r\n\r\n",
		fields: map[string]string{"Auth-Method": "plain", "Auth-User": "ok user", "Auth-Protocol": "imap",
			"Auth-Login-Attempt": "1", "Client-IP": "127.0.0.1"},
		pass: `p%a+ss w"d`,
	},
	{
		name: "imap authenticate plain with control and utf-8",
		wire: "GET /auth HTTP/1.0\r\nHost: localhost\r\nAuth-Method: plain\r\nAuth-User: ok%01ctl\r\nAuth-Pass: p\xc3\xa9%09x\r\nAuth-Protocol: imap\r\nAuth-Login-Attempt: 2\r\nClient-IP: ::1\r\n\r\n",
		fields: map[string]string{"Auth-Method": "plain", "Auth-User": "ok\x01ctl", "Auth-Protocol": "imap",
			"Auth-Login-Attempt": "2", "Client-IP": "::1"},
		pass: "p\xc3\xa9\tx",
	},
	{
		name: "cram-md5 salt verbatim",
		wire: "GET /auth HTTP/1.0\r\nHost: localhost\r\nAuth-Method: cram-md5\r\nAuth-User: okcram\r\nAuth-Pass: 5fd6d03133864a2cb87a054c0c74fa9a\r\nAuth-Salt: <147620595.1795674109@mail.test>\r\nAuth-Protocol: imap\r\nAuth-Login-Attempt: 1\r\nClient-IP: 127.0.0.1\r\n\r\n",
		fields: map[string]string{"Auth-Method": "cram-md5", "Auth-User": "okcram", "Auth-Salt": "<147620595.1795674109@mail.test>",
			"Auth-Protocol": "imap", "Auth-Login-Attempt": "1", "Client-IP": "127.0.0.1"},
		pass: "5fd6d03133864a2cb87a054c0c74fa9a",
	},
	{
		name: "smtp none with stale credentials and command lines",
		wire: "GET /auth HTTP/1.0\r\nHost: localhost\r\nAuth-Method: none\r\nAuth-User: waitsmtp\r\nAuth-Pass: stalepw\r\nAuth-Protocol: smtp\r\nAuth-Login-Attempt: 1\r\nClient-IP: 127.0.0.1\r\nClient-Host: [UNAVAILABLE]\r\nAuth-SMTP-Helo: client.example\r\nAuth-SMTP-From: MAIL FROM:<a+b@b.c> SIZE=10\r\nAuth-SMTP-To: RCPT TO:<bad@d.e>\r\n\r\n",
		fields: map[string]string{"Auth-Method": "none", "Auth-User": "", "Auth-Protocol": "smtp",
			"Auth-Login-Attempt": "1", "Client-IP": "127.0.0.1", "Client-Host": "[UNAVAILABLE]",
			"Auth-SMTP-Helo": "client.example", "Auth-SMTP-From": "MAIL FROM:<a+b@b.c> SIZE=10", "Auth-SMTP-To": "RCPT TO:<bad@d.e>"},
		pass: "",
	},
	{
		name: "imaps with client certificate and proxy protocol",
		wire: "GET /auth HTTP/1.0\r\nHost: localhost\r\nAuth-Method: external\r\nAuth-User: x\r\nAuth-Pass: \r\nAuth-Protocol: imap\r\nAuth-Login-Attempt: 1\r\nClient-IP: 192.0.2.1\r\n" +
			"Proxy-Protocol-Addr: 192.0.2.1\r\nProxy-Protocol-Port: 40000\r\nProxy-Protocol-Server-Addr: 192.0.2.2\r\nProxy-Protocol-Server-Port: 993\r\n" +
			"Auth-SSL: on\r\nAuth-SSL-Protocol: TLSv1.3\r\nAuth-SSL-Cipher: TLS_AES_256_GCM_SHA384\r\nAuth-SSL-Verify: FAILED:self-signed certificate\r\nAuth-SSL-Subject: O=Ex Org,CN=client one\r\nAuth-SSL-Issuer: O=Ex Org,CN=client one\r\nAuth-SSL-Serial: 5F50\r\nAuth-SSL-Fingerprint: 89e0\r\nAuth-SSL-Cert: -----BEGIN%20CERTIFICATE-----%0AMIID%0A-----END%20CERTIFICATE-----%0A\r\n\r\n",
		fields: map[string]string{"Auth-Method": "external", "Auth-User": "x", "Auth-Protocol": "imap", "Auth-Login-Attempt": "1", "Client-IP": "192.0.2.1",
			"Proxy-Protocol-Addr": "192.0.2.1", "Proxy-Protocol-Port": "40000", "Proxy-Protocol-Server-Addr": "192.0.2.2", "Proxy-Protocol-Server-Port": "993",
			"Auth-SSL": "on", "Auth-SSL-Protocol": "TLSv1.3", "Auth-SSL-Cipher": "TLS_AES_256_GCM_SHA384", "Auth-SSL-Verify": "FAILED:self-signed certificate",
			"Auth-SSL-Subject": "O=Ex Org,CN=client one", "Auth-SSL-Issuer": "O=Ex Org,CN=client one", "Auth-SSL-Serial": "5F50", "Auth-SSL-Fingerprint": "89e0",
			"Auth-SSL-Cert": "-----BEGIN CERTIFICATE-----\nMIID\n-----END CERTIFICATE-----\n"},
	},
	{name: "no method", wire: "GET / HTTP/1.0\r\nAuth-Protocol: imap\r\n\r\n", err: true},
	{name: "no protocol", wire: "GET / HTTP/1.0\r\nAuth-Method: plain\r\n\r\n", err: true},
	{name: "bad escape", wire: "GET / HTTP/1.0\r\nAuth-Method: plain\r\nAuth-Protocol: imap\r\nAuth-Pass: 100%\r\n\r\n", err: true},
	{name: "repeated user", wire: "GET / HTTP/1.0\r\nAuth-Method: plain\r\nAuth-Protocol: imap\r\nAuth-User: a\r\nAuth-User: b\r\n\r\n", err: true},
	{name: "bad attempt", wire: "GET / HTTP/1.0\r\nAuth-Method: plain\r\nAuth-Protocol: imap\r\nAuth-Login-Attempt: -1\r\n\r\n", err: true},
	{name: "signed attempt", wire: "GET / HTTP/1.0\r\nAuth-Method: plain\r\nAuth-Protocol: imap\r\nAuth-Login-Attempt: +1\r\n\r\n", err: true},
	{name: "upper-case method", wire: "GET / HTTP/1.0\r\nAuth-Method: PLAIN\r\nAuth-Protocol: imap\r\n\r\n", err: true},
}

func readWire(t testing.TB, wire string) (*http.Request, error) {
	t.Helper()
	return http.ReadRequest(bufio.NewReader(strings.NewReader(wire)))
}

func TestParseRequest(t *testing.T) {
	for _, tc := range wireRequests {
		t.Run(tc.name, func(t *testing.T) {
			hr, err := readWire(t, tc.wire)
			if err != nil {
				t.Fatal(err)
			}
			req, err := ParseRequest(hr.Header)
			if tc.err {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(req.Fields, tc.fields) {
				t.Errorf("Fields = %q\nwant     %q", req.Fields, tc.fields)
			}
			if string(req.Pass) != tc.pass {
				t.Errorf("Pass = %q, want %q", string(req.Pass), tc.pass)
			}
			if req.Method != tc.fields["Auth-Method"] || req.Protocol != tc.fields["Auth-Protocol"] ||
				req.User != tc.fields["Auth-User"] || req.ClientIP != tc.fields["Client-IP"] {
				t.Errorf("typed fields %+v disagree with Fields", req)
			}
		})
	}
}

func TestRequestObjectJSON(t *testing.T) {
	hr, err := readWire(t, wireRequests[0].wire)
	if err != nil {
		t.Fatal(err)
	}
	req, err := ParseRequest(hr.Header)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(req.Object())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Auth-Login-Attempt":"1","Auth-Method":"plain","Auth-Pass":"p%a+ss w\"d","Auth-Protocol":"imap","Auth-User":"ok user","Client-IP":"127.0.0.1"}`
	if string(b) != want {
		t.Fatalf("JSON\n got %s\nwant %s", b, want)
	}
}

func TestRequestNeverPrintsPassword(t *testing.T) {
	req := &Request{Method: "plain", Protocol: "imap", User: "u", Pass: "hunter2", Fields: map[string]string{}}
	var b strings.Builder
	log := slog.New(slog.NewTextHandler(&b, nil))
	log.Info("x", "req", req, "pass", req.Pass)
	log.Info("y", "obj", req.Object())
	fmt.Fprintf(&b, "%v %s %q %x %#v %+v", req.Pass, req.Pass, req.Pass, req.Pass, req.Pass, *req)
	if strings.Contains(b.String(), "hunter2") {
		t.Fatalf("password leaked: %s", b.String())
	}
	if !strings.Contains(b.String(), "[redacted]") {
		t.Fatalf("no redaction marker: %s", b.String())
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, tc := range wireRequests {
		f.Add(tc.wire)
	}
	f.Fuzz(func(t *testing.T, wire string) {
		hr, err := http.ReadRequest(bufio.NewReader(strings.NewReader(wire)))
		if err != nil {
			return
		}
		req, err := ParseRequest(hr.Header)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if req.Method == "" || req.Protocol == "" {
			t.Fatal("accepted without method or protocol")
		}
		if req.Method == "none" && (req.User != "" || req.Pass != "") {
			t.Fatal("credentials kept with Auth-Method none")
		}
		if _, ok := req.Fields[HeaderPass]; ok {
			t.Fatal("Auth-Pass in Fields")
		}
		for k := range req.Fields {
			if _, ok := canonical[http.CanonicalHeaderKey(k)]; !ok {
				t.Fatalf("unexpected field %q", k)
			}
		}
		if _, err := json.Marshal(req.Object()); err != nil {
			t.Fatal(err)
		}
	})
}
