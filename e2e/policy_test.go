package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// swaksTo runs swaks against the private postfix for one message from
// sender to the recipients (comma-separated) and returns its transcript.
// quitAfter "" sends the whole message, so END-OF-DATA restrictions run;
// extra are more swaks options.
func (pf *postfixInstance) swaksTo(t *testing.T, sender, to, quitAfter string, extra ...string) string {
	t.Helper()
	swaks := requireTool(t, "swaks")
	args := []string{"--server", fmt.Sprintf("127.0.0.1:%d", pf.port), "--helo", "client.test.invalid",
		"--from", sender, "--to", to, "--timeout", "30"}
	if quitAfter != "" {
		args = append(args, "--quit-after", quitAfter)
	}
	args = append(args, extra...)
	out, errOut, _ := run(t, 90*time.Second, swaks, args...)
	return out + errOut
}

// policyBackend answers the policy verb the way TestPolicyPostfixSMTPD
// expects, keeping the last END-OF-MESSAGE request's attributes.
type policyBackend struct {
	fb  *FakeBackend
	mu  sync.Mutex
	eod map[string]string
}

func newPolicyBackend(t *testing.T) *policyBackend {
	p := &policyBackend{}
	sent := map[string]int{} // quota: recipients per sender
	p.fb = newFakeBackend(t, func(r BackendRequest) (int, string) {
		var a map[string]string
		if err := json.Unmarshal(r.Object, &a); err != nil || r.Verb != "policy" {
			return 400, "bad request"
		}
		if a["protocol_state"] == "END-OF-MESSAGE" {
			p.mu.Lock()
			p.eod = a
			p.mu.Unlock()
			if a["sender"] == "big@test.invalid" {
				return 200, okReply(r, "OK", "REJECT 5.3.4 message too big for you (size "+a["size"]+")")
			}
			return 200, okReply(r, "OK", "DUNNO")
		}
		switch a["recipient"] {
		case "reject@example.org":
			return 200, okReply(r, "OK", "REJECT 5.7.1 not you")
		case "defer@example.org":
			return 200, okReply(r, "OK", "DEFER_IF_PERMIT 4.7.1 try later")
		case "ko@example.org":
			return 200, okReply(r, "KO", nil)
		case "down@example.org":
			return 500, "down"
		}
		if a["sender"] == "quota@test.invalid" {
			p.mu.Lock()
			sent[a["sender"]]++
			n := sent[a["sender"]]
			p.mu.Unlock()
			if n > 2 {
				return 200, okReply(r, "OK", "REJECT 5.7.1 over quota")
			}
		}
		return 200, okReply(r, "OK", "DUNNO")
	})
	return p
}

// TestPolicyPostfixSMTPD: a private postfix smtpd whose RCPT and
// END-OF-DATA restrictions are check_policy_service on shitenno's policy
// listener (unix and inet), driven by swaks. The backend answers REJECT,
// DEFER, DUNNO and a per-sender quota; an outage gives the fail action
// (a 4xx), and every request reaches the backend (never cached).
func TestPolicyPostfixSMTPD(t *testing.T) {
	needRoot(t, "the private postfix")
	p := newPolicyBackend(t)
	dir := testDir(t)
	d, psock, inet := startPolicyDaemon(t, dir, p)
	pf := startPostfix(t, dir, d.Socket,
		"virtual_alias_domains =\nvirtual_alias_maps =\nvirtual_mailbox_domains = example.org\nvirtual_mailbox_maps = static:ok\nvirtual_transport = discard\n",
		policyMainCF(t, "unix:"+psock, "inet:"+inet))

	checkPolicyAnswers(t, pf, p)
}

// TestTrixiePolicy is TestPolicyPostfixSMTPD on postfix 3.10 (Debian 13
// root): RCPT over inet, END-OF-DATA over the unix socket seen through
// the root's path.
func TestTrixiePolicy(t *testing.T) {
	t.Parallel()
	root := trixieRoot(t)
	p := newPolicyBackend(t)
	dir := trixieDir(t, root)
	d, psock, inet := startPolicyDaemon(t, dir, p)
	pf := startTrixiePostfix(t, root, dir, d.Socket,
		"virtual_alias_domains =\nvirtual_alias_maps =\nvirtual_mailbox_domains = example.org\nvirtual_mailbox_maps = static:ok\nvirtual_transport = discard\n",
		policyMainCF(t, "inet:"+inet, "unix:"+trixieIn(root, psock)))
	checkPolicyAnswers(t, pf, p)
}

