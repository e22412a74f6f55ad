package config

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestValidateReportsEveryProblem: one pass over a file reports every bad
// value and every unknown key, each with its line, in line order.
func TestValidateReportsEveryProblem(t *testing.T) {
	conf := `RemoteURL = "http://a/"
Timeout = "soon"
Bogus = 1
LogLevel = "loud"
OCSP = "maybe"
[Postfix]
Sokcet = "x"
Mode = "0999"
[Nginx]
Listen = "8080"
Mode = 3.5
`
	_, err := Parse("x.conf", []byte(conf))
	if err == nil {
		t.Fatal("no error")
	}
	want := []string{
		`x.conf:2: Timeout: invalid duration "soon"`,
		"x.conf:3: Bogus: unknown key",
		"x.conf:4: LogLevel: must be debug",
		"x.conf:5: OCSP: must be off",
		"x.conf:7: Postfix.Sokcet: unknown key",
		"x.conf:8: Postfix.Mode: invalid mode",
		"x.conf:10: Nginx.Listen: must be host:port",
		"x.conf:11: Nginx.Mode:",
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d: got %q, want %q...", i, lines[i], w)
		}
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.Line != 2 {
		t.Fatalf("errors.As gives %v, want the first problem", ce)
	}
	var all Errors
	if !errors.As(err, &all) || len(all) != len(want) {
		t.Fatalf("errors.As(Errors): %v", all)
	}
}

// TestValidateOwnerNames: the UID, GID and User names of the daemon's own
// section must exist, found when the file is loaded (so --check-config
// finds them), each with its line; other sections' names are not looked
// up (the file may serve daemons on other hosts).
func TestValidateOwnerNames(t *testing.T) {
	conf := `RemoteURL = "http://a/"
[Postfix]
UID = "no-such-user-shitenno"
GID = "no-such-group-shitenno"
User = "no-such-user-shitenno"
[Dovecot]
UID = "no-such-user-shitenno"
`
	_, err := Parse("x.conf", []byte(conf), "postfix")
	want := []string{
		`x.conf:3: Postfix.UID: unknown user "no-such-user-shitenno"`,
		`x.conf:4: Postfix.GID: unknown group "no-such-group-shitenno"`,
		`x.conf:5: Postfix.User: unknown user "no-such-user-shitenno"`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Fatalf("got %v\nwant %s", err, strings.Join(want, "\n"))
	}
	if _, err := Parse("x.conf", []byte(conf), "nginx"); err != nil {
		t.Fatalf("nginx: %v", err)
	}
	if _, err := Parse("x.conf", []byte("RemoteURL = \"http://a/\"\n[Postfix]\nUID = \"root\"\nGID = 0\nUser = \"root\"\n"), "postfix"); err != nil {
		t.Fatalf("root: %v", err)
	}
}

// TestMaxReplySizeBound: a MaxReplySize near the int64 maximum would
// overflow the reply bound and fail every lookup: refused at load time.
func TestMaxReplySizeBound(t *testing.T) {
	for _, v := range []int64{math.MaxInt64, math.MaxInt64 - 1, MaxMaxReplySize + 1} {
		_, err := Parse("x.conf", []byte("RemoteURL = \"http://a/\"\nMaxReplySize = "+strconv.FormatInt(v, 10)+"\n"))
		if err == nil || !strings.HasPrefix(err.Error(), "x.conf:2: MaxReplySize: must be at most") {
			t.Errorf("%d: got %v", v, err)
		}
	}
	c, err := Parse("x.conf", []byte("RemoteURL = \"http://a/\"\nMaxReplySize = "+strconv.Itoa(MaxMaxReplySize)+"\n"))
	if err != nil || c.MaxReplySize != MaxMaxReplySize {
		t.Fatalf("largest: %v", err)
	}
}

// TestMaxProcs: 0 (every CPU) up to the Go runtime's bound is taken as
// set, anything else refused with file, line and key.
func TestMaxProcs(t *testing.T) {
	for _, v := range []int{0, 1, 4, MaxMaxProcs} {
		c, err := Parse("x.conf", []byte("RemoteURL = \"http://a/\"\nMaxProcs = "+strconv.Itoa(v)+"\n"))
		if err != nil || c.MaxProcs != v {
			t.Errorf("%d: got %v, %v", v, c, err)
		}
	}
	for _, v := range []int{-1, MaxMaxProcs + 1} {
		_, err := Parse("x.conf", []byte("RemoteURL = \"http://a/\"\nMaxProcs = "+strconv.Itoa(v)+"\n"))
		if err == nil || !strings.HasPrefix(err.Error(), "x.conf:2: MaxProcs: must be between 0") {
			t.Errorf("%d: got %v", v, err)
		}
	}
}

