package e2e

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
	"github.com/shitenno/shitenno/pkg/mailauth"
)

// nginxInstance is a private nginx (own prefix, pid, error_log; daemon
// off) with the mail module loaded.
type nginxInstance struct {
	dir      string
	errorLog string
	proc     *Proc
}

// nginxMailModule is where Debian's libnginx-mod-mail installs the module.
const nginxMailModule = "/usr/lib/nginx/modules/ngx_mail_module.so"

// startNginx writes nginx.conf around the given mail{} body (and optional
// http{} body), checks it with nginx -t, runs nginx in the foreground and
// waits until every port in waitPorts accepts connections.
func startNginx(t *testing.T, dir, mailBody, httpBody string, waitPorts ...int) *nginxInstance {
	t.Helper()
	nginx := requireTool(t, "nginx")
	if _, err := os.Stat(nginxMailModule); err != nil {
		if inCI() {
			t.Fatalf("%s missing: run scripts/install-peers.sh (libnginx-mod-mail)", nginxMailModule)
		}
		t.Skipf("%s missing (libnginx-mod-mail)", nginxMailModule)
	}
	n := &nginxInstance{dir: filepath.Join(dir, "nginx")}
	for _, sub := range []string{"", "logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(n.dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	n.errorLog = filepath.Join(n.dir, "logs", "error.log")
	var httpBlock string
	if httpBody != "" {
		// Debian compiles its temp paths under /var/lib/nginx; keep a
		// private instance out of them.
		httpBlock = fmt.Sprintf(`http {
    access_log off;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
%[2]s
}
`, n.dir, httpBody)
	}
	conf := fmt.Sprintf(`load_module %s;
daemon off;
worker_processes 1;
pid %s/nginx.pid;
error_log %s info;
events { worker_connections 128; }
mail {
%s
}
%s`, nginxMailModule, n.dir, n.errorLog, mailBody, httpBlock)
	confPath := filepath.Join(n.dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-p", n.dir + "/", "-c", confPath, "-e", n.errorLog}
	if out, errOut, code := run(t, 30*time.Second, nginx, append([]string{"-t"}, args...)...); code != 0 {
		t.Fatalf("nginx -t failed (%d):\n%s%s\n%s", code, out, errOut, conf)
	}
	n.proc = start(t, nginx, args...)
	logOnFailure(t, "nginx error log", n.errorLog, 0)
	for _, p := range waitPorts {
		waitFor(t, 10*time.Second, fmt.Sprintf("nginx on port %d", p), func() bool {
			if n.proc.Exited() {
				b, _ := os.ReadFile(n.errorLog)
				t.Fatalf("nginx exited: %s\n%s", n.proc.Output.String(), b)
			}
			return dialable("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		})
	}
	return n
}

// nginxDocBlock returns the ```nginx block that follows the marker
// <!-- nginx:NAME --> in docs/nginx.md: the README's configuration is the
// one tested.
func nginxDocBlock(t *testing.T, name string) string {
	t.Helper()
	return docBlock(t, "nginx", name, "nginx")
}

// mailServers is the documented mail{} block's body (docs/nginx.md) with
// the test's auth_http target and loopback ports for IMAP (143), POP3
// (110) and SMTP (587).
func mailServers(t *testing.T, authHTTP string, imap, pop3, smtp int) string {
	t.Helper()
	b := nginxDocBlock(t, "mail")
	body, ok := strings.CutPrefix(strings.TrimSpace(b), "mail {")
	body, ok2 := strings.CutSuffix(body, "}")
	if !ok || !ok2 {
		t.Fatalf("documented block is not one mail {} block:\n%s", b)
	}
	body = docReplace(t, body, "unix:/run/shitenno-nginx:/auth", authHTTP)
	for doc, port := range map[int]int{143: imap, 110: pop3, 587: smtp} {
		body = docReplace(t, body, fmt.Sprintf(" %d;", doc), fmt.Sprintf(" 127.0.0.1:%d;", port))
	}
	return body
}

// proxyHTTP is the documented http{} part of the upstream/proxy_pass form
// with the test's socket and port; the mail{} block then uses
// auth_http 127.0.0.1:<port>/auth.
func proxyHTTP(t *testing.T, sock string, port int) string {
	t.Helper()
	b := nginxDocBlock(t, "proxy")
	b = docReplace(t, b, "unix:/run/shitenno-nginx;", "unix:"+sock+";")
	return docReplace(t, b, "127.0.0.1:8025;", fmt.Sprintf("127.0.0.1:%d;", port))
}

// upLogin is a login an upstream received from nginx.
type upLogin struct{ User, Pass string }

// mailUpstream is a minimal IMAP, POP3 or SMTP server standing for the
// real mail server behind nginx: it accepts any login, records it, and
// answers a few commands with text naming the logged-in user, so a test
// can tell the session was really proxied.
type mailUpstream struct {
	proto string
	port  int
	l     net.Listener

	mu     sync.Mutex
	logins []upLogin
}

func startUpstream(t *testing.T, proto string) *mailUpstream {
	t.Helper()
	l := testutil.Listen(t, "tcp")
	u := &mailUpstream{proto: proto, port: l.Addr().(*net.TCPAddr).Port, l: l}
	testutil.Accept(t, l, func(c net.Conn) {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		u.serve(c)
	})
	return u
}

// Logins returns the logins received so far.
func (u *mailUpstream) Logins() []upLogin {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]upLogin(nil), u.logins...)
}

func (u *mailUpstream) record(user, pass string) {
	u.mu.Lock()
	u.logins = append(u.logins, upLogin{user, pass})
	u.mu.Unlock()
}

func (u *mailUpstream) serve(c net.Conn) {
	br := bufio.NewReader(c)
	switch u.proto {
	case "imap":
		u.serveIMAP(c, br)
	case "pop3":
		u.servePOP3(c, br)
	case "smtp":
		u.serveSMTP(c, br)
	}
}

func (u *mailUpstream) serveIMAP(c net.Conn, br *bufio.Reader) {
	fmt.Fprintf(c, "* OK [CAPABILITY IMAP4rev1] upstream ready\r\n")
	user := ""
	for {
		args, err := readIMAPCommand(c, br)
		if err != nil || len(args) < 2 {
			return
		}
		tag, cmd := args[0], strings.ToUpper(args[1])
		switch {
		case cmd == "LOGIN" && len(args) == 4:
			user = args[2]
			u.record(args[2], args[3])
			fmt.Fprintf(c, "%s OK LOGIN completed by upstream\r\n", tag)
		case cmd == "NOOP":
			fmt.Fprintf(c, "* OK upstream session of %s\r\n%s OK NOOP completed\r\n", user, tag)
		case cmd == "CAPABILITY":
			fmt.Fprintf(c, "* CAPABILITY IMAP4rev1\r\n%s OK CAPABILITY completed\r\n", tag)
		case cmd == "LOGOUT":
			fmt.Fprintf(c, "* BYE upstream\r\n%s OK LOGOUT completed\r\n", tag)
			return
		default:
			fmt.Fprintf(c, "%s BAD unknown command\r\n", tag)
		}
	}
}

// readIMAPCommand reads one command line with its synchronising literals
// ("{n}" at the end of a line: answer "+", read n bytes) and splits it into
// atoms, quoted strings and literals.
func readIMAPCommand(w io.Writer, br *bufio.Reader) ([]string, error) {
	var args []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		lit := -1
		if i := strings.LastIndexByte(line, '{'); i >= 0 && strings.HasSuffix(line, "}") {
			if n, err := strconv.Atoi(line[i+1 : len(line)-1]); err == nil {
				lit, line = n, line[:i]
			}
		}
		args = append(args, splitIMAPLine(line)...)
		if lit < 0 {
			return args, nil
		}
		fmt.Fprintf(w, "+ go ahead\r\n")
		b := make([]byte, lit)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, err
		}
		args = append(args, string(b))
	}
}

func splitIMAPLine(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		switch {
		case s[i] == ' ':
			i++
		case s[i] == '"':
			var b strings.Builder
			i++
			for i < len(s) && s[i] != '"' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
				i++
			}
			i++
			out = append(out, b.String())
		default:
			j := strings.IndexByte(s[i:], ' ')
			if j < 0 {
				j = len(s) - i
			}
			out = append(out, s[i:i+j])
			i += j
		}
	}
	return out
}

