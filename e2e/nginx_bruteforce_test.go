package e2e

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// dialMailFrom is dialMail from another loopback source address, so the
// client's network differs from the test's other connections.
func dialMailFrom(t *testing.T, src string, port int) *mailClient {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return dialMailWith(t, d, port, 20*time.Second)
}

// TestNginxBruteForce: through the real nginx mail proxy, after
// MaxFailures distinct wrong passwords from 127.0.0.2 an IMAP LOGIN from
// there gets the "try again later" NO even with the right password, and
// the backend is not asked; another address still logs in.
func TestNginxBruteForce(t *testing.T) {
	// AllowNets empty: by default loopback is never counted.
	s := newNginxSetupWith(t, "unix", "[BruteForce]\nMaxFailures = 3\nAllowNets = []\n")

	// The same stale password repeated counts once: still not blocked.
	for i := 0; i < 2; i++ {
		c := dialMailFrom(t, "127.0.0.2", s.imap)
		if got := c.imapLogin("a1", "alice", "stale"); last(got) != "a1 NO Invalid login or password" {
			t.Fatalf("stale password: %q", got)
		}
	}
	// Two more distinct wrong passwords, in parallel (each NO is held
	// for Auth-Wait).
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dialMailFrom(t, "127.0.0.2", s.imap)
			if got := c.imapLogin("a1", "alice", fmt.Sprint("wrong", i)); last(got) != "a1 NO Invalid login or password" {
				t.Errorf("wrong password %d: %q", i, got)
			}
		}()
	}
	wg.Wait()
	before := len(s.backend.Requests())
	if before != 4 {
		t.Fatalf("backend got %d requests, want 4", before)
	}

	c := dialMailFrom(t, "127.0.0.2", s.imap)
	got := c.imapLogin("a1", "alice", "secret")
	if last(got) != "a1 NO Too many failed logins, try again later" {
		t.Fatalf("blocked login: %q", got)
	}
	if n := len(s.backend.Requests()); n != before {
		t.Fatalf("backend asked %d times for a blocked network", n-before)
	}
	if !strings.Contains(s.daemon.Proc.Output.String(), "network=127.0.0.2/32") {
		t.Errorf("no block log line: %s", s.daemon.Proc.Output.String())
	}
	if strings.Contains(s.daemon.Proc.Output.String(), "wrong0") {
		t.Errorf("a password was logged")
	}
	// Another /32 is not blocked.
	imapLoginOK(t, s, "alice", "secret")

	// The CLI lists and releases it through the control socket.
	bin := binary(t, "shitenno-nginx")
	out, errOut, code := run(t, 10*time.Second, bin, "--config", s.daemon.Config, "blocked")
	if code != 0 || !strings.Contains(out, "127.0.0.2/32 failures=3") {
		t.Fatalf("blocked: %d %q %q", code, out, errOut)
	}
	if _, errOut, code := run(t, 10*time.Second, bin, "--config", s.daemon.Config, "unblock", "127.0.0.2"); code != 0 {
		t.Fatalf("unblock: %d %q", code, errOut)
	}
	if _, _, code := run(t, 10*time.Second, bin, "--config", s.daemon.Config, "unblock", "127.0.0.2"); code == 0 {
		t.Fatal("second unblock succeeded")
	}
	c = dialMailFrom(t, "127.0.0.2", s.imap)
	if got := c.imapLogin("a1", "alice", "secret"); !strings.HasPrefix(last(got), "a1 OK") {
		t.Fatalf("after unblock: %q", got)
	}
}