// startPolicyDaemon starts shitenno-postfix in dir with p's backend and
// both policy listeners: the unix socket psock and the inet address inet.
func startPolicyDaemon(t *testing.T, dir string, p *policyBackend) (d *Daemon, psock, inet string) {
	t.Helper()
	inet = loopbackAddr(t)
	psock = filepath.Join(dir, "policy.sock")
	d = startDaemonWith(t, dir, "postfix", p.fb.BaseURL(), "",
		fmt.Sprintf("PolicySocket = %q\nPolicyListen = %q\n", psock, inet))
	waitDial(t, "tcp", inet)
	waitDial(t, "unix", psock)
	return d, psock, inet
}

// policyMainCF is the README's main.cf for policy delegation
// (docs/postfix.md) with the test's services at RCPT and END-OF-DATA.
func policyMainCF(t *testing.T, rcpt, eod string) string {
	lines := strings.SplitAfter(docBlock(t, "postfix", "policy", ""), "\n")
	const doc = "unix:private/shitenno-policy"
	if len(lines) < 3 {
		t.Fatalf("docs/postfix.md: policy block too short: %q", lines)
	}
	return docReplace(t, lines[1], doc, rcpt) + docReplace(t, lines[2], doc, eod)
}

// checkPolicyAnswers drives pf with swaks through every policy answer.
func checkPolicyAnswers(t *testing.T, pf *postfixInstance, p *policyBackend) {
	t.Helper()
	for _, c := range []struct{ to, want string }{
		{"ok@example.org", "<-  250 2.1.5"},
		{"ko@example.org", "<-  250 2.1.5"},
		{"reject@example.org", "<** 554 5.7.1"},
		{"defer@example.org", "<** 450 4.7.1"},
		{"down@example.org", "<** 450 4.7.1"},
	} {
		out := pf.swaksTo(t, "sender@test.invalid", c.to, "RCPT")
		if !strings.Contains(out, c.want) {
			t.Errorf("RCPT %s: want %q in\n%s", c.to, c.want, out)
		}
	}
	if out := pf.swaksTo(t, "sender@test.invalid", "down@example.org", "RCPT"); !strings.Contains(out, "Service temporarily unavailable") {
		t.Errorf("outage: want the fail action's text in\n%s", out)
	}
	// Quota: the third recipient of the same sender is refused, each
	// request counted (never cached, never coalesced).
	out := pf.swaksTo(t, "quota@test.invalid", "a@example.org,b@example.org,c@example.org", "RCPT")
	if strings.Count(out, "<-  250 2.1.5") != 2 || !strings.Contains(out, "<** 554 5.7.1 <c@example.org>: Recipient address rejected: over quota") {
		t.Errorf("quota: want 2 accepted and c refused in\n%s", out)
	}
	// END-OF-DATA: size and recipient_count reach the backend.
	out = pf.swaksTo(t, "sender@test.invalid", "a@example.org,b@example.org", "")
	if !strings.Contains(out, "<-  250 2.0.0 Ok: queued") {
		t.Errorf("END-OF-DATA DUNNO: want queued in\n%s", out)
	}
	p.mu.Lock()
	got := p.eod
	p.mu.Unlock()
	if got["recipient_count"] != "2" || got["size"] == "" || got["size"] == "0" || got["request"] != "smtpd_access_policy" {
		t.Errorf("END-OF-DATA attributes %v", got)
	}
	out = pf.swaksTo(t, "big@test.invalid", "a@example.org", "")
	if !strings.Contains(out, "<** 554 5.3.4 ") || !strings.Contains(out, "message too big for you (size ") {
		t.Errorf("END-OF-DATA REJECT: want 554 5.3.4 in\n%s", out)
	}
}
