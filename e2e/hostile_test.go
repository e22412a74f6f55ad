package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Hostile clients against the real daemon binaries (issue 10, "Hostile
// clients"): each attack gets its connection closed or a protocol error,
// a well-behaved client on another connection keeps getting right answers
// meanwhile, and afterwards the daemon's descriptors, goroutines and
// client-connection gauge are back at their idle baseline.

// hostileTarget is one daemon under attack, with its health endpoint (for
// the go_goroutines gauge) and its idle baseline.
type hostileTarget struct {
	p           protocol
	d           *Daemon
	metricsURL  string
	backendPort int
	base        daemonUsage
}

// daemonUsage is what must return to baseline after an attack. Backend
// keep-alive connections are counted apart: the transport keeps idle ones
// for 90 s whatever the clients did, each with one descriptor and two
// goroutines, so they are subtracted before comparing.
type daemonUsage struct {
	fds, goroutines, clientConns, backendConns int
}

func (u daemonUsage) String() string {
	return fmt.Sprintf("fds=%d goroutines=%d client_connections=%d backend_conns=%d",
		u.fds, u.goroutines, u.clientConns, u.backendConns)
}

// net returns fds and goroutines without the backend connections' share.
func (u daemonUsage) net() (fds, goroutines int) {
	return u.fds - u.backendConns, u.goroutines - 2*u.backendConns
}

func newHostileTarget(t *testing.T, p protocol, backendURL string) *hostileTarget {
	t.Helper()
	dir := testDir(t)
	hp := freePort(t)
	d := startDaemonWith(t, dir, p.name, backendURL, "", fmt.Sprintf("HealthListen = \"127.0.0.1:%d\"", hp))
	h := &hostileTarget{p: p, d: d, metricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", hp)}
	_, port, _ := net.SplitHostPort(strings.TrimSuffix(strings.TrimPrefix(backendURL, "http://"), "/"))
	h.backendPort, _ = strconv.Atoi(port)
	waitDial(t, "tcp", fmt.Sprintf("127.0.0.1:%d", hp))
	// Warm up so that the baseline includes what a first lookup sets up
	// for good (backend connection, HTTP transport goroutines).
	for i := 0; i < 3; i++ {
		if ans, err := p.lookupOnce(d.Socket, 10*time.Second); err != nil || p.verdict(ans) != "found" {
			t.Fatalf("warm-up lookup: %q %v", ans, err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	h.base = h.usage(t)
	return h
}

// usage samples the daemon's descriptors (/proc), goroutines and open
// client connections (/metrics) and its backend connections.
func (h *hostileTarget) usage(t testing.TB) daemonUsage {
	t.Helper()
	pid := h.d.Cmd.Process.Pid
	u := daemonUsage{fds: openFDs(t, pid), backendConns: tcpConnsTo(t, pid, h.backendPort)}
	// No keep-alive: the scrape's own connection must not linger in the
	// next sample.
	cl := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := cl.Get(h.metricsURL)
	if err != nil {
		t.Fatalf("scraping %s: %v", h.metricsURL, err)
	}
	defer resp.Body.Close()
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "go_goroutines":
			u.goroutines, _ = strconv.Atoi(val)
			found++
		case "shitenno_client_connections":
			f, _ := strconv.ParseFloat(val, 64)
			u.clientConns = int(f)
			found++
		}
	}
	if found != 2 {
		t.Fatalf("%s lacks go_goroutines or shitenno_client_connections", h.metricsURL)
	}
	return u
}

// settle waits until the daemon is back at its idle baseline: the same
// open client connections, and descriptors and goroutines (backend
// keep-alive connections aside) within a small slack for timers and the
// scrape itself. A leak of one goroutine or descriptor per hostile
// connection exceeds it, since every attack is repeated.
func (h *hostileTarget) settle(t *testing.T) {
	t.Helper()
	const slack = 3
	bf, bg := h.base.net()
	var last daemonUsage
	deadline := time.Now().Add(20 * time.Second)
	for {
		last = h.usage(t)
		f, g := last.net()
		if last.clientConns <= h.base.clientConns && f <= bf+slack && g <= bg+slack {
			t.Logf("%s back to baseline: now %s, idle baseline %s", h.p.name, last, h.base)
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s did not return to baseline: now %s, idle baseline %s", h.p.name, last, h.base)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tcpConnsTo counts the TCP sockets of pid whose remote port is port.
func tcpConnsTo(t testing.TB, pid, port int) int {
	t.Helper()
	inodes := map[string]bool{}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	n := 0
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(l)
			if len(fs) < 10 {
				continue
			}
			_, rp, _ := strings.Cut(fs[2], ":")
			if p, err := strconv.ParseInt(rp, 16, 32); err == nil && int(p) == port && inodes[fs[9]] {
				n++
			}
		}
	}
	return n
}

// goodClient looks up alice@example.org on fresh connections until stop is
// called; stop returns how many lookups succeeded and what went wrong.
func (h *hostileTarget) goodClient() (stop func() (int, []string)) {
	var (
		done = make(chan struct{})
		wg   sync.WaitGroup
		mu   sync.Mutex
		n    int
		errs []string
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			ans, err := h.p.lookupOnce(h.d.Socket, 10*time.Second)
			mu.Lock()
			if err != nil || h.p.verdict(ans) != "found" {
				errs = append(errs, fmt.Sprintf("%q %v", ans, err))
			} else {
				n++
			}
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() (int, []string) {
		close(done)
		wg.Wait()
		return n, errs
	}
}

// exchange is what an attacking connection saw.
type exchange struct {
	reply  []byte        // every byte the daemon sent
	closed bool          // the daemon closed (EOF or reset) before wait passed
	after  time.Duration // when the connection ended or wait passed
}

// attack dials sock, writes chunks with gap between them (from another
// goroutine, so that a daemon that closes mid-way is seen at once),
// half-closes when half is set, and reads until the daemon closes the
// connection or wait passes.
func attack(sock string, chunks [][]byte, gap time.Duration, half bool, wait time.Duration) (exchange, error) {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return exchange{}, err
	}
	defer c.Close()
	begin := time.Now()
	go func() {
		for i, ch := range chunks {
			if i > 0 && gap > 0 {
				time.Sleep(gap)
			}
			_ = c.SetWriteDeadline(time.Now().Add(wait))
			if _, err := c.Write(ch); err != nil {
				return // the daemon closed: what the reader will report
			}
		}
		if half {
			_ = c.(*net.UnixConn).CloseWrite()
		}
	}()
	_ = c.SetReadDeadline(begin.Add(wait))
	var ex exchange
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		ex.reply = append(ex.reply, buf[:n]...)
		if err != nil {
			ex.after = time.Since(begin)
			ex.closed = errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
			if !ex.closed && !errors.Is(err, os.ErrDeadlineExceeded) {
				return ex, err
			}
			return ex, nil
		}
	}
}

// attackClosed is attack with string chunks, waiting limit and 5 s more:
// by then the daemon must have closed the connection.
func attackClosed(sock string, chunks []string, gap time.Duration, half bool, limit time.Duration) (exchange, error) {
	bs := make([][]byte, len(chunks))
	for i, c := range chunks {
		bs[i] = []byte(c)
	}
	ex, err := attack(sock, bs, gap, half, limit+5*time.Second)
	if err == nil && !ex.closed {
		err = fmt.Errorf("connection still open after %s (got %q)", ex.after, trunc(ex.reply))
	}
	return ex, err
}

// hostileCase is one attack and what must come of it.
type hostileCase struct {
	name string
	run  func(sock string) error
}

// closes: the daemon must close the connection within limit, without
// sending anything.
func closes(name string, limit time.Duration, chunks ...string) hostileCase {
	return closesAfter(name, limit, 0, false, chunks...)
}

// closesAfter is closes with a gap between chunks and an optional
// half-close after the last one.
func closesAfter(name string, limit, gap time.Duration, half bool, chunks ...string) hostileCase {
	return hostileCase{name: name, run: func(sock string) error {
		ex, err := attackClosed(sock, chunks, gap, half, limit)
		switch {
		case err != nil:
			return err
		case len(ex.reply) > 0:
			return fmt.Errorf("closed, but only after sending %q", trunc(ex.reply))
		case ex.after > limit:
			return fmt.Errorf("closed after %s, want within %s", ex.after.Round(time.Millisecond), limit)
		}
		return nil
	}}
}

// answersThenServes: the daemon answers send with exactly want and keeps
// the connection usable: next, sent on it, is answered with a line or
// frame starting with nextWant.
func answersThenServes(name, send, want, next, nextWant string) hostileCase {
	return hostileCase{name: name, run: func(sock string) error {
		c, err := net.DialTimeout("unix", sock, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		if _, err := io.WriteString(c, send); err != nil {
			return err
		}
		got := make([]byte, len(want))
		if n, err := io.ReadFull(c, got); err != nil || string(got) != want {
			return fmt.Errorf("got %q (%v), want %q", trunc(got[:n]), err, trunc([]byte(want)))
		}
		if _, err := io.WriteString(c, next); err != nil {
			return err
		}
		got = make([]byte, len(nextWant))
		if n, err := io.ReadFull(c, got); err != nil || string(got) != nextWant {
			return fmt.Errorf("then %q: got %q (%v), want %q…", next, got[:n], err, nextWant)
		}
		return nil
	}}
}

func trunc(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + fmt.Sprintf("…(%d bytes)", len(b))
	}
	return string(b)
}

// bytewise splits s into one-byte chunks (slowloris).
func bytewise(s string) []string {
	out := make([]string, len(s))
	for i := range s {
		out[i] = s[i : i+1]
	}
	return out
}

// The daemons' connection bounds (pkg/socketmap and pkg/dict: 10 s to
// finish a request once started; pkg/mailauth: 5 s for the header block),
// plus slack for a loaded machine.
const (
	lineReadBound   = 10*time.Second + 3*time.Second
	headerReadBound = 5*time.Second + 3*time.Second
	promptly        = 3 * time.Second
)

func postfixHostileCases() []hostileCase {
	good := "25:virtual alice@example.org,"
	return []hostileCase{
		closes("huge length", promptly, "99999999999999999999999999:x,"),
		closes("length over int64", promptly, strings.Repeat("9", 40)+":"),
		closes("negative length", promptly, "-5:abcde,"),
		closes("non-digit length", promptly, "abc:x,"),
		closes("digit then junk", promptly, "5x:hello,"),
		closes("empty length", promptly, ":hello,"),
		closes("leading zero", promptly, "05:hello,"),
		// Refused from the length alone: the payload is never awaited.
		closes("length 100001", promptly, "100001:"),
		closes("missing comma", promptly, "5:hello;"),
		closes("wrong terminator then more", promptly, "5:helloX"+good),
		closes("binary junk", promptly, "\x00\xff\xfe\x80\r\n\x1b[0m junk"),
		closesAfter("truncated frame then EOF", promptly, 0, true, "10:abc"),
		closesAfter("truncated length then EOF", promptly, 0, true, "12"),
		closes("truncated frame stalls", lineReadBound, "10:abc"),
		closesAfter("slowloris", lineReadBound, time.Second, false, bytewise(good)...),
		answersThenServes("no space: PERM, connection kept", "7:virtual,",
			`43:PERM malformed request: expected "name key",`, good, "20:OK alice@example.org,"),
		answersThenServes("request of exactly 100000 bytes answered",
			"100000:virtual "+strings.Repeat("a", 100000-len("virtual ")-len("@x"))+"@x,", "9:NOTFOUND ,",
			good, "20:OK alice@example.org,"),
	}
}

const dictHello = "H3\t2\t0\t\tsomewhere\n"

func dovecotHostileCases() []hostileCase {
	lookup := "Lshared/passdb/alice@example.org\talice@example.org\n"
	return []hostileCase{
		closesAfter("hello without LF then EOF", promptly, 0, true, strings.TrimSuffix(dictHello, "\n")),
		closesAfter("lookup without LF then EOF", promptly, 0, true, dictHello+strings.TrimSuffix(lookup, "\n")),
		closes("lookup without LF stalls", lineReadBound, dictHello+strings.TrimSuffix(lookup, "\n")),
		closes("line over 64 KiB", promptly, dictHello+"Lshared/passdb/"+strings.Repeat("a", 70<<10)+"\n"),
		closes("unknown command", promptly, dictHello+"Zfoo\tbar\n"),
		closes("lower-case command", promptly, dictHello+"lshared/passdb/alice@example.org\n"),
		closes("invalid UTF-8 key", promptly, dictHello+"Lshared/passdb/\xff\xfe@example.org\talice\n"),
		closes("invalid UTF-8 user", promptly, dictHello+"Lshared/passdb/alice@example.org\t\xc3\x28\n"),
		closes("invalid UTF-8 hello", promptly, "H3\t2\t0\t\t\xff\xff\n"),
		closes("hello of an unknown major version", promptly, "H9\t9\t0\t\tsomewhere\n"),
		closes("hello too short", promptly, "H3\n"),
		closes("hello not numeric", promptly, "Hxx\tyy\t0\t\tsomewhere\n"),
		closes("lookup before hello", promptly, lookup),
		closes("second hello", promptly, dictHello+dictHello),
		closes("empty line", promptly, dictHello+"\n"),
		closes("binary junk", promptly, "\x00\xff\xfe\x80junk\r\n"),
		closesAfter("slowloris hello", lineReadBound, time.Second, false, bytewise(dictHello)...),
		closesAfter("slowloris lookup", lineReadBound, time.Second, false,
			append([]string{dictHello}, bytewise(lookup)...)...),
		answersThenServes("line of exactly 64 KiB answered",
			dictHello+"Lshared/passdb/"+strings.Repeat("a", 64<<10-len("Lshared/passdb/"))+"\n", "N\n",
			lookup, "O{"),
	}
}

// nginxAuthHeaders is a well-formed nginx auth_http request's header
// lines, CRLF-terminated, without the request line or the final CRLF.
const nginxAuthHeaders = "Host: localhost\r\nAuth-Method: plain\r\nAuth-User: alice@example.org\r\n" +
	"Auth-Pass: secret\r\nAuth-Protocol: imap\r\nAuth-Login-Attempt: 1\r\nClient-IP: 127.0.0.1\r\n"

// refusesHTTP: the daemon answers nothing but HTTP errors (4xx/5xx) and
// closes the connection; in particular nothing smuggled inside the
// request is answered.
func refusesHTTP(name string, limit time.Duration, chunks ...string) hostileCase {
	return refusesHTTPAfter(name, limit, 0, 0, chunks...)
}

// refusesHTTPWith is refusesHTTP where the error, if one is sent, must
// have this status.
func refusesHTTPWith(status int, name string, chunks ...string) hostileCase {
	return refusesHTTPAfter(name, promptly, 0, status, chunks...)
}

// refusesHTTPAfter is refusesHTTP with a gap between chunks and, unless
// status is 0, the one status the error response must have.
func refusesHTTPAfter(name string, limit, gap time.Duration, status int, chunks ...string) hostileCase {
	return hostileCase{name: name, run: func(sock string) error {
		ex, err := attackClosed(sock, chunks, gap, false, limit)
		if err != nil {
			return err
		}
		if ex.after > limit {
			return fmt.Errorf("closed after %s, want within %s", ex.after.Round(time.Millisecond), limit)
		}
		br := bufio.NewReader(bytes.NewReader(ex.reply))
		for n := 0; ; n++ {
			if _, err := br.Peek(1); err == io.EOF {
				return nil
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return fmt.Errorf("unparsable reply %q: %v", trunc(ex.reply), err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 400 || n > 0 {
				return fmt.Errorf("answered %q, want only one HTTP error then close", trunc(ex.reply))
			}
			if status != 0 && resp.StatusCode != status {
				return fmt.Errorf("answered %q, want status %d", trunc(ex.reply), status)
			}
			if s := resp.Header.Get("Auth-Status"); s == "OK" {
				return fmt.Errorf("error response with Auth-Status OK: %q", trunc(ex.reply))
			}
		}
	}}
}

// answersHTTPOnce: an HTTP/1.0 request the daemon answers with exactly
// one 200 carrying an Auth-Status, then closes the connection.
func answersHTTPOnce(name, wire string) hostileCase {
	return hostileCase{name: name, run: func(sock string) error {
		ex, err := attackClosed(sock, []string{wire}, 0, false, promptly)
		if err != nil {
			return err
		}
		br := bufio.NewReader(bytes.NewReader(ex.reply))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return fmt.Errorf("unparsable reply %q: %v", trunc(ex.reply), err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Auth-Status") == "" {
			return fmt.Errorf("answered %q, want 200 with an Auth-Status", trunc(ex.reply))
		}
		if _, err := br.Peek(1); err != io.EOF {
			return fmt.Errorf("more than one response in %q", trunc(ex.reply))
		}
		return nil
	}}
}

func nginxHostileCases() []hostileCase {
	get11 := "GET /auth HTTP/1.1\r\n"
	// The request an attacker would like answered without the front
	// request's checks: another user, no password.
	smuggled := "GET /auth HTTP/1.1\r\nHost: x\r\nAuth-Method: plain\r\nAuth-User: bob@example.org\r\n" +
		"Auth-Pass: bob's password\r\nAuth-Protocol: imap\r\nAuth-Login-Attempt: 1\r\nClient-IP: 127.0.0.1\r\n\r\n"
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled)
	return []hostileCase{
		refusesHTTPWith(431, "header over 16 KiB",
			"GET /auth HTTP/1.0\r\n"+nginxAuthHeaders+"X-Big: "+strings.Repeat("a", 17<<10)+"\r\n\r\n"),
		refusesHTTPWith(431, "many headers over 16 KiB",
			"GET /auth HTTP/1.0\r\n"+nginxAuthHeaders+strings.Repeat("X-Many: aaaaaaaaaaaaaaaa\r\n", 1000)+"\r\n"),
		refusesHTTPWith(431, "header over 16 KiB without end",
			"GET /auth HTTP/1.0\r\n"+nginxAuthHeaders+"X-Big: "+strings.Repeat("a", 64<<10)),
		refusesHTTPWith(400, "CL.TE smuggling",
			get11+nginxAuthHeaders+"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked),
		refusesHTTPWith(400, "TE.CL smuggling",
			get11+nginxAuthHeaders+"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"+smuggled),
		refusesHTTPWith(400, "chunked body", get11+nginxAuthHeaders+"Transfer-Encoding: chunked\r\n\r\n"+chunked),
		refusesHTTPWith(400, "body behind Content-Length",
			get11+nginxAuthHeaders+fmt.Sprintf("Content-Length: %d\r\n\r\n", len(smuggled))+smuggled),
		refusesHTTPWith(400, "double Content-Length",
			get11+nginxAuthHeaders+"Content-Length: 0\r\nContent-Length: "+strconv.Itoa(len(smuggled))+"\r\n\r\n"+smuggled),
		refusesHTTP("Transfer-Encoding with space before colon", promptly,
			get11+nginxAuthHeaders+"Transfer-Encoding : chunked\r\n\r\n"+chunked),
		refusesHTTPWith(501, "Transfer-Encoding identity",
			get11+nginxAuthHeaders+"Transfer-Encoding: identity\r\n\r\n"+smuggled),
		// A folded line that looks like a header of its own: whoever
		// unfolds differently sees a second Auth-User.
		refusesHTTPWith(400, "obs-fold",
			"GET /auth HTTP/1.0\r\n"+nginxAuthHeaders+"X-Note: a\r\n Auth-User: bob@example.org\r\n\r\n"),
		refusesHTTPWith(400, "obs-fold with tab",
			"GET /auth HTTP/1.0\r\n"+strings.Replace(nginxAuthHeaders, "Auth-Pass: secret\r\n", "Auth-Pass: x\r\n\tsecret\r\n", 1)+"\r\n"),
		refusesHTTPWith(400, "bare LF inside the header block",
			"GET /auth HTTP/1.0\r\n"+strings.Replace(nginxAuthHeaders, "Auth-User: alice@example.org\r\n", "X-Note: a\nAuth-User: alice@example.org\r\n", 1)+"\r\n"),
		refusesHTTPWith(400, "bare LF line endings",
			strings.ReplaceAll("GET /auth HTTP/1.0\r\n"+nginxAuthHeaders+"\r\n", "\r\n", "\n")),
		refusesHTTPWith(400, "bare CR",
			"GET /auth HTTP/1.0\r\n"+nginxAuthHeaders+"X-Note: a\rAuth-Status: OK\r\n\r\n"),
		// nginx sends HELO, MAIL FROM and RCPT TO unescaped with
		// smtp_auth none, so a control byte in a header may be nginx's:
		// it is read as %XX and the request answered (docs/nginx.md).
		answersHTTPOnce("NUL in a header", "GET /auth HTTP/1.0\r\n"+nginxAuthHeaders+"X-Note: a\x00b\r\n\r\n"),
		refusesHTTP("HTTP/0.9 request", promptly, "GET /auth\r\n\r\n"),
		refusesHTTP("POST", promptly, "POST /auth HTTP/1.0\r\n"+nginxAuthHeaders+"Content-Length: 0\r\n\r\n"),
		refusesHTTP("binary junk", promptly, "\x00\xff\xfe\x80junk\r\n\r\n"),
		refusesHTTPAfter("slowloris", headerReadBound, time.Second, 0,
			bytewise("GET /auth HTTP/1.0\r\n"+nginxAuthHeaders+"\r\n")...),
	}
}

// TestHostileClients runs every attack three times at once against each
// daemon while a good client keeps looking up on other connections, then
// checks that the daemon is back at its idle baseline.
func TestHostileClients(t *testing.T) {
	backend := exampleBackend(t, "--quiet")
	cases := map[string][]hostileCase{
		"postfix": postfixHostileCases(),
		"dovecot": dovecotHostileCases(),
		"nginx":   nginxHostileCases(),
	}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			h := newHostileTarget(t, p, backend)
			stop := h.goodClient()
			// Goroutines rather than parallel subtests: -parallel is
			// GOMAXPROCS, and most attacks spend their time waiting.
			const copies = 3
			var wg sync.WaitGroup
			var mu sync.Mutex
			failures := map[string][]string{}
			for _, c := range cases[p.name] {
				for i := 0; i < copies; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := c.run(h.d.Socket); err != nil {
							mu.Lock()
							failures[c.name] = append(failures[c.name], err.Error())
							mu.Unlock()
						}
					}()
				}
			}
			wg.Wait()
			n, errs := stop()
			for _, c := range cases[p.name] {
				if f := failures[c.name]; len(f) > 0 {
					t.Errorf("%s: %d of %d attacks: %s", c.name, len(f), copies, f[0])
				}
			}
			if len(errs) > 0 || n == 0 {
				t.Errorf("good client during the attacks: %d right answers, %d failures: %q", n, len(errs), errs)
			}
			h.settle(t)
			if rss := rssKB(t, h.d.Cmd.Process.Pid); rss > 64<<10 {
				t.Errorf("RSS %d kB after the attacks", rss)
			}
			if h.d.Exited() {
				t.Errorf("daemon exited: %s", h.d.Output.String())
			}
		})
	}
}

