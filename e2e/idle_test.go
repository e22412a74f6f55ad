package e2e

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// idleDictConns opens n dict connections to sock, each sending its hello
// and then nothing (as idle auth workers do), and returns them open.
func idleDictConns(t *testing.T, sock string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		var c net.Conn
		var err error
		for try := 0; ; try++ {
			c, err = net.DialTimeout("unix", sock, 5*time.Second)
			// A full accept backlog refuses a unix connect with EAGAIN
			// instead of queueing it: wait for the daemon to catch up.
			if err == nil || !errors.Is(err, syscall.EAGAIN) || try == 500 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("connection %d: %v", len(conns)+1, err)
		}
		conns = append(conns, c)
		// A connection past MaxConnections is closed by the daemon: its
		// hello may fail, as dovecot's would before it reconnects.
		_, _ = io.WriteString(c, dictHello)
	}
	return conns
}

// dictAsk looks alice up on a new connection and returns the reply line.
func dictAsk(t *testing.T, sock string) (string, error) {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, dictHello+"Lshared/userdb/alice@example.org\talice@example.org\n"); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

// TestDovecotTenThousandIdle (#18): 10 000 idle dict connections do not
// take shitenno-dovecot down. With the default MaxConnections (1024) the
// daemon holds 1024 and closes the rest at once (dovecot reconnects);
// with MaxConnections = 10000 it holds all of them, which gives the
// memory one idle connection costs. Either way it still answers.
func TestDovecotTenThousandIdle(t *testing.T) {
	const n = 10000
	backend := exampleBackend(t, "--quiet")
	for _, tc := range []struct {
		name    string
		section string
		held    int
	}{
		{"default limit", "", 1024},
		{"MaxConnections 10000", "MaxConnections = 10001\n", n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testDir(t)
			d := startDaemonWith(t, dir, "dovecot", backend, "", tc.section)
			pid := d.Cmd.Process.Pid
			if got, err := dictAsk(t, d.Socket); err != nil || !strings.HasPrefix(got, "O") {
				t.Fatalf("first lookup: %q %v", got, err)
			}
			time.Sleep(time.Second)
			rss0, fds0 := rssKB(t, pid), openFDs(t, pid)
			begin := time.Now()
			conns := idleDictConns(t, d.Socket, n)
			// Let the daemon accept (or refuse) them all and settle.
			waitFor(t, 60*time.Second, "the daemon to take the connections", func() bool {
				return openFDs(t, pid)-fds0 >= tc.held
			})
			time.Sleep(2 * time.Second)
			rss, fds := rssKB(t, pid), openFDs(t, pid)
			held := fds - fds0
			if held < tc.held || held > tc.held+8 {
				t.Errorf("the daemon holds %d connections, want %d", held, tc.held)
			}
			if d.Exited() {
				t.Fatalf("the daemon exited: %s", d.Output.String())
			}
			perConn := float64(rss-rss0) / float64(held)
			t.Logf("%d idle dict connections opened in %v: the daemon holds %d, RSS %d KiB (+%d KiB, %.1f KiB per connection)",
				len(conns), time.Since(begin).Round(time.Millisecond), held, rss, rss-rss0, perConn)
			if tc.held == n && rss > 256<<10 {
				t.Errorf("RSS %d KiB with %d idle connections, want < 256 MiB", rss, n)
			}
			if tc.held < n {
				// At the limit a new client is refused at once; one
				// idle client leaving makes room.
				conns[0].Close()
			}
			waitFor(t, 10*time.Second, "a lookup among the idle connections", func() bool {
				got, err := dictAsk(t, d.Socket)
				return err == nil && strings.HasPrefix(got, "O")
			})
		})
	}
}