// readVerb reads a POP3 or SMTP command line: its verb, upper-cased, and
// the rest.
func readVerb(br *bufio.Reader) (verb, arg string, err error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", "", err
	}
	verb, arg, _ = strings.Cut(strings.TrimRight(line, "\r\n"), " ")
	return strings.ToUpper(verb), arg, nil
}

func (u *mailUpstream) servePOP3(c net.Conn, br *bufio.Reader) {
	fmt.Fprintf(c, "+OK upstream ready\r\n")
	user := ""
	for {
		cmd, arg, err := readVerb(br)
		if err != nil {
			return
		}
		switch cmd {
		case "USER":
			user = arg
			fmt.Fprintf(c, "+OK\r\n")
		case "PASS":
			u.record(user, arg)
			fmt.Fprintf(c, "+OK logged in by upstream\r\n")
		case "STAT":
			fmt.Fprintf(c, "+OK 0 0 upstream session of %s\r\n", user)
		case "QUIT":
			fmt.Fprintf(c, "+OK bye\r\n")
			return
		default:
			fmt.Fprintf(c, "-ERR unknown command\r\n")
		}
	}
}

func (u *mailUpstream) serveSMTP(c net.Conn, br *bufio.Reader) {
	fmt.Fprintf(c, "220 upstream ESMTP\r\n")
	for {
		cmd, arg, err := readVerb(br)
		if err != nil {
			return
		}
		switch cmd {
		case "EHLO", "HELO":
			u.record(arg, "")
			fmt.Fprintf(c, "250 upstream greets %s\r\n", arg)
		case "MAIL":
			fmt.Fprintf(c, "250 2.1.0 upstream accepts %s\r\n", arg)
		case "RCPT":
			fmt.Fprintf(c, "250 2.1.5 upstream ok\r\n")
		case "QUIT":
			fmt.Fprintf(c, "221 2.0.0 bye\r\n")
			return
		default:
			fmt.Fprintf(c, "502 5.5.2 unknown command\r\n")
		}
	}
}

