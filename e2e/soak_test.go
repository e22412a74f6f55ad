package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Soak figures (issue #18): messages sent, how long each backend outage
// lasts, and how a message goes out (every soakSwaksEvery-th through
// swaks, the others through a Go SMTP session).
const (
	soakMessages   = 500
	soakOutageFor  = 3 * time.Second
	soakSwaksEvery = 25
	soakAlias      = "soak@example.org"  // what senders write (virtual_alias_maps)
	soakMailbox    = "alice@example.net" // the dovecot user it is rewritten to
	soakPassword   = "soak secret"
)

// TestSoakMailFlow runs the cluster the way the README configures it:
// SMTP into a private postfix whose virtual alias domains, aliases and
// transports come from shitenno-postfix (the README's main.cf), LMTP into
// a private dovecot whose passdb/userdb go through shitenno-dovecot (the
// README's dovecot files), and IMAP through nginx (the README's mail{}
// block, auth_http to shitenno-nginx) to read the mail back. One backend
// serves all three; while soakMessages messages are sent it goes down
// three times for soakOutageFor: answering 500, answering nothing until
// shitenno's Timeout, and refusing connections (its listener closed).
//
// What counts as lost: postfix must never bounce or reject (5xx) because
// of an outage, only defer. A message postfix accepted (250 after DATA)
// must reach the mailbox exactly once, after `postqueue -f`. A message
// the client got a 4xx for (451 at RCPT from a TEMP lookup, 451 at DATA
// when cleanup's alias expansion failed) is not postfix's yet: the client
// resends it, in a new session after a short pause, until it is accepted,
// as a real client would. So every one of the soakMessages messages must
// be read back once, and no shitenno daemon may have exited.
//
// The issue says swaks → postfix: one swaks process per message would
// take most of the time budget, so swaks sends every soakSwaksEvery-th
// message and a Go net/smtp client sends the others through the same
// smtpd.
func TestSoakMailFlow(t *testing.T) {
	requireRoot(t)
	requireTool(t, "swaks")
	postqueue := requireTool(t, "postqueue")
	requireTool(t, "dovecot")
	if _, err := os.Stat("/usr/lib/dovecot/lmtp"); err != nil {
		if inCI() {
			t.Fatal("dovecot's LMTP server is missing: run scripts/install-peers.sh (dovecot-lmtpd)")
		}
		t.Skip("dovecot-lmtpd is not installed")
	}
	begin := time.Now()
	dir := testDir(t)
	fb := newFakeBackend(t, nil)
	pfd := startDaemon(t, dir, "postfix", fb.BaseURL())
	dvd := startDaemon(t, dir, "dovecot", fb.BaseURL())
	ngd := startDaemon(t, dir, "nginx", fb.BaseURL())

	dv := startDovecot(t, dir, dvd.Socket, `protocols = imap lmtp
service lmtp {
  unix_listener lmtp-soak {
    mode = 0666
  }
}
`)
	lmtpSock := filepath.Join(dv.dir, "run", "lmtp-soak") // base_dir + the listener's name
	users := map[string]string{soakMailbox: soakPassword}
	healthy := soakBackend(lmtpSock,
		dovecotUsers(users, filepath.Join(dv.dir, "home")),
		nginxUsers(t, users, map[string]int{"imap": dv.imapPort}, nil))
	fb.SetAnswer(healthy)

	readme := docReplace(t, docBlock(t, "intro", "socketmap", ""), "/run/shitenno-postfix", pfd.Socket)
	pf := startPostfix(t, dir, pfd.Socket, readme)
	imapPort := freePort(t)
	startNginx(t, dir, mailServers(t, "unix:"+ngd.Socket+":/auth", imapPort, freePort(t), freePort(t)), "", imapPort)
	t.Logf("cluster up in %s", time.Since(begin).Round(time.Millisecond))

	// The outages start when the sending reaches evenly spaced messages,
	// so each one falls amid the sending and the deliveries it queued;
	// each is the same backend, on the same address, going away.
	setAnswer := func(a func(BackendRequest) (int, string)) func() { return func() { fb.SetAnswer(a) } }
	outages := []struct {
		kind     string
		down, up func()
	}{
		{"HTTP 500", setAnswer(backendFaults["http500"]), setAnswer(healthy)},
		{"hang", setAnswer(backendFaults["hang"]), setAnswer(healthy)},
		{"refused", fb.Down, func() {
			if err := fb.Up(); err != nil {
				t.Errorf("backend back up: %v", err)
			}
		}},
	}
	var outagesOver sync.WaitGroup
	next := 0
	sendBegin := time.Now()
	s := &soakSender{t: t, pf: pf}
	for i := 1; i <= soakMessages; i++ {
		if next < len(outages) && i == (next+1)*soakMessages/(len(outages)+1) {
			o := outages[next]
			o.down()
			outagesOver.Add(1)
			time.AfterFunc(soakOutageFor, func() { o.up(); outagesOver.Done() })
			next++
		}
		s.send(i)
	}
	s.close()
	outagesOver.Wait()
	sent := time.Since(sendBegin)

	// Flush what the outages deferred (transport lookups, LMTP's userdb
	// lookups) until the queue is empty; each flush retries it at once.
	flushBegin := time.Now()
	waitFor(t, 60*time.Second, "the postfix queue to empty", func() bool {
		out, _, _ := run(t, 30*time.Second, postqueue, "-c", pf.dir, "-p")
		if strings.Contains(out, "Mail queue is empty") {
			return true
		}
		run(t, 30*time.Second, postqueue, "-c", pf.dir, "-f")
		time.Sleep(time.Second)
		return false
	})
	flushed := time.Since(flushBegin)

	// The daemons were started once, by this test: still running means
	// the same PIDs served from the first message to the last.
	var pids []string
	for _, d := range []*Daemon{pfd, dvd, ngd} {
		name := filepath.Base(d.Cmd.Path)
		if d.Exited() {
			t.Errorf("%s (pid %d) exited during the soak:\n%s", name, d.Cmd.Process.Pid, d.Output.String())
		}
		pids = append(pids, fmt.Sprintf("%s %d", name, d.Cmd.Process.Pid))
	}
	maillog := func() string {
		b, _ := os.ReadFile(filepath.Join(pf.dir, "log", "postfix.log"))
		return string(b)
	}
	// postlogd writes asynchronously: give the last delivery's line a
	// moment, without failing here, so that a bounce is reported as one.
	delivered := regexp.MustCompile(`relay=[^ ]*lmtp-soak.* status=sent`)
	text := maillog()
	for end := time.Now().Add(10 * time.Second); len(delivered.FindAllString(text, -1)) < soakMessages && time.Now().Before(end); {
		time.Sleep(100 * time.Millisecond)
		text = maillog()
	}
	if bounced := regexp.MustCompile(`(?m)^.* status=(bounced|expired) .*$`).FindAllString(text, -1); len(bounced) > 0 {
		t.Errorf("postfix bounced %d deliveries; the first: %s", len(bounced), bounced[0])
	}
	if n := len(delivered.FindAllString(text, -1)); n != soakMessages {
		t.Errorf("postfix logged %d LMTP deliveries, want %d", n, soakMessages)
	}
	readBegin := time.Now()
	soakCheckMailbox(t, imapPort)
	read := time.Since(readBegin)

	var kinds []string
	for _, o := range outages {
		kinds = append(kinds, o.kind)
	}
	t.Logf("soak: %d messages (%d via swaks), %d outages of %s (%s); SMTP 4xx resent: %d; postfix deferrals: %d; send %s, flush %s, IMAP read %s, total %s; same daemons throughout: %s",
		soakMessages, soakMessages/soakSwaksEvery, len(outages), soakOutageFor, strings.Join(kinds, ", "),
		s.tempFails, strings.Count(text, "status=deferred"), sent.Round(time.Millisecond), flushed.Round(time.Millisecond),
		read.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond), strings.Join(pids, ", "))
	if s.tempFails < len(outages) {
		t.Errorf("only %d SMTP temporary failures for %d outages: the outages did not reach postfix", s.tempFails, len(outages))
	}
}

