package testutil

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestServeConns: each connection is handled; at cleanup a handler still
// blocked on its connection is released and waited for.
func TestServeConns(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	returned := make(chan struct{}, 2)
	outer := t
	t.Run("serve", func(t *testing.T) {
		ServeConns(t, l, func(c net.Conn) {
			defer func() { returned <- struct{}{} }()
			_, _ = io.Copy(c, c) // echo until the peer or the cleanup closes
		})
		for i := 0; i < 2; i++ {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			outer.Cleanup(func() { c.Close() }) // still open at the subtest's cleanup
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 1)
			if _, err := io.ReadFull(c, b); err != nil || b[0] != 'x' {
				t.Fatalf("echo: %q %v", b, err)
			}
		}
	})
	// The subtest's cleanup has run: both handlers returned, the listener
	// is closed.
	for i := 0; i < 2; i++ {
		select {
		case <-returned:
		default:
			t.Fatal("a handler was still running after cleanup")
		}
	}
	if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
		c.Close()
		t.Fatal("listener still open after cleanup")
	}
}
