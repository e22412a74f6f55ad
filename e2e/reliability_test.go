package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
)

// protocol is a minimal client of one shitenno daemon, enough to ask for
// alice@example.org and classify the answer.
type protocol struct {
	name string
	// ask sends one lookup on c and returns the raw answer.
	ask func(c net.Conn, br *bufio.Reader) (string, error)
	// found, notfound and temp recognise the answers of each verdict.
	found, notfound, temp func(answer string) bool
	// oneShot: the daemon closes after each answer (HTTP/1.0 for nginx).
	oneShot bool
}

var protocols = []protocol{
	{
		name: "postfix",
		ask: func(c net.Conn, br *bufio.Reader) (string, error) {
			req := "virtual alice@example.org"
			if _, err := fmt.Fprintf(c, "%d:%s,", len(req), req); err != nil {
				return "", err
			}
			return readNetstring(br)
		},
		found:    startsWith("OK "),
		notfound: is("NOTFOUND "),
		temp:     startsWith("TEMP "),
	},
	{
		name: "dovecot",
		ask: func(c net.Conn, br *bufio.Reader) (string, error) {
			if _, err := io.WriteString(c, "H3\t2\t0\t\tsomewhere\nLshared/passdb/alice@example.org\talice@example.org\n"); err != nil {
				return "", err
			}
			l, err := br.ReadString('\n')
			return strings.TrimSuffix(l, "\n"), err
		},
		found:    startsWith("O{"),
		notfound: is("N"),
		temp:     startsWith("F"),
	},
	{
		name:    "nginx",
		oneShot: true,
		ask: func(c net.Conn, br *bufio.Reader) (string, error) {
			if _, err := io.WriteString(c, "GET /auth HTTP/1.0\r\nHost: localhost\r\nAuth-Method: plain\r\n"+
				"Auth-User: alice@example.org\r\nAuth-Pass: secret\r\nAuth-Protocol: imap\r\n"+
				"Auth-Login-Attempt: 1\r\nClient-IP: 127.0.0.1\r\n\r\n"); err != nil {
				return "", err
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return "", err
			}
			resp.Body.Close()
			return resp.Header.Get("Auth-Status"), nil
		},
		found:    is("OK"),
		notfound: is("Invalid login or password"),
		temp:     startsWith("Temporary server problem"),
	},
}

// verdict classifies an answer: "found", "notfound", "temp" or "".
func (p protocol) verdict(a string) string {
	switch {
	case p.found(a):
		return "found"
	case p.notfound(a):
		return "notfound"
	case p.temp(a):
		return "temp"
	}
	return ""
}

// is and startsWith match an answer: the whole of it, or its start.
func is(s string) func(string) bool { return func(a string) bool { return a == s } }

func startsWith(prefix string) func(string) bool {
	return func(a string) bool { return strings.HasPrefix(a, prefix) }
}

func readNetstring(br *bufio.Reader) (string, error) {
	n, err := br.ReadString(':')
	if err != nil {
		return "", err
	}
	l, err := strconv.Atoi(strings.TrimSuffix(n, ":"))
	if err != nil || l > 200000 {
		return "", fmt.Errorf("bad netstring length %q", n)
	}
	b := make([]byte, l+1)
	if _, err := io.ReadFull(br, b); err != nil {
		return "", err
	}
	if b[l] != ',' {
		return "", fmt.Errorf("netstring without comma")
	}
	return string(b[:l]), nil
}

// lookupOnce dials the daemon and asks one lookup.
func (p protocol) lookupOnce(sock string, d time.Duration) (string, error) {
	c, err := net.DialTimeout("unix", sock, d)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(d))
	return p.ask(c, bufio.NewReader(c))
}

// faultBackend serves one kind of broken backend. The URL returned is a
// base URL; stop releases anything hanging.
func faultBackend(t *testing.T, kind string) string {
	t.Helper()
	// stop releases handlers that hang or trickle; it must be closed
	// before the server's Close waits for them.
	stop := make(chan struct{})
	okBody := func(data string) string {
		return `{"Verb":"x","Object":"x","Status":"OK","Data":` + data + `}`
	}
	var h http.HandlerFunc
	switch kind {
	case "refused":
		return fmt.Sprintf("http://127.0.0.1:%d/", freePort(t))
	case "close-mid-body", "close-before-reply":
		a := testutil.AcceptTCP(t, func(c net.Conn) {
			defer c.Close()
			req, err := http.ReadRequest(bufio.NewReader(c))
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if kind == "close-mid-body" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"Status\":\"OK\",\"Da")
			}
		})
		return "http://" + a.Addr() + "/"
	case "500":
		h = func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }
	case "404":
		h = func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }
	case "non-json":
		h = func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>hello</html>") }
	case "status-maybe":
		h = func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"Verb":"x","Object":"x","Status":"MAYBE","Data":"x"}`)
		}
	case "wrong-data-type":
		h = func(w http.ResponseWriter, r *http.Request) {
			// A number suits none of the protocols (postfix wants a
			// string, dovecot and nginx an object).
			io.WriteString(w, okBody(`12345`))
		}
	case "100MB-body":
		h = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"Status":"OK","Data":"`)
			chunk := []byte(strings.Repeat("x", 64<<10))
			for i := 0; i < 1600; i++ {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			io.WriteString(w, `"}`)
		}
	case "trickle":
		h = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(200)
			for _, b := range []byte(okBody(`"x"`)) {
				if _, err := w.Write([]byte{b}); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-stop:
					return
				case <-r.Context().Done():
					return
				case <-time.After(500 * time.Millisecond):
				}
			}
		}
	case "hang":
		h = func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-stop:
			case <-r.Context().Done():
			}
		}
	default:
		t.Fatalf("unknown fault %q", kind)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		close(stop)
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv.URL + "/"
}