// mailClient is a line-oriented client for nginx's mail listeners. Python's
// imaplib refuses non-ASCII arguments (TESTING.md), hence this one.
type mailClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialMail(t *testing.T, port int) *mailClient {
	t.Helper()
	return dialMailWith(t, net.Dialer{Timeout: 5 * time.Second}, port, 15*time.Second)
}

// dialMailWith connects with d to 127.0.0.1:port, reads the greeting and
// gives the session deadline to run.
func dialMailWith(t *testing.T, d net.Dialer, port int, deadline time.Duration) *mailClient {
	t.Helper()
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m := &mailClient{t: t, c: c, br: bufio.NewReader(c)}
	m.deadline(deadline)
	m.line() // greeting
	return m
}

func (m *mailClient) deadline(d time.Duration) { _ = m.c.SetDeadline(time.Now().Add(d)) }

// line reads one line without its CRLF; "" plus EOF marker on close.
func (m *mailClient) line() string {
	m.t.Helper()
	s, err := m.br.ReadString('\n')
	if err != nil {
		if s == "" {
			return "<EOF>"
		}
		m.t.Fatalf("reading from nginx: %v (got %q)", err, s)
	}
	return strings.TrimRight(s, "\r\n")
}

func (m *mailClient) send(s string) {
	m.t.Helper()
	if _, err := io.WriteString(m.c, s); err != nil {
		m.t.Fatalf("writing to nginx: %v", err)
	}
}

