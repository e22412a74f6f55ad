//go:build unix

package remote

import (
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
)

// rawPair is a TCP connection and the h1Raw of its client end.
func rawPair(t *testing.T) (*h1Raw, net.Conn) {
	t.Helper()
	c, s := testutil.ConnPair(t, "tcp")
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	r := newH1Raw(c)
	if r == nil {
		t.Fatal("no h1Raw for a TCP connection")
	}
	return r, s
}

// TestH1RawExchange: the request is written in the read, whole even when
// the socket takes only part of it at once (the rest goes the classic
// way), and the response read; a reset connection reports a read error,
// one gone before the request a write error, with how much went out.
func TestH1RawExchange(t *testing.T) {
	for _, size := range []int{100, 4 << 20} {
		r, s := rawPair(t)
		_ = r.nc.(*net.TCPConn).SetWriteBuffer(4096)
		req := bytes.Repeat([]byte("q"), size)
		got := make(chan []byte, 1)
		go func() {
			b := make([]byte, size)
			_, err := io.ReadFull(s, b)
			if err != nil {
				got <- nil
				return
			}
			got <- b
			_, _ = s.Write([]byte("response"))
		}()
		r.send(req)
		buf := make([]byte, 64)
		n, err := io.ReadAtLeast(r, buf, len("response"))
		if err != nil || string(buf[:n]) != "response" {
			t.Fatalf("size %d: read %q, %v", size, buf[:n], err)
		}
		if b := <-got; !bytes.Equal(b, req) || r.wrote != size || r.werr != nil {
			t.Fatalf("size %d: server got %d bytes, wrote %d, %v", size, len(b), r.wrote, r.werr)
		}
	}

	r, s := rawPair(t)
	go func() {
		b := make([]byte, 3)
		_, _ = io.ReadFull(s, b)
		_ = s.(*net.TCPConn).SetLinger(0)
		s.Close() // a reset
	}()
	r.send([]byte("req"))
	_, err := r.Read(make([]byte, 64))
	if err == nil || r.werr != nil || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reset: %v (write error %v), want ECONNRESET on the read", err, r.werr)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("reset: %#v, want a read OpError", err)
	}

	r, _ = rawPair(t)
	r.nc.Close()
	r.send([]byte("req"))
	if _, err := r.Read(make([]byte, 64)); err == nil || r.werr == nil || r.wrote != 0 {
		t.Fatalf("closed: %v, write error %v after %d bytes", err, r.werr, r.wrote)
	}
}
