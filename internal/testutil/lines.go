package testutil

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// LineConn is a test's client of a line protocol (dict, dovecot auth):
// it sends text and reads replies a line at a time, each read bounded by
// ReadTimeout.
type LineConn struct {
	T testing.TB
	net.Conn
	R *bufio.Reader
}

// DialLines connects to a server under test (see Dial).
func DialLines(t testing.TB, network, addr string) *LineConn {
	t.Helper()
	nc := Dial(t, network, addr)
	return &LineConn{T: t, Conn: nc, R: bufio.NewReader(nc)}
}

// Send writes s.
func (c *LineConn) Send(s string) {
	c.T.Helper()
	if _, err := io.WriteString(c.Conn, s); err != nil {
		c.T.Fatal(err)
	}
}

// Line reads one line, its "\n" included.
func (c *LineConn) Line() string {
	c.T.Helper()
	_ = c.SetReadDeadline(time.Now().Add(ReadTimeout))
	l, err := c.R.ReadString('\n')
	if err != nil {
		c.T.Fatalf("read: %v (got %q)", err, l)
	}
	return l
}

// Rest reads what comes until the server closes the connection.
func (c *LineConn) Rest() ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(ReadTimeout))
	return io.ReadAll(c.R)
}

// Expect reads one line and fails the test unless it is want; what names
// the line in the failure.
func (c *LineConn) Expect(what, want string) {
	c.T.Helper()
	if got := c.Line(); got != want {
		c.T.Fatalf("%s %q, want %q", what, got, want)
	}
}

// Exchanges makes each exchange, a request and the reply wanted, in turn
// with roundTrip (which sends a request and returns the reply) and
// reports every reply that is not the one wanted.
func Exchanges(t testing.TB, roundTrip func(send string) string, exchanges [][2]string) {
	t.Helper()
	for _, x := range exchanges {
		if got := roundTrip(x[0]); got != x[1] {
			t.Errorf("sent %.60q: got %q, want %q", x[0], got, x[1])
		}
	}
}

// Exchange writes req on c and returns the reply read takes off br (c's
// buffered reader) within ReadTimeout, failing the test if either fails.
func Exchange(t testing.TB, c net.Conn, br *bufio.Reader, req string, read func(*bufio.Reader) (string, error)) string {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(ReadTimeout))
	reply, err := read(br)
	if err != nil {
		t.Fatalf("reply to %q: %v", req, err)
	}
	return reply
}

// DialExchanges dials a server under test (see Dial) and makes the
// exchanges (see Exchanges) in turn on that one connection, each with
// Exchange and read. It returns the connection and its buffered reader,
// for more.
func DialExchanges(t testing.TB, network, addr string, read func(*bufio.Reader) (string, error), exchanges [][2]string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := Dial(t, network, addr)
	br := bufio.NewReader(c)
	Exchanges(t, func(req string) string { return Exchange(t, c, br, req, read) }, exchanges)
	return c, br
}
