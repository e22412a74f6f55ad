package tcptable

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
)

// tableHandler: "missing" is not found, "fail" fails, "block" waits for
// release; anything else is found as "v:<key>".
type tableHandler struct {
	started chan struct{}
	release chan struct{}
}

func (h *tableHandler) ServeTCPTable(ctx context.Context, key []byte) Reply {
	switch string(key) {
	case "missing":
		return Reply{Kind: NotFound}
	case "fail":
		return Reply{Kind: Temp, Text: "backend unreachable"}
	case "block":
		h.started <- struct{}{}
		<-h.release
	}
	return Reply{Kind: OK, Text: "v:" + string(key)}
}

func start(t *testing.T, s *Server) (string, <-chan error) {
	t.Helper()
	l, done := testutil.Serve(t, "tcp", s.Serve)
	return l.Addr().String(), done
}

// readLine reads one reply line.
func readLine(br *bufio.Reader) (string, error) { return br.ReadString('\n') }

func TestServerLookups(t *testing.T) {
	s := &Server{Handler: &tableHandler{}, MaxRequestSize: 100}
	addr, done := start(t, s)
	testutil.DialExchanges(t, "tcp", addr, readLine, [][2]string{
		{"get alice@example.org\n", "200 v:alice@example.org\n"},
		{"get foo%20bar%25\n", "200 v:foo%20bar%25\n"},
		{"get missing\n", "500 not%20found\n"},
		{"get fail\n", "400 backend%20unreachable\n"},
		{"put a b\n", "400 malformed%20request:%20expected%20\"get%20<key>\"\n"},
		{"get %zz\n", "400 malformed%20request:%20expected%20\"get%20<key>\"\n"},
		{"get " + strings.Repeat("x", 200) + "\n", "400 request%20too%20long\n"},
		{"get after\n", "200 v:after\n"}, // the connection survived all of the above
	})
	testutil.Stopped(t, s.Shutdown, done, ErrServerClosed)
}

// TestServerShutdownAnswersInFlight: an idle connection is closed at
// once, a lookup in progress is answered first.
func TestServerShutdownAnswersInFlight(t *testing.T) {
	h := &tableHandler{started: make(chan struct{}), release: make(chan struct{})}
	s := &Server{Handler: h}
	addr, done := start(t, s)
	busy := testutil.Dial(t, "tcp", addr)
	idle := testutil.Dial(t, "tcp", addr)
	br := bufio.NewReader(busy)
	if _, err := io.WriteString(busy, "get block\n"); err != nil {
		t.Fatal(err)
	}
	testutil.ShutdownCheck{
		Shutdown: s.Shutdown, Served: done, Closed: ErrServerClosed,
		Started: h.started, Release: h.release,
		IdleClosed: func() { testutil.ExpectEOF(t, idle, "idle connection") },
		Answered: func() {
			_ = busy.SetReadDeadline(time.Now().Add(testutil.ReadTimeout))
			if l, err := br.ReadString('\n'); l != "200 v:block\n" {
				t.Errorf("in-flight reply %q %v", l, err)
			}
		},
	}.Run(t)
}

// TestServerLongLineAfterShort: a request line longer than the reader's
// buffer, after one that fitted in it, reaches the Handler intact. The
// short line was handed over without a copy, out of the reader's own
// buffer; kept as scratch space for the next line, the long one was
// joined in that buffer while the reader refilled it.
func TestServerLongLineAfterShort(t *testing.T) {
	long := strings.Repeat("A", 4096) + "get%20evil" + strings.Repeat("B", 1000)
	s := &Server{Handler: HandlerFunc(func(_ context.Context, key []byte) Reply {
		switch string(key) {
		case "short":
			return Reply{Kind: OK, Text: "short"}
		case strings.Replace(long, "%20", " ", 1):
			return Reply{Kind: OK, Text: "intact"}
		}
		return Reply{Kind: OK, Text: fmt.Sprintf("garbled:%.20q", key)}
	})}
	addr, done := start(t, s)
	testutil.DialExchanges(t, "tcp", addr, readLine, [][2]string{
		{"get short\n", "200 short\n"},
		{"get " + long + "\n", "200 intact\n"},
		{"get short\n", "200 short\n"},
		{"get " + long + "\n", "200 intact\n"},
	})
	testutil.Stopped(t, s.Shutdown, done, ErrServerClosed)
}
