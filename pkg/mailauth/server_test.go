package mailauth

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// ConnState counts a connection up when net/http takes it and down when
// it is closed, so the daemon's open-connections gauge returns to zero.
func TestServerConnState(t *testing.T) {
	h := &HTTPHandler{Handler: HandlerFunc(func(ctx context.Context, req *Request) (Reply, error) {
		return Denied(req), nil
	}), Timeout: time.Second}
	srv := NewServer(h, time.Second, nil)
	var open, opened atomic.Int64
	srv.ConnState = func(d int) {
		open.Add(int64(d))
		if d > 0 {
			opened.Add(1)
		}
	}
	addr := serveServer(t, srv)
	exchange(t, addr, imapWire) // HTTP/1.0: the server closes after the reply
	deadline := time.Now().Add(5 * time.Second)
	for open.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if opened.Load() != 1 || open.Load() != 0 {
		t.Fatalf("opened %d, still open %d; want 1 and 0", opened.Load(), open.Load())
	}
}
