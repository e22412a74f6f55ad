package dict

import (
	"net"
	"sync"
	"time"

	"github.com/shitenno/shitenno/pkg/connserver"
)

// replyQueue keeps a connection's replies in request order: the client
// matches each reply to its oldest pending command. Whoever completes the
// reply at the head (the reader for a lone lookup, else the lookup's
// goroutine) writes it together with every ready reply behind it, in one
// write. No writer goroutine is woken per reply, and a ready reply waits
// only for the replies before it.
type replyQueue struct {
	nc     net.Conn
	wto    time.Duration
	failed func(error) // called once, after the first failed write

	room chan struct{} // a token per slot in use: the reader waits when full

	mu      sync.Mutex
	slots   []slot // a ring of MaxPipeline places, from head
	head, n int
	writing bool // a goroutine is writing; it will see what else got ready
	broken  bool // a write failed: replies are dropped
	buf     []byte
	wdl     connserver.Deadline
}

// slot is one reply place. Its owner (between take and done) appends to
// out without the lock; the writer reads it once ready.
type slot struct {
	out   []byte
	ready bool
}

func newReplyQueue(nc net.Conn, pipe int, wto time.Duration, failed func(error)) *replyQueue {
	return &replyQueue{nc: nc, wto: wto, failed: failed, room: make(chan struct{}, pipe), slots: make([]slot, pipe)}
}

// take reserves the next place in request order, waiting while
// MaxPipeline replies are pending; it returns the place, its emptied
// buffer, and whether no other reply is pending.
func (q *replyQueue) take() (i int, out []byte, alone bool) {
	q.room <- struct{}{}
	q.mu.Lock()
	defer q.mu.Unlock()
	i = (q.head + q.n) % len(q.slots)
	q.n++
	return i, q.slots[i].out[:0], q.n == 1
}

// done stores the reply of place i and, unless another goroutine is
// writing already, writes the ready replies at the head.
func (q *replyQueue) done(i int, out []byte) {
	q.mu.Lock()
	q.slots[i] = slot{out: out, ready: true}
	if q.writing {
		q.mu.Unlock()
		return
	}
	q.writing = true
	for {
		buf := q.pop(q.buf[:0])
		if len(buf) == 0 {
			break
		}
		q.mu.Unlock()
		err := q.write(buf)
		q.mu.Lock()
		q.buf = buf[:0]
		if cap(buf) > 64<<10 {
			q.buf = nil // do not pin a huge reply buffer on an idle connection
		}
		if err != nil && !q.broken {
			q.broken = true
			defer q.failed(err) // outside the lock
		}
	}
	q.writing = false
	q.mu.Unlock()
}

// pop appends the ready replies at the head to buf (nothing once a write
// failed) and frees their places; q.mu is held.
func (q *replyQueue) pop(buf []byte) []byte {
	for q.n > 0 && q.slots[q.head].ready {
		s := &q.slots[q.head]
		if !q.broken {
			buf = append(buf, s.out...)
		}
		s.ready = false
		if cap(s.out) > 4096 {
			s.out = nil
		}
		q.head = (q.head + 1) % len(q.slots)
		q.n--
		<-q.room
	}
	return buf
}

// write sends buf within the write timeout; only the writing goroutine
// calls it.
func (q *replyQueue) write(buf []byte) error {
	q.wdl.Write(q.nc, q.wto)
	_, err := q.nc.Write(buf)
	return err
}