// soakBackend answers the postfix maps of the README's main.cf (the
// alias domain example.org, soakAlias rewritten to soakMailbox, whose
// domain goes by LMTP to lmtpSock; nobody has sender logins) and passes
// dovecot and nginx lookups to their answer functions.
func soakBackend(lmtpSock string, dovecot, nginx func(BackendRequest) (int, string)) func(BackendRequest) (int, string) {
	_, mailboxDomain, _ := strings.Cut(soakMailbox, "@")
	return func(r BackendRequest) (int, string) {
		var key string
		switch r.Verb {
		case "passdb", "userdb":
			return dovecot(r)
		case "nginx":
			return nginx(r)
		}
		if err := json.Unmarshal(r.Object, &key); err != nil {
			return 400, `{"error":"bad object"}`
		}
		key = strings.ToLower(key)
		switch {
		case r.Verb == "domains" && key == "example.org",
			r.Verb == "virtual" && key == soakAlias,
			r.Verb == "transport" && (key == mailboxDomain || strings.HasSuffix(key, "@"+mailboxDomain)):
			return 200, okReply(r, "OK", map[string]string{
				"domains": "example.org", "virtual": soakMailbox, "transport": "lmtp:unix:" + lmtpSock,
			}[r.Verb])
		}
		return 200, okReply(r, "KO", nil)
	}
}