// pipelineCase describes requests pipelined on one connection and the
// exact reply each must get.
type pipelineCase struct {
	hello    string   // sent once first (dovecot)
	requests []string // cycled through
	replies  []string // the reply to each request, in order
}

// pipelineCaseFor asks each request once on its own connection to learn
// its exact reply (the example backend's data), so that the pipelined
// replies can be checked byte for byte and in order.
func pipelineCaseFor(t *testing.T, proto, sock string) pipelineCase {
	t.Helper()
	var pc pipelineCase
	users := []string{"alice@example.org", "bob@example.org", "nobody@example.org"}
	for _, u := range users {
		switch proto {
		case "postfix":
			q := "virtual " + u
			pc.requests = append(pc.requests, fmt.Sprintf("%d:%s,", len(q), q))
		case "dovecot":
			pc.hello = dictHello
			pc.requests = append(pc.requests, "Lshared/passdb/"+u+"\t"+u+"\n")
		}
	}
	for _, r := range pc.requests {
		c, err := net.DialTimeout("unix", sock, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, pc.hello+r)
		rep, err := readReply(proto, bufio.NewReader(c))
		c.Close()
		if err != nil {
			t.Fatalf("reply to %q: %v", r, err)
		}
		pc.replies = append(pc.replies, rep)
	}
	if !strings.HasPrefix(pc.replies[0], map[string]string{"postfix": "20:OK ", "dovecot": "O{"}[proto]) ||
		pc.replies[0] == pc.replies[1] || pc.replies[1] == pc.replies[2] {
		t.Fatalf("replies %q cannot tell the requests apart", pc.replies)
	}
	return pc
}

