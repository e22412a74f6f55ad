package main

import (
	"bytes"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestKeyIndex(t *testing.T) {
	for i := 0; i < numKeys; i++ {
		if j, ok := keyIndex([]byte(benchKey(i))); !ok || j != i {
			t.Fatalf("keyIndex(%q) = %d, %v", benchKey(i), j, ok)
		}
	}
	for _, k := range []string{"", "u", "u@bench.example", "u01@bench.example", "u4096@bench.example",
		"ux@bench.example", "v1@bench.example", "u1@bench.example.org", "u-1@bench.example", "u1234567@bench.example"} {
		if i, ok := keyIndex([]byte(k)); ok {
			t.Errorf("keyIndex(%q) = %d, want no key", k, i)
		}
	}
}

func TestParseBackendRequest(t *testing.T) {
	for _, tc := range []struct {
		verb, body string
		idx        int
		ok         bool
	}{
		{"virtual", `{"Verb":"virtual","Object":"u1@bench.example"}`, 1, true},
		{"virtual", `{"Object": "u2@bench.example", "Verb": "virtual"}`, 2, true}, // slow path
		{"virtual", `{"Verb":"virtual","Object":"nobody@example.org"}`, -1, true},
		{"virtual", `{"Verb":"virtual","Object":"u\u0031@bench.example"}`, 1, true}, // escaped: slow path
		{"passdb", `{"Verb":"passdb","Object":{"Context":"shared","Object":"u3@bench.example"}}`, 3, true},
		{"passdb", `{"Verb":"passdb","Object":{"Object":"u3@bench.example","Context":"shared"}}`, 3, true},
		{"passdb", `{"Verb":"passdb","Object":{"Context":"private","Object":"u3@bench.example"}}`, 0, false},
		{"passdb", `{"Verb":"passdb","Object":"u3@bench.example"}`, 0, false},
		{"virtual", `{"Verb":"passdb","Object":"u1@bench.example"}`, 0, false},
		{"virtual", `{"Verb":"virtual","Object":1}`, 0, false},
		{"virtual", `{"Verb":"virtual","Object":"u1@bench.example"`, 0, false},
		{"domains", `{"Verb":"domains","Object":"u1@bench.example"}`, 0, false},
	} {
		i, obj, ok := parseBackendRequest(tc.verb, []byte(tc.body))
		if ok != tc.ok || (ok && i != tc.idx) {
			t.Errorf("%s %s: %d %v, want %d %v", tc.verb, tc.body, i, ok, tc.idx, tc.ok)
		}
		if ok && !strings.Contains(tc.body, string(obj)) {
			t.Errorf("%s: echoed object %s is not from the request", tc.body, obj)
		}
	}
}

// startNull serves the null responder on a socket in a temp dir.
func startNull(t *testing.T, proto string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "null")
	errc := make(chan error, 1)
	go func() { errc <- serveNull(proto, sock) }()
	for range 200 {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock
		}
		select {
		case err := <-errc:
			t.Fatal(err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("null responder did not start")
	return ""
}

// TestLoadAgainstNull drives both protocols against the null responders
// and the HTTP client against the built-in backend: every reply must check.
func TestLoadAgainstNull(t *testing.T) {
	pw, dw := postfixWire(), dovecotWire()
	for _, tc := range []struct {
		name string
		dial dialFunc
	}{
		{"postfix", dialSocketmap("unix", startNull(t, "postfix"), &pw)},
		{"dovecot", dialDict("unix", startNull(t, "dovecot"), &dw)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runLoad(tc.dial, 3, 20*time.Millisecond, 200*time.Millisecond)
			if res.Errors != 0 || res.Ops == 0 || res.Rate() <= 0 || res.Quantile(0.99) < res.Quantile(0.5) {
				t.Fatalf("%+v", res.Errors)
			}
		})
	}
	base, _ := fastBackendClient(t)
	for _, proto := range []string{"postfix", "dovecot"} {
		t.Run("direct "+proto, func(t *testing.T) { checkDirect(t, base, proto) })
	}
}

// checkDirect drives proto's direct HTTP client against the backend at
// base: every reply must check.
func checkDirect(t *testing.T, base, proto string) {
	t.Helper()
	d, cleanup := dialHTTP(base, proto)
	defer cleanup()
	res := runLoad(d, 2, 0, 200*time.Millisecond)
	if res.Errors != 0 || res.Ops == 0 {
		t.Fatalf("%d errors (%s), %d ops", res.Errors, res.FirstErr, res.Ops)
	}
}

// TestWrongRepliesAreErrors: a server answering the wrong key, or not at
// all, is counted, never skipped.
func TestWrongRepliesAreErrors(t *testing.T) {
	key0 := netstring("OK " + virtualValue(0))
	sock := serveConns(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			// Always the answer for key 0, and the dict hello gets one
			// too (wrong: it must not).
			if _, err := c.Write(key0); err != nil {
				return
			}
		}
	})
	w := postfixWire()
	res := runLoad(dialSocketmap("unix", sock, &w), 2, 0, 100*time.Millisecond)
	if res.Errors == 0 || !strings.Contains(res.FirstErr, "want") {
		t.Fatalf("wrong replies not counted: %d errors, %q", res.Errors, res.FirstErr)
	}
	dw := dovecotWire()
	res = runLoad(dialDict("unix", sock, &dw), 1, 0, 100*time.Millisecond)
	if res.Errors == 0 {
		t.Fatal("dict replies in the wrong framing not counted")
	}
	res = runLoad(dialSocketmap("unix", filepath.Join(t.TempDir(), "absent"), &w), 1, 0, 50*time.Millisecond)
	if res.Errors == 0 || res.Ops != 0 {
		t.Fatalf("a missing server is not an error: %+v", res.Errors)
	}
}

