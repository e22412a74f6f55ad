package redact

import (
	"strings"
	"testing"
)

func TestKey(t *testing.T) {
	for _, k := range []string{"password", "Auth-Pass", "userPassword", "passwd", "pass", "pw", "client_secret",
		"token", "Authorization", "cookie", "key-password", "tls.Password"} {
		if !Key(k) {
			t.Errorf("Key(%q) = false", k)
		}
	}
	for _, k := range []string{"user", "Auth-User", "verb", "err", "kind", "data.user"} {
		if Key(k) {
			t.Errorf("Key(%q) = true", k)
		}
	}
}

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://alice:s3cret@backend.example/api/": "https://alice:" + Mask + "@backend.example/api/",
		"https://alice@backend.example/api/":        "https://alice@backend.example/api/",
		"http://127.0.0.1:8080/api/":                "http://127.0.0.1:8080/api/",
		"http://u:p%40ss@h/":                        "http://u:" + Mask + "@h/",
		"http://u:s3cret@h/x?q#f":                   "http://u:" + Mask + "@h/x?q#f",
		"http://u:s3%zz@h/":                         "http://" + Mask + "@h/", // does not parse
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestString(t *testing.T) {
	s := `x.conf:1: RemoteURL: invalid URL "ftp://bob:s3cret@h/": scheme must be http or https; also http://a:b@c/d`
	got := String(s)
	if strings.Contains(got, "s3cret") || strings.Contains(got, ":b@") || !strings.Contains(got, "ftp://bob:"+Mask+"@h/") {
		t.Fatalf("got %q", got)
	}
	if String("no url here") != "no url here" {
		t.Fatal("changed plain text")
	}
}