// readReply reads one raw reply: a netstring or a line.
func readReply(proto string, br *bufio.Reader) (string, error) {
	if proto == "dovecot" {
		return br.ReadString('\n')
	}
	p, err := readNetstring(br)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d:%s,", len(p), p), nil
}

// TestPipelinedWithoutReading sends thousands of lookups on one connection
// without reading the replies (postfix and dovecot; nginx speaks one
// request per connection). The daemon answers in request order and stops
// reading while a reply cannot be written, so its memory stays bounded and
// other clients are served meanwhile. A client that starts reading within
// the write timeout (10 s) gets every reply, in order; one that does not
// read for longer finds the connection closed after an in-order prefix of
// the replies.
func TestPipelinedWithoutReading(t *testing.T) {
	backend := exampleBackend(t, "--quiet")
	const n = 20000
	const writeTimeout = 10 * time.Second
	for _, p := range protocols[:2] {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			h := newHostileTarget(t, p, backend)
			pc := pipelineCaseFor(t, p.name, h.d.Socket)
			var wire bytes.Buffer
			wire.WriteString(pc.hello)
			for i := 0; i < n; i++ {
				wire.WriteString(pc.requests[i%len(pc.requests)])
			}
			// stallAndCheck pipelines everything, does not read for d, and
			// meanwhile checks memory and that a good client is served; it
			// returns the connection to read from.
			stallAndCheck := func(t *testing.T, d time.Duration) (net.Conn, <-chan error) {
				c, err := net.DialTimeout("unix", h.d.Socket, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				werr := make(chan error, 1)
				go func() {
					_ = c.SetWriteDeadline(time.Now().Add(d + time.Minute))
					_, err := c.Write(wire.Bytes())
					werr <- err
				}()
				maxRSS := 0
				for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
					maxRSS = max(maxRSS, rssKB(t, h.d.Cmd.Process.Pid))
					if ans, err := p.lookupOnce(h.d.Socket, 5*time.Second); err != nil || p.verdict(ans) != "found" {
						t.Errorf("other client while %d lookups are pipelined: %q %v", n, ans, err)
					}
				}
				if maxRSS > 64<<10 {
					t.Errorf("RSS reached %d kB with %d lookups pipelined", maxRSS, n)
				}
				return c, werr
			}
			// check reads replies until the connection ends or all n came,
			// checking each against its request; it returns how many came
			// and how reading ended.
			check := func(t *testing.T, c net.Conn) (int, error) {
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Minute))
				br := bufio.NewReaderSize(c, 64<<10)
				for i := 0; i < n; i++ {
					rep, err := readReply(p.name, br)
					if err != nil {
						return i, err
					}
					if want := pc.replies[i%len(pc.replies)]; rep != want {
						t.Fatalf("reply %d is %q, want %q: out of order or wrong", i, trunc([]byte(rep)), want)
					}
				}
				return n, nil
			}

			t.Run("reads within the write timeout", func(t *testing.T) {
				c, werr := stallAndCheck(t, writeTimeout/3)
				got, err := check(t, c)
				if got != n {
					t.Fatalf("%d of %d replies, then %v", got, n, err)
				}
				if err := <-werr; err != nil {
					t.Errorf("writing the requests: %v", err)
				}
			})
			t.Run("never reads", func(t *testing.T) {
				c, werr := stallAndCheck(t, writeTimeout+3*time.Second)
				got, err := check(t, c)
				if got == n || got == 0 {
					t.Fatalf("%d of %d replies then %v: want the connection closed after some", got, n, err)
				}
				if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("after %d replies: %v, want the daemon to have closed", got, err)
				}
				if err := <-werr; err == nil {
					t.Errorf("all %d requests were read by a daemon that could not answer them", n)
				}
				t.Logf("%d in-order replies before the daemon gave up", got)
			})
			h.settle(t)
		})
	}
}