// soakMessageID is message i's Message-ID, read back through IMAP.
func soakMessageID(i int) string { return fmt.Sprintf("<soak-%d@client.test.invalid>", i) }

// soakSender sends the soak messages, resending each one after a 4xx.
type soakSender struct {
	t         *testing.T
	pf        *postfixInstance
	c         *smtp.Client // the open Go SMTP session, nil between sessions
	nc        net.Conn     // its connection, for deadlines (net/smtp sets none)
	tempFails int          // 4xx replies, each followed by a resend
}

// soakRetryPause is how long the client waits before resending after a
// 4xx (a real client's queue waits minutes; the outage lasts seconds).
const soakRetryPause = 200 * time.Millisecond

// send hands message i to postfix, retrying after every 4xx; a 5xx, a
// broken session or an outage that never ends fails the test.
func (s *soakSender) send(i int) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		if i%soakSwaksEvery == 0 {
			err = s.swaks(i)
		} else {
			err = s.smtp(i)
		}
		if err == nil {
			return
		}
		var te *textproto.Error
		if !errors.As(err, &te) || te.Code/100 != 4 {
			s.t.Fatalf("message %d: %v: postfix must defer, never refuse, while the backend is down", i, err)
		}
		s.tempFails++
		if time.Now().After(deadline) {
			s.t.Fatalf("message %d still deferred after 30 s: %v", i, err)
		}
		s.close() // a new session for the resend, as after a real 4xx
		time.Sleep(soakRetryPause)
	}
}

// smtp sends message i over the Go SMTP session, opening one if needed.
func (s *soakSender) smtp(i int) error {
	if s.c == nil {
		nc, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.pf.port), 10*time.Second)
		if err != nil {
			return err
		}
		_ = nc.SetDeadline(time.Now().Add(time.Minute))
		c, err := smtp.NewClient(nc, "127.0.0.1")
		if err != nil {
			nc.Close()
			return err
		}
		if err := c.Hello("client.test.invalid"); err != nil {
			c.Close()
			return err
		}
		s.c, s.nc = c, nc
	}
	// A stuck smtpd fails the message (and the test) instead of hanging it.
	_ = s.nc.SetDeadline(time.Now().Add(time.Minute))
	if err := s.c.Mail("sender@test.invalid"); err != nil {
		return err
	}
	if err := s.c.Rcpt(soakAlias); err != nil {
		return err
	}
	w, err := s.c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "From: sender@test.invalid\r\nTo: %s\r\nSubject: soak %d\r\nMessage-ID: %s\r\n\r\nsoak body %d\r\n",
		soakAlias, i, soakMessageID(i), i)
	return w.Close()
}

