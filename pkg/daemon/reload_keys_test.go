package daemon

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shitenno/shitenno/pkg/bridge"
	"github.com/shitenno/shitenno/pkg/config"
)

// TestRestartKeysPostfixListeners: the SMTP AUTH, policy and tcp_table
// servers are built once, at start, with their sockets and settings; a
// reload that changes any of them says it takes a restart instead of
// reporting them reloaded.
func TestRestartKeysPostfixListeners(t *testing.T) {
	base := func() *config.Config {
		c := &config.Config{SocketPrefix: "/run/shitenno/shitenno"}
		c.Postfix.SASLSocket, c.Postfix.SASLVerb = "sasl", "sasl"
		c.Postfix.SASLMechanisms = config.StringList{"PLAIN", "LOGIN"}
		c.Postfix.PolicySocket, c.Postfix.PolicyVerb, c.Postfix.PolicyFailAction = "policy", "policy", "DEFER_IF_PERMIT x"
		c.Postfix.TCPTable = []config.TCPTable{{Listen: "127.0.0.1:2001", Verb: "virtual"}}
		return c
	}
	for key, change := range map[string]func(*config.Config){
		"Postfix.SASLSocket":       func(c *config.Config) { c.Postfix.SASLSocket = "sasl2" },
		"Postfix.SASLListen":       func(c *config.Config) { c.Postfix.SASLListen = "127.0.0.1:3000" },
		"Postfix.SASLMechanisms":   func(c *config.Config) { c.Postfix.SASLMechanisms = config.StringList{"PLAIN"} },
		"Postfix.SASLVerb":         func(c *config.Config) { c.Postfix.SASLVerb = "login" },
		"Postfix.PolicySocket":     func(c *config.Config) { c.Postfix.PolicySocket = "/run/other" },
		"Postfix.PolicyListen":     func(c *config.Config) { c.Postfix.PolicyListen = "127.0.0.1:3001" },
		"Postfix.PolicyVerb":       func(c *config.Config) { c.Postfix.PolicyVerb = "rcpt" },
		"Postfix.PolicyFailAction": func(c *config.Config) { c.Postfix.PolicyFailAction = "DUNNO" },
		"Postfix.TCPTable":         func(c *config.Config) { c.Postfix.TCPTable[0].Verb = "alias" },
		"SocketPrefix":             func(c *config.Config) { c.SocketPrefix = "/run/x/shitenno" },
	} {
		old, cfg := base(), base()
		change(cfg)
		got := restartKeys("Postfix", old, cfg, &old.Postfix.Service, &cfg.Postfix.Service)
		if key == "SocketPrefix" {
			// Every relative socket moves.
			if !slices.Contains(got, "Postfix.SASLSocket") || !slices.Contains(got, "Postfix.PolicySocket") {
				t.Errorf("SocketPrefix changed: restart keys %q", got)
			}
			continue
		}
		if !slices.Equal(got, []string{key}) {
			t.Errorf("%s changed: restart keys %q", key, got)
		}
	}
	old, cfg := base(), base()
	if got := restartKeys("Postfix", old, cfg, &old.Postfix.Service, &cfg.Postfix.Service); len(got) != 0 {
		t.Errorf("nothing changed: restart keys %q", got)
	}
	// The other daemons have none of these listeners.
	old, cfg = base(), base()
	cfg.Postfix.SASLSocket = "sasl2"
	if got := restartKeys("Dovecot", old, cfg, &old.Dovecot, &cfg.Dovecot); len(got) != 0 {
		t.Errorf("shitenno-dovecot: restart keys %q", got)
	}
}

// TestReloadChecksAccounts: a reload refuses what start-up refuses, an
// account of the daemon's section that does not exist included; the old
// configuration stays.
func TestReloadChecksAccounts(t *testing.T) {
	dir := shortDir(t)
	a := fakeBackend(t, "a:")
	sock := filepath.Join(dir, "pf.sock")
	cfg := filepath.Join(dir, "c.conf")
	writeConfig(t, cfg, postfixConfig(a.URL, sock, ""))
	r := startProgram(t, postfixProgram(), cfg)
	c := dialSocketmap(t, sock)
	writeConfig(t, cfg, postfixConfig(a.URL, sock, "")+"UID = \"no-such-user-shitenno\"\n")
	r.sigc <- syscall.SIGHUP
	lines := waitLog(t, r.stderr, `configuration reloaded|reload failed.*no-such-user-shitenno`)
	if !strings.Contains(lines[0], "reload failed") {
		t.Fatalf("reload with an unknown UID: %s", lines[0])
	}
	if got := c.query(t, "virtual", "found1"); got != "OK a:found1" {
		t.Fatalf("after the refused reload: %q", got)
	}
	if code := r.stop(t); code != 0 {
		t.Errorf("exit status %d", code)
	}
}

// TestLoginsNeverResent: a login (SMTP AUTH, nginx) or a policy request
// may count something at the backend, so once sent it is not sent again
// to the next URL, also after a reload that changed SASLVerb (which takes
// a restart: the SMTP AUTH server still sends the old one).
func TestLoginsNeverResent(t *testing.T) {
	var second atomic.Int64
	stop := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	defer hang.Close()
	defer close(stop)
	next := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		second.Add(1)
		fmt.Fprint(w, `{"Status":"OK","Data":{}}`)
	}))
	defer next.Close()
	cfgFor := func(saslVerb string) *config.Config {
		c := &config.Config{
			RemoteURL:      []string{hang.URL + "/", next.URL + "/"},
			Timeout:        config.Duration{Duration: 2 * time.Second},
			AttemptTimeout: config.Duration{Duration: 100 * time.Millisecond},
			MaxReplySize:   1 << 20,
		}
		c.Postfix.SASLVerb, c.Postfix.PolicyVerb = saslVerb, "policy"
		return c
	}
	b, err := NewBackend(cfgFor("sasl"), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.prepare(cfgFor("login"))
	if err != nil {
		t.Fatal(err)
	}
	b.commit(st)
	for _, verb := range []string{"sasl", "policy", bridge.NginxVerb} {
		if _, err := b.Lookup(t.Context(), verb, map[string]string{"User": "u"}); err == nil {
			t.Errorf("%s: answered, through the second URL", verb)
		}
	}
	if n := second.Load(); n != 0 {
		t.Fatalf("%d logins or policy requests sent again to the second URL", n)
	}
	// A lookup is.
	if _, err := b.Lookup(t.Context(), "virtual", "k"); err != nil {
		t.Fatalf("lookup not failed over: %v", err)
	}
}