// TestErrorsRedactURLPassword: a RemoteURL password never appears in an
// error.
func TestErrorsRedactURLPassword(t *testing.T) {
	for _, u := range []string{"ftp://bob:s3cret@h/", "http://bob:s3cret@h/api/?x", "http://bob:s3cret@/api/"} {
		_, err := Parse("x.conf", []byte("RemoteURL = \""+u+"\"\n"))
		if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "RemoteURL") {
			t.Errorf("%s: got %v", u, err)
		}
	}
	// A URL that does not even parse.
	_, err := Parse("x.conf", []byte("RemoteURL = \"http://bob:s3%zz@h/\"\n"))
	if err == nil || strings.Contains(err.Error(), "s3") {
		t.Errorf("got %v", err)
	}
}

// TestRedactedURLs: what the daemons print of RemoteURL has no password.
func TestRedactedURLs(t *testing.T) {
	c, err := Parse("x.conf", []byte("RemoteURL = [\"https://bob:s3cret@h/api/\", \"https://h2/api/\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(c.RedactedURLs(), " ")
	if got != "https://bob:[redacted]@h/api/ https://h2/api/" {
		t.Fatalf("got %q", got)
	}
}

// TestSecretFileWarnings: a file holding a secret that every local user
// may read gets a warning naming it and the fix; a file readable by its
// group only does not.
func TestSecretFileWarnings(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := write("client.key", 0o644, "key")
	cert := write("client.pem", 0o644, "cert")
	cfgText := "RemoteURL = \"https://bob:s3cret@h/api/\"\nClientCert = \"" + cert + "\"\nClientKey = \"" + key + "\"\n"
	cfg := write("shitenno.conf", 0o644, cfgText)
	c, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.Warnings(), "\n")
	for _, p := range []string{cfg, key} {
		if !strings.Contains(w, p+" is readable by every local user") || !strings.Contains(w, "chmod o-rwx "+p) {
			t.Errorf("no warning for %s in:\n%s", p, w)
		}
	}
	if strings.Contains(w, cert+" ") || strings.Contains(w, "s3cret") {
		t.Errorf("bad warnings:\n%s", w)
	}
	// Group-readable: fine (the daemon's group reads it).
	for _, p := range []string{cfg, key} {
		if err := os.Chmod(p, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("warnings for mode 0640: %v", w)
	}
	// A config file without a password holds no secret; a combined PEM in
	// ClientCert alone does.
	cfg2 := write("plain.conf", 0o644, "RemoteURL = \"https://h/api/\"\nClientCert = \""+cert+"\"\n")
	c2, err := Load(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	w2 := strings.Join(c2.Warnings(), "\n")
	if strings.Contains(w2, cfg2) || !strings.Contains(w2, cert+" is readable by every local user") {
		t.Errorf("warnings:\n%s", w2)
	}
}

// TestCacheMaxBytes: [Cache] MaxBytes defaults to DefaultCacheBytes and
// must be within 1..MaxCacheBytes, reported at its line.
func TestCacheMaxBytes(t *testing.T) {
	c, err := Parse("x.conf", []byte("RemoteURL = \"http://a/\"\n"))
	if err != nil || c.Cache.MaxBytes != DefaultCacheBytes {
		t.Fatalf("default: %v, %d", err, c.Cache.MaxBytes)
	}
	c, err = Parse("x.conf", []byte("RemoteURL = \"http://a/\"\n[Cache]\nMaxBytes = 1048576\n"))
	if err != nil || c.Cache.MaxBytes != 1<<20 || c.Cache.MaxEntries != DefaultCacheEntries {
		t.Fatalf("set: %v, %+v", err, c.Cache)
	}
	for _, v := range []string{"0", "-1", strconv.Itoa(MaxCacheBytes + 1)} {
		_, err := Parse("x.conf", []byte("RemoteURL = \"http://a/\"\n[Cache]\nMaxEntries = 5\nMaxBytes = "+v+"\n"))
		if err == nil || !strings.HasPrefix(err.Error(), "x.conf:4: Cache.MaxBytes: must be between 1 and") {
			t.Errorf("%s: got %v", v, err)
		}
	}
}
