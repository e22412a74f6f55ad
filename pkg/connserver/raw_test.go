package connserver

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
)

// lineServer serves a line protocol through NewSequential on a real
// socket (so that Serve reads it raw where it can): each line is
// answered with "<line>!\n". A line "wait" blocks until release is
// closed, so that more arrives while a request is being handled.
type lineServer struct {
	release chan struct{}
	handled chan string
	t       Timeouts
	wrap    func(net.Conn) net.Conn
}

func (s *lineServer) start(t *testing.T, network string) (net.Conn, *Sequential) {
	t.Helper()
	cli, nc := testutil.ConnPair(t, network)
	if s.wrap != nil {
		nc = s.wrap(nc)
	}
	complete := func(b []byte) bool { return bytes.IndexByte(b, '\n') >= 0 }
	c := NewSequential(nc, bufio.NewReaderSize(nc, 64), s.t.Or(time.Minute), complete,
		func(ctx context.Context, br *bufio.Reader, out []byte) ([]byte, bool) {
			line, err := br.ReadString('\n')
			if err != nil {
				return nil, false
			}
			line = strings.TrimSuffix(line, "\n")
			if line == "wait" {
				<-s.release
			}
			if s.handled != nil {
				s.handled <- line
			}
			return append(append(out, line...), "!\n"...), true
		})
	done := make(chan struct{})
	go func() { defer close(done); c.Serve(context.Background()); c.Close() }() // as Core.serve does
	t.Cleanup(func() { c.Close(); <-done })
	_ = cli.SetDeadline(time.Now().Add(10 * time.Second))
	return cli, c
}

func readLines(t *testing.T, br *bufio.Reader, want ...string) {
	t.Helper()
	for _, w := range want {
		got, err := br.ReadString('\n')
		if err != nil || got != w+"!\n" {
			t.Fatalf("reply %q, %v; want %q", got, err, w+"!\n")
		}
	}
}

// opaqueConn hides the socket's descriptor: the classic reads only.
type opaqueConn struct{ net.Conn }

// TestSequentialRaw: requests pipelined, split over several writes,
// larger than the reader's buffer, or sent while the one before is being
// handled are all answered, in order, over a socket read raw and over
// one read the classic way. The last case is the one ReadRaw's skipped
// read must not lose: the next request arrives while the reader is not
// waiting, and nothing but the poller's readiness announces it (the idle
// timeout is a minute, past the client's deadline).
func TestSequentialRaw(t *testing.T) {
	for _, tc := range []struct {
		name, network string
		wrap          func(net.Conn) net.Conn
	}{
		{"unix", "unix", nil},
		{"tcp", "tcp", nil},
		{"classic", "unix", func(c net.Conn) net.Conn { return opaqueConn{c} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("pipelined", func(t *testing.T) {
				cli, _ := (&lineServer{wrap: tc.wrap}).start(t, tc.network)
				br := bufio.NewReader(cli)
				if _, err := io.WriteString(cli, "a\nb\nc\n"); err != nil {
					t.Fatal(err)
				}
				readLines(t, br, "a", "b", "c")
			})
			t.Run("split", func(t *testing.T) {
				cli, _ := (&lineServer{wrap: tc.wrap}).start(t, tc.network)
				br := bufio.NewReader(cli)
				for _, part := range []string{"sp", "li", "t\nne", "xt\n"} {
					if _, err := io.WriteString(cli, part); err != nil {
						t.Fatal(err)
					}
					time.Sleep(5 * time.Millisecond)
				}
				readLines(t, br, "split", "next")
				if _, err := io.WriteString(cli, "again\n"); err != nil {
					t.Fatal(err)
				}
				readLines(t, br, "again")
			})
			t.Run("long", func(t *testing.T) {
				cli, _ := (&lineServer{wrap: tc.wrap}).start(t, tc.network)
				br := bufio.NewReader(cli)
				long := strings.Repeat("x", 1000) // the buffer is 64 bytes
				if _, err := io.WriteString(cli, "short\n"+long+"\nafter\n"); err != nil {
					t.Fatal(err)
				}
				readLines(t, br, "short", long, "after")
			})
			t.Run("during", func(t *testing.T) {
				s := &lineServer{release: make(chan struct{}), handled: make(chan string, 4), wrap: tc.wrap}
				cli, _ := s.start(t, tc.network)
				br := bufio.NewReader(cli)
				for i := range 3 {
					if _, err := io.WriteString(cli, "wait\n"); err != nil {
						t.Fatal(err)
					}
					time.Sleep(20 * time.Millisecond) // the handler is waiting
					if _, err := io.WriteString(cli, "next\n"); err != nil {
						t.Fatal(err)
					}
					time.Sleep(20 * time.Millisecond) // "next" is in the socket
					s.release <- struct{}{}
					readLines(t, br, "wait", "next")
					if got := <-s.handled + " " + <-s.handled; got != "wait next" {
						t.Fatalf("round %d: handled %q", i, got)
					}
				}
			})
		})
	}
}

// TestSequentialRawStop: Stop wakes a connection waiting for a request
// inside ReadRaw at once, and lets one being handled write its reply
// first; the idle timeout ends a connection waiting there.
func TestSequentialRawStop(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		cli, c := (&lineServer{}).start(t, "unix")
		br := bufio.NewReader(cli)
		if _, err := io.WriteString(cli, "a\n"); err != nil {
			t.Fatal(err)
		}
		readLines(t, br, "a")
		c.Stop()
		if b, err := io.ReadAll(br); err != nil || len(b) != 0 {
			t.Fatalf("after Stop: %q, %v; want EOF", b, err)
		}
	})
	t.Run("busy", func(t *testing.T) {
		s := &lineServer{release: make(chan struct{})}
		cli, c := s.start(t, "unix")
		br := bufio.NewReader(cli)
		if _, err := io.WriteString(cli, "wait\n"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		c.Stop()
		close(s.release)
		readLines(t, br, "wait")
		if b, err := io.ReadAll(br); err != nil || len(b) != 0 {
			t.Fatalf("after the reply: %q, %v; want EOF", b, err)
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		cli, _ := (&lineServer{t: Timeouts{Idle: 50 * time.Millisecond}}).start(t, "unix")
		start := time.Now()
		if b, err := io.ReadAll(cli); err != nil || len(b) != 0 {
			t.Fatalf("%q, %v; want EOF", b, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("closed after %v", d)
		}
	})
}

// Close of a connection whose handler is running returns once the
// handler does, and Core.Close does not hold its lock meanwhile.
func TestSequentialRawClose(t *testing.T) {
	s := &lineServer{release: make(chan struct{})}
	cli, c := s.start(t, "unix")
	if _, err := io.WriteString(cli, "wait\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.Close() }()
	time.Sleep(20 * time.Millisecond)
	close(s.release)
	wg.Wait()
	if b, _ := io.ReadAll(cli); len(b) != 0 {
		t.Fatalf("reply %q written on a closed connection", b)
	}
}
