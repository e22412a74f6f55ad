package daemon

import (
	"errors"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
)

// TestMaxConnections: past [Postfix] MaxConnections a new connection is
// closed at once while the open ones keep working; a closed one frees its
// slot; the refusal is counted and warned about once per flood, and a
// reload raises the bound for the next connections.
func TestMaxConnections(t *testing.T) {
	dir := shortDir(t)
	a := fakeBackend(t, "a:")
	sock := filepath.Join(dir, "pf.sock")
	cfgPath := filepath.Join(dir, "shitenno.conf")
	conf := func(n int) string {
		return strings.Replace(postfixConfig(a.URL, sock, ""), "Mode = ", "MaxConnections = "+strconv.Itoa(n)+"\nHealthListen = \"127.0.0.1:0\"\nMode = ", 1)
	}
	writeConfig(t, cfgPath, conf(2))
	r := startProgram(t, postfixProgram(), cfgPath)
	addr := waitLog(t, r.stderr, `health endpoint listening" addr=(http://[0-9.:]+)`)[1]
	c1, c2 := dialSocketmap(t, sock), dialSocketmap(t, sock)
	c1.query(t, "virtual", "found1")
	c2.query(t, "virtual", "found2")
	for i := 0; i < 3; i++ {
		c3 := dialSocketmap(t, sock)
		_ = c3.c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c3.c, "14:virtual found3,")
		if b, err := c3.br.ReadByte(); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("third connection: read %q, %v; want it closed", b, err)
		}
	}
	if got := c1.query(t, "virtual", "found5"); got != "OK a:found5" {
		t.Fatalf("open connection after the refusals: %q", got)
	}
	waitLog(t, r.stderr, `level=WARN msg="connection limit reached: new connections are closed at once" listener=socketmap max_connections=2 refused=1`)
	if n := strings.Count(r.stderr.String(), "connection limit reached"); n != 1 {
		t.Errorf("%d warnings for one flood, want 1", n)
	}
	_, body := httpGet(t, addr+"/metrics")
	if !strings.Contains(body, `shitenno_client_connections_refused_total{listener="socketmap"} 3`) {
		t.Errorf("/metrics: %s", testutil.GrepLines(body, "refused"))
	}
	c2.c.Close()
	freed := false
	for i := 0; i < 100 && !freed; i++ {
		c := dialSocketmap(t, sock)
		_ = c.c.SetDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(c.c, "14:virtual found4,")
		_, err := c.br.ReadByte()
		freed = err == nil
		c.c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	if !freed {
		t.Fatal("closing a connection did not free its slot")
	}
	writeConfig(t, cfgPath, conf(10))
	r.sigc <- syscall.SIGHUP
	waitLog(t, r.stderr, `configuration reloaded`)
	for i := 0; i < 5; i++ {
		// Each stays open (dialSocketmap closes it at the test's end).
		if got := dialSocketmap(t, sock).query(t, "virtual", "found6"); got != "OK a:found6" {
			t.Fatalf("after raising MaxConnections, connection %d: %q", i, got)
		}
	}
}

// A counted connection still gives the server its socket's descriptor,
// which connserver.Sequential reads raw; a connection without one says so.
func TestLimitConnSyscallConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := (&limitConn{Conn: a}).SyscallConn(); err == nil {
		t.Error("a pipe reported a raw descriptor")
	}
	c, _ := testutil.ConnPair(t, "tcp")
	var sc syscall.Conn = &limitConn{Conn: c}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil || fd < 0 {
		t.Fatalf("Control: fd %d, %v", fd, err)
	}
}