// tagged reads lines until one starts with tag (or the connection ends)
// and returns all of them.
func (m *mailClient) tagged(tag string) []string {
	m.t.Helper()
	var lines []string
	for {
		l := m.line()
		lines = append(lines, l)
		if strings.HasPrefix(l, tag+" ") || l == "<EOF>" {
			return lines
		}
	}
}

// imapLogin sends "tag LOGIN" with both arguments as literals, so that any
// byte (space, quotes, UTF-8) is carried unquoted, and returns the lines up
// to the tagged answer.
func (m *mailClient) imapLogin(tag, user, pass string) []string {
	m.t.Helper()
	m.send(fmt.Sprintf("%s LOGIN {%d}\r\n", tag, len(user)))
	if l := m.line(); !strings.HasPrefix(l, "+") {
		return []string{l}
	}
	m.send(fmt.Sprintf("%s {%d}\r\n", user, len(pass)))
	if l := m.line(); !strings.HasPrefix(l, "+") {
		return []string{l}
	}
	m.send(pass + "\r\n")
	return m.tagged(tag)
}

// smtpReply reads one (possibly multi-line) SMTP reply.
func (m *mailClient) smtpReply() []string {
	m.t.Helper()
	var lines []string
	for {
		l := m.line()
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return lines
		}
	}
}

// smtpAuthPlain says EHLO, then AUTH PLAIN with user and pass as the
// initial response, and returns the reply to AUTH.
func (m *mailClient) smtpAuthPlain(user, pass string) []string {
	m.t.Helper()
	m.send("EHLO client.test\r\n")
	m.smtpReply()
	m.send("AUTH PLAIN " + plainAuth(user, pass) + "\r\n")
	return m.smtpReply()
}

func plainAuth(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// nginxObject decodes the Object a backend received for an nginx lookup.
func nginxObject(t testing.TB, r BackendRequest) map[string]string {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(r.Object, &m); err != nil {
		t.Fatalf("nginx Object is not an object of strings: %s", r.Object)
	}
	return m
}

// maxReplyPass is an upstream password that makes the OK reply's Auth-*
// headers exactly mailauth.MaxReplyBytes long: the largest answer
// shitenno sends must still fit nginx's 1024-byte buffer, also through the
// http{} proxy form, which adds nginx's own Server and Date headers.
func maxReplyPass(port int) string {
	used := len("Auth-Status: OK\r\n") + len("Auth-Server: 127.0.0.1\r\n") +
		len("Auth-Port: \r\n") + len(strconv.Itoa(port)) + len("Auth-Pass: \r\n")
	return strings.Repeat("p", mailauth.MaxReplyBytes-used)
}

// nginxUsers answers nginx lookups: a user in users with the right
// password gets OK pointing at the upstream for the request's protocol; a
// user named "fault-<kind>" gets that backend fault, "maxreply" an OK of
// the largest size shitenno sends (maxReplyPass); anyone else KO with
// the given Data (nil for the contract's defaults).
func nginxUsers(t testing.TB, users map[string]string, upstreams map[string]int, koData any) func(BackendRequest) (int, string) {
	return func(r BackendRequest) (int, string) {
		if r.Verb != "nginx" || r.Path != "/nginx" {
			return 404, "wrong verb"
		}
		var h map[string]string
		if err := json.Unmarshal(r.Object, &h); err != nil {
			return 400, "bad object"
		}
		if kind, ok := strings.CutPrefix(h["Auth-User"], "fault-"); ok {
			return backendFaults[kind](r)
		}
		if h["Auth-User"] == "maxreply" {
			port := upstreams[h["Auth-Protocol"]]
			return 200, okReply(r, "OK", map[string]any{"Auth-Server": "127.0.0.1", "Auth-Port": port, "Auth-Pass": maxReplyPass(port)})
		}
		if pw, ok := users[h["Auth-User"]]; ok && pw == h["Auth-Pass"] && h["Auth-Method"] == "plain" {
			return 200, okReply(r, "OK", map[string]any{"Auth-Server": "127.0.0.1", "Auth-Port": upstreams[h["Auth-Protocol"]]})
		}
		return 200, okReply(r, "KO", koData)
	}
}
