package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigIsValid(t *testing.T) {
	c, err := Load("../../conf/shitenno.conf")
	if err != nil {
		t.Fatal(err)
	}
	if c.Timeout.Duration != 5*time.Second || c.SocketPrefix != "/run/shitenno" || c.Cache.MaxEntries != 10000 {
		t.Errorf("defaults not as documented: %+v", c)
	}
	if got := c.SocketPath(&c.Postfix.Service); got != "/run/shitenno-postfix" {
		t.Errorf("postfix socket %q", got)
	}
	if c.Postfix.Mode != 0o660 || c.Postfix.UID.Name != "postfix" {
		t.Errorf("postfix section %+v", c.Postfix)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("x.conf", []byte(`RemoteURL = "http://127.0.0.1:8080/"`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Timeout.Duration != DefaultTimeout || c.DevLog != "stderr" || c.LogLevel != "info" || c.OCSP != "if-stapled" ||
		c.MaxReplySize != 1<<20 || c.FailoverBackoff.Duration != 30*time.Second || c.Cache.MaxEntries != 10000 ||
		c.MaxProcs != 0 {
		t.Errorf("defaults: %+v", c)
	}
	for _, name := range []string{"postfix", "dovecot", "nginx"} {
		s := c.Section(name)
		if s.Mode != 0o660 || c.SocketPath(s) != "/run/shitenno-"+name {
			t.Errorf("%s: mode %o path %s", name, s.Mode, c.SocketPath(s))
		}
	}
	if len(c.RemoteURL) != 1 {
		t.Errorf("RemoteURL %v", c.RemoteURL)
	}
}

func TestValues(t *testing.T) {
	c, err := Parse("x.conf", []byte(`
RemoteURL = ["http://a/", "https://b:8443/api/"]
Timeout = "250ms"
CertPool = "/etc/ca.pem"
HPKP = ["pin1", "pin2"]
[Cache]
MaxEntries = 0
[Postfix]
Socket = "/var/spool/postfix/private/shitenno"
UID = 110
GID = "postfix"
Mode = "0600"
Listen = "127.0.0.1:10027"
[Nginx]
Mode = 0o640
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.RemoteURL) != 2 || c.Timeout.Duration != 250*time.Millisecond || c.CertPool[0] != "/etc/ca.pem" ||
		c.Cache.MaxEntries != 0 || c.Postfix.UID.ID != 110 || c.Postfix.GID.Name != "postfix" ||
		c.Postfix.Mode != 0o600 || c.Nginx.Mode != 0o640 || c.SocketPath(&c.Postfix.Service) != "/var/spool/postfix/private/shitenno" {
		t.Errorf("values: %+v", c)
	}
}

// TestErrors: every error names file, line and key.
func TestErrors(t *testing.T) {
	for _, tc := range []struct{ name, conf, want string }{
		{"missing RemoteURL", "Timeout = \"1s\"\n", "x.conf: RemoteURL: required key is missing"},
		{"bad URL", "\nRemoteURL = \"ftp://x/\"\n", "x.conf:2: RemoteURL: invalid URL \"ftp://x/\": scheme must be http or https"},
		{"URL without host", "RemoteURL = \"http:///x\"\n", "x.conf:1: RemoteURL: invalid URL"},
		{"unknown key", "RemoteURL = \"http://a/\"\n\nBogus = 1\n", "x.conf:3: Bogus: unknown key"},
		{"unknown section key", "RemoteURL = \"http://a/\"\n[Postfix]\nSokcet = \"x\"\n", "x.conf:3: Postfix.Sokcet: unknown key"},
		{"wrong type", "RemoteURL = \"http://a/\"\nLogLevel = 3\n", "x.conf:2: LogLevel: incompatible types"},
		{"bad duration", "RemoteURL = \"http://a/\"\nTimeout = \"soon\"\n", "x.conf:2: Timeout: invalid duration \"soon\""},
		{"bad TOML", "RemoteURL = \"http://a/\n", "x.conf:1: RemoteURL:"},
		{"bad value syntax", "RemoteURL = \"http://a/\"\nTimeout = 5s\n", "x.conf:2: Timeout: expected"},
		{"bad value in section", "RemoteURL = \"http://a/\"\n[Nginx]\nMode = 06x0\n", "x.conf:3: Nginx.Mode:"},
		{"bad mode", "RemoteURL = \"http://a/\"\n[Dovecot]\nMode = \"0999\"\n", "x.conf:3: Dovecot.Mode: invalid mode"},
		{"bad level", "RemoteURL = \"http://a/\"\nLogLevel = \"loud\"\n", "x.conf:2: LogLevel: must be debug"},
		{"bad OCSP", "RemoteURL = \"http://a/\"\nOCSP = \"maybe\"\n", "x.conf:2: OCSP: must be off"},
		{"bad listen", "RemoteURL = \"http://a/\"\n[Nginx]\nListen = \"8080\"\n", "x.conf:3: Nginx.Listen: must be host:port"},
		{"connect timeout zero", "RemoteURL = \"http://a/\"\nConnectTimeout = \"0s\"\n", "x.conf:2: ConnectTimeout: must be positive"},
		{"attempt timeout over Timeout", "RemoteURL = \"http://a/\"\nTimeout = \"2s\"\nAttemptTimeout = \"3s\"\n", "x.conf:3: AttemptTimeout: must be between 0"},
		{"timeout too long", "RemoteURL = \"http://a/\"\nTimeout = \"60s\"\n", "x.conf:2: Timeout: must be below 30s"},
		{"bad URL list", "RemoteURL = [\"http://a/\", 3]\n", "x.conf:1: RemoteURL: expected a string or an array of strings"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.conf", []byte(tc.conf))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a *config.Error", err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("got  %q\nwant %q...", err, tc.want)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.conf")
	_, err := Load(p)
	if err == nil || err.Error() != p+": cannot read configuration: no such file or directory" {
		t.Fatalf("got %v", err)
	}
	if err := os.WriteFile(p, []byte("RemoteURL = \"http://a/\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err != nil {
		t.Fatal(err)
	}
}

func TestOwner(t *testing.T) {
	c, err := Parse("x.conf", []byte("RemoteURL = \"http://a/\"\n[Postfix]\nUID = \"root\"\nGID = \"0\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if uid, err := c.Postfix.UID.UserID(); err != nil || uid != 0 {
		t.Errorf("root uid: %d %v", uid, err)
	}
	if gid, err := c.Postfix.GID.GroupID(); err != nil || gid != 0 {
		t.Errorf("gid 0: %d %v", gid, err)
	}
	if id, _ := c.Dovecot.UID.UserID(); id != -1 {
		t.Errorf("unset owner: %d", id)
	}
	if _, err := (Owner{Name: "no-such-user-xyz", Set: true}).UserID(); err == nil {
		t.Error("unknown user accepted")
	}
}

// TestPostfixListeners: the [Postfix] section decodes the socketmap keys
// (embedded Service) and the SMTP AUTH, policy and tcp_table keys, with
// their defaults, and a key under [[Postfix.TCPTable]] is located.
func TestPostfixListeners(t *testing.T) {
	c, err := Parse("t.conf", []byte(`RemoteURL = "http://127.0.0.1:1/"
[Postfix]
Socket = "pf"
SASLSocket = "/var/spool/postfix/private/shitenno-auth"
PolicyListen = "127.0.0.1:10040"
[[Postfix.TCPTable]]
Listen = "127.0.0.1:10041"
Verb = "virtual"
`))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Postfix
	if c.SocketPath(&p.Service) != DefaultSocketPrefix+"-pf" {
		t.Errorf("socketmap socket %q", c.SocketPath(&p.Service))
	}
	if p.SASLSocket != "/var/spool/postfix/private/shitenno-auth" || p.SASLVerb != "sasl" ||
		len(p.SASLMechanisms) != 2 || p.PolicyListen != "127.0.0.1:10040" || p.PolicyVerb != "policy" ||
		p.PolicyFailAction != DefaultPolicyFailAction {
		t.Errorf("postfix listeners: %+v", p)
	}
	if len(p.TCPTable) != 1 || p.TCPTable[0] != (TCPTable{Listen: "127.0.0.1:10041", Verb: "virtual"}) {
		t.Errorf("TCPTable: %+v", p.TCPTable)
	}
	if c.ResolveSocket("auth") != DefaultSocketPrefix+"-auth" || c.ResolveSocket("") != "" {
		t.Error("ResolveSocket")
	}
	if l := keyLines([]byte("[Postfix]\n[[Postfix.TCPTable]]\nVerb = \"x\"\n"))["Postfix.TCPTable.Verb"]; l != 3 {
		t.Errorf("line of Postfix.TCPTable.Verb = %d, want 3", l)
	}
}
