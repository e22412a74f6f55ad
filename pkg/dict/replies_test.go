package dict

import (
	"errors"
	"net"
	"testing"
	"time"
)

// recConn records each Write; with fail set, every Write fails.
type recConn struct {
	net.Conn
	writes []string
	fail   bool
}

func (c *recConn) Write(b []byte) (int, error) {
	if c.fail {
		return 0, errors.New("gone")
	}
	c.writes = append(c.writes, string(b))
	return len(b), nil
}

func (c *recConn) SetWriteDeadline(time.Time) error { return nil }

// Replies completed out of order go out in request order, the ready ones
// behind the head in the same write.
func TestReplyQueueOrder(t *testing.T) {
	nc := &recConn{}
	q := newReplyQueue(nc, 3, time.Second, func(err error) { t.Errorf("failed: %v", err) })
	i1, o1, alone := q.take()
	if !alone {
		t.Fatal("first reply not alone")
	}
	i2, o2, _ := q.take()
	i3, o3, alone := q.take()
	if alone {
		t.Fatal("third reply alone")
	}
	q.done(i3, append(o3, "c\n"...))
	q.done(i2, append(o2, "b\n"...))
	if len(nc.writes) != 0 {
		t.Fatalf("wrote %q before the head was ready", nc.writes)
	}
	q.done(i1, append(o1, "a\n"...))
	if len(nc.writes) != 1 || nc.writes[0] != "a\nb\nc\n" {
		t.Fatalf("writes %q", nc.writes)
	}
	if len(q.room) != 0 {
		t.Fatalf("%d places still taken", len(q.room))
	}
	i, o, alone := q.take() // a freed place is reused, in order
	if !alone {
		t.Fatal("reply after a drained queue not alone")
	}
	q.done(i, append(o, "d\n"...))
	if len(nc.writes) != 2 || nc.writes[1] != "d\n" {
		t.Fatalf("writes %q", nc.writes)
	}
}

// After a failed write the queue reports it once and drops the rest,
// still freeing their places so the reader never waits for them.
func TestReplyQueueFailure(t *testing.T) {
	nc := &recConn{fail: true}
	fails := 0
	q := newReplyQueue(nc, 2, time.Second, func(error) { fails++ })
	for range 4 {
		i, o, _ := q.take()
		q.done(i, append(o, "x\n"...))
	}
	if fails != 1 || len(q.room) != 0 {
		t.Fatalf("%d failures reported, %d places taken", fails, len(q.room))
	}
}