// swaks sends message i with swaks, reporting its last reply as a
// *textproto.Error when postfix did not queue it.
func (s *soakSender) swaks(i int) error {
	out := s.pf.swaksTo(s.t, "sender@test.invalid", soakAlias, "",
		"--header", "Subject: soak "+strconv.Itoa(i), "--header", "Message-Id: "+soakMessageID(i),
		"--body", fmt.Sprintf("soak body %d", i))
	if strings.Contains(out, "<-  250 2.0.0 Ok: queued") {
		return nil
	}
	// swaks marks an unexpected reply "<** ", e.g. "<** 451 4.3.0 …".
	if m := regexp.MustCompile(`(?m)^<\*\* (\d{3}) (.*)$`).FindStringSubmatch(out); m != nil {
		code, _ := strconv.Atoi(m[1])
		return &textproto.Error{Code: code, Msg: m[2]}
	}
	return fmt.Errorf("swaks: no reply to judge in\n%s", out)
}

// close ends the Go SMTP session, if any.
func (s *soakSender) close() {
	if s.c != nil {
		_ = s.c.Quit()
		s.c.Close()
		s.c = nil
	}
}

// soakCheckMailbox logs in through nginx and checks that the mailbox
// holds each soak message exactly once, header and body readable.
func soakCheckMailbox(t *testing.T, imapPort int) {
	t.Helper()
	m := dialMail(t, imapPort)
	if got := m.imapLogin("a1", soakMailbox, soakPassword); !strings.HasPrefix(last(got), "a1 OK") {
		t.Fatalf("IMAP LOGIN through nginx: %q", got)
	}
	m.deadline(60 * time.Second)
	m.send("a2 STATUS INBOX (MESSAGES)\r\n")
	if got := m.tagged("a2"); !strings.Contains(strings.Join(got, "\n"), fmt.Sprintf("(MESSAGES %d)", soakMessages)) {
		t.Errorf("STATUS INBOX: %q; want %d messages", got, soakMessages)
	}
	m.send("a3 SELECT INBOX\r\n")
	if got := m.tagged("a3"); !strings.HasPrefix(last(got), "a3 OK") {
		t.Fatalf("SELECT INBOX: %q", got)
	}
	m.send("a4 FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)] BODY.PEEK[TEXT])\r\n")
	lines := m.tagged("a4")
	if !strings.HasPrefix(last(lines), "a4 OK") {
		t.Fatalf("FETCH: %q", last(lines))
	}
	ids, bodies := map[string]int{}, map[string]int{}
	for _, l := range lines {
		if v, ok := strings.CutPrefix(strings.ToLower(l), "message-id: "); ok {
			ids[v]++
		}
		if strings.HasPrefix(l, "soak body ") {
			bodies[l]++
		}
	}
	// One line per kind of trouble, listing the messages, rather than
	// one per message.
	var noID, dupID, noBody, dupBody []int
	for i := 1; i <= soakMessages; i++ {
		switch ids[strings.ToLower(soakMessageID(i))] {
		case 0:
			noID = append(noID, i)
		case 1:
		default:
			dupID = append(dupID, i)
		}
		switch bodies[fmt.Sprintf("soak body %d", i)] {
		case 0:
			noBody = append(noBody, i)
		case 1:
		default:
			dupBody = append(dupBody, i)
		}
	}
	if len(noID)+len(dupID)+len(noBody)+len(dupBody) > 0 || len(ids) != soakMessages {
		t.Errorf("mailbox: %d distinct Message-IDs, want %d; messages missing %v, read more than once %v; bodies missing %v, read more than once %v",
			len(ids), soakMessages, noID, dupID, noBody, dupBody)
	}
	m.send("a5 LOGOUT\r\n")
	m.tagged("a5")
}