// TestDictReplyFormatting: the same object written differently is right.
func TestDictReplyFormatting(t *testing.T) {
	if !jsonEqual(unescapeDict([]byte(`{ "password" : "{PLAIN}pw-1" }`)), []byte(passdbData(1))) {
		t.Fatal("re-formatted object rejected")
	}
	if jsonEqual([]byte(`{"password":"{PLAIN}pw-2"}`), []byte(passdbData(1))) {
		t.Fatal("wrong password accepted")
	}
	if got := string(unescapeDict([]byte("a\x01tb\x01nc\x011\x010\x01x\x01"))); got != "a\tb\nc\x01\x00x" {
		t.Fatalf("unescape: %q", got)
	}
}

// TestExampleData: the generated data file decodes as the example backend
// reads it and holds the same answers as the built-in backend.
func TestExampleData(t *testing.T) {
	var buf bytes.Buffer
	if err := writeExampleData(&buf); err != nil {
		t.Fatal(err)
	}
	var d struct {
		Tables map[string]map[string]string
		Users  map[string]struct{ Password string }
		Nginx  map[string]string
		Policy struct{ Actions map[string]string }
	}
	if _, err := toml.Decode(buf.String(), &d); err != nil {
		t.Fatal(err)
	}
	if d.Nginx["imap"] != "127.0.0.1:10143" {
		t.Fatalf("nginx upstream %q", d.Nginx["imap"])
	}
	for i := 0; i < numKeys; i++ {
		v, ok := d.Tables[postfixVerb][benchKey(i)]
		u, uok := d.Users[benchKey(i)]
		if ok != known(i) || uok != known(i) || (ok && (v != virtualValue(i) || u.Password != passdbPassword(i))) {
			t.Fatalf("key %d: %q %v, %q %v", i, v, ok, u.Password, uok)
		}
		if a, ok := d.Policy.Actions[benchKey(i)]; ok != known(i) || (ok && a != policyAction(i)) {
			t.Fatalf("policy action of key %d: %q %v", i, a, ok)
		}
	}
}