var faultKinds = []string{"refused", "500", "404", "non-json", "status-maybe", "wrong-data-type",
	"100MB-body", "trickle", "hang", "close-mid-body", "close-before-reply"}

// TestBackendFaults: for each daemon and each way the backend can fail,
// the client gets the protocol's temporary failure within Timeout + 1 s,
// never "not found"; the daemon keeps serving and its memory stays bounded.
func TestBackendFaults(t *testing.T) {
	const timeout = 2 * time.Second
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			for _, kind := range faultKinds {
				t.Run(kind, func(t *testing.T) {
					dir := testDir(t)
					d := startDaemon(t, dir, p.name, faultBackend(t, kind))
					begin := time.Now()
					ans, err := p.lookupOnce(d.Socket, timeout+5*time.Second)
					el := time.Since(begin)
					if err != nil {
						t.Fatalf("no answer: %v", err)
					}
					if v := p.verdict(ans); v != "temp" {
						t.Errorf("answer %q is %q, want a temporary failure", ans, v)
					}
					// Generous slack for a loaded CI machine: the bound that
					// matters is "not the peer's own 30-100 s timeout".
					if el > timeout+time.Second+2*time.Second {
						t.Errorf("answer took %s, Timeout is %s", el, timeout)
					}
					// Still serving: a second lookup gets the same verdict.
					if ans2, err := p.lookupOnce(d.Socket, timeout+5*time.Second); err != nil || p.verdict(ans2) != "temp" {
						t.Errorf("second lookup: %q %v", ans2, err)
					}
					if rss := rssKB(t, d.Cmd.Process.Pid); rss > 64<<10 {
						t.Errorf("RSS %d kB after %s", rss, kind)
					}
				})
			}
		})
	}
}

// rssKB reads a process's resident set size in KiB.
func rssKB(t testing.TB, pid int) int {
	t.Helper()
	return procStatusKB(t, pid, "VmRSS:")
}

func procStatusKB(t testing.TB, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading /proc/%d/status: %v", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field) {
			n, _ := strconv.Atoi(strings.Fields(l)[1])
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

func openFDs(t testing.TB, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestLoad1000Connections: 1000 concurrent client connections across the
// three daemons, each looking up repeatedly for a bounded time against the
// example backend: no errors, no wrong answers, and descriptors return to
// their idle baseline afterwards.
func TestLoad1000Connections(t *testing.T) {
	backend := exampleBackend(t, "--quiet")
	dir := testDir(t)
	daemons := map[string]*Daemon{}
	for _, p := range protocols {
		daemons[p.name] = startDaemon(t, dir, p.name, backend)
	}
	base := map[string]int{}
	for name, d := range daemons {
		base[name] = openFDs(t, d.Cmd.Process.Pid)
	}
	const perDaemon = 334 // ≈1000 in all
	deadline := time.Now().Add(3 * time.Second)
	var lookups, failures atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	fail := func(err error) {
		failures.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	for _, p := range protocols {
		sock := daemons[p.name].Socket
		for i := 0; i < perDaemon; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var c net.Conn
				var br *bufio.Reader
				for time.Now().Before(deadline) {
					if c == nil {
						var err error
						c, err = net.DialTimeout("unix", sock, 5*time.Second)
						if err != nil {
							fail(fmt.Errorf("%s dial: %w", p.name, err))
							return
						}
						br = bufio.NewReader(c)
					}
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					ans, err := p.ask(c, br)
					if err != nil {
						fail(fmt.Errorf("%s: %w", p.name, err))
						c.Close()
						return
					}
					if p.verdict(ans) != "found" {
						fail(fmt.Errorf("%s: wrong answer %q", p.name, ans))
					}
					lookups.Add(1)
					if p.oneShot || p.name == "dovecot" {
						// nginx speaks HTTP/1.0 (one request per connection);
						// dovecot sends a hello on every new connection.
						c.Close()
						c = nil
					}
				}
				if c != nil {
					c.Close()
				}
			}()
		}
	}
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d failures in %d lookups; first: %v", n, lookups.Load(), firstErr.Load())
	}
	t.Logf("%d lookups over 1000 connections", lookups.Load())
	for name, d := range daemons {
		pid := d.Cmd.Process.Pid
		waitFor(t, 10*time.Second, name+" descriptors back to baseline", func() bool {
			return openFDs(t, pid) <= base[name]+10
		})
		if rss := rssKB(t, pid); rss > 64<<10 {
			t.Errorf("%s RSS %d kB after load", name, rss)
		}
	}
}
