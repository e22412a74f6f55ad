package logging

import (
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// sink is one DevLog target: a bounded queue and the goroutine that writes
// it out, reconnecting as needed.
type sink struct {
	out      *Output
	target   string
	fmt      *formatter
	dial     func() (io.Writer, error)
	maxFrame int
	// octetCount frames records as "LEN SP MSG" (RFC 6587 §3.4.1).
	octetCount bool
	// stream targets get a newline after a text record.
	stream bool

	queue    chan []byte
	closing  chan struct{} // closed by close: drain, then exit
	abort    chan struct{} // closed when the flush bound expires
	finished chan struct{} // closed when the writer has exited
	closed   atomic.Bool

	mu        sync.Mutex // guards w for interrupt
	w         io.Writer
	connected bool // ever connected: later connections count as reconnects
}

func (s *sink) start() {
	s.queue = make(chan []byte, s.out.opts.QueueSize)
	s.closing = make(chan struct{})
	s.abort = make(chan struct{})
	s.finished = make(chan struct{})
	go s.run()
}

// log formats a record and queues it without ever blocking.
func (s *sink) log(r slog.Record, fields []field) {
	if s.closed.Load() {
		s.out.dropped.Add(1)
		return
	}
	s.enqueue(s.frame(r.Time, r.Level, r.Message, fields))
}

func (s *sink) frame(t time.Time, l slog.Level, msg string, fields []field) []byte {
	b := make([]byte, 0, 256)
	if s.octetCount {
		// Leave room for the length prefix, filled in below.
		b = append(b, "          "...)
	}
	hdr := len(b)
	b = s.fmt.appendRecord(b, t, l, msg, fields, s.maxFrame)
	if s.stream && !s.octetCount {
		b = append(b, '\n')
	}
	if s.octetCount {
		n := strconv.Itoa(len(b) - hdr)
		p := hdr - len(n) - 1
		copy(b[p:], n)
		b[hdr-1] = ' '
		b = b[p:]
	}
	return b
}

func (s *sink) enqueue(b []byte) {
	select {
	case s.queue <- b:
	default:
		s.out.dropped.Add(1)
	}
}

// run is the writer goroutine.
func (s *sink) run() {
	defer close(s.finished)
	defer s.disconnect()
	for {
		select {
		case b := <-s.queue:
			s.send(b)
		case <-s.closing:
			for {
				select {
				case b := <-s.queue:
					s.send(b)
				default:
					return
				}
			}
		}
	}
}

// send writes one frame, reconnecting once on a write error (the receiver
// restarted). It returns when the frame was written or given up.
func (s *sink) send(b []byte) {
	if s.aborted() {
		s.out.dropped.Add(1)
		return
	}
	for attempt := 0; ; attempt++ {
		if s.w == nil && !s.connect() {
			s.out.dropped.Add(1)
			return
		}
		_, err := s.w.Write(b)
		if err == nil {
			s.out.written.Add(1)
			s.reportDrops()
			return
		}
		s.disconnect()
		if attempt > 0 || s.aborted() {
			s.out.dropped.Add(1)
			return
		}
	}
}

// reportDrops writes a warning after records were lost, once the target
// takes records again, so the gap is visible where the records were meant
// to go.
func (s *sink) reportDrops() {
	if len(s.queue) > 0 {
		// Still catching up: report once the backlog is gone rather
		// than after every record.
		return
	}
	d := s.out.dropped.Load()
	last := s.out.lastReported.Load()
	if d == last || !s.out.lastReported.CompareAndSwap(last, d) {
		return
	}
	b := s.frame(time.Now(), slog.LevelWarn, "log records dropped",
		[]field{{key: "dropped", val: slog.Uint64Value(d - last)}, {key: "dropped_total", val: slog.Uint64Value(d)}})
	if _, err := s.w.Write(b); err == nil {
		s.out.written.Add(1)
	}
}

// connect dials the target, waiting with exponential backoff between
// failures. It gives up only when the flush bound of Close expires.
func (s *sink) connect() bool {
	delay := s.out.opts.MinBackoff
	for !s.aborted() {
		w, err := s.dial()
		if err == nil {
			s.mu.Lock()
			s.w = w
			s.mu.Unlock()
			if s.connected {
				s.out.reconnects.Add(1)
			}
			s.connected = true
			if c, ok := w.(*net.TCPConn); ok {
				go watchPeerClose(c)
			}
			return true
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.abort:
			t.Stop()
			return false
		}
		delay = min(2*delay, s.out.opts.MaxBackoff)
	}
	return false
}

// aborted reports whether Close gave up waiting for the queue to drain.
func (s *sink) aborted() bool {
	select {
	case <-s.abort:
		return true
	default:
		return false
	}
}

// watchPeerClose closes c as soon as the receiver closes its side. A
// syslog receiver never sends, so any read result means the connection is
// over; without this, the first record after a receiver restart would be
// written into a dead connection and lost.
func watchPeerClose(c *net.TCPConn) {
	var b [512]byte
	for {
		if _, err := c.Read(b[:]); err != nil {
			_ = c.Close()
			return
		}
	}
}

func (s *sink) disconnect() {
	s.mu.Lock()
	defer s.mu.Unlock()
	// stderr is shared with the rest of the process: never close it.
	if c, ok := s.w.(net.Conn); ok {
		_ = c.Close()
	}
	s.w = nil
}

// close stops accepting records, lets the writer drain the queue for at
// most timeout, then interrupts a blocked write and waits for the writer.
func (s *sink) close(timeout time.Duration) {
	if !s.closed.CompareAndSwap(false, true) {
		<-s.finished
		return
	}
	close(s.closing)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-s.finished:
	case <-t.C:
		close(s.abort)
		s.mu.Lock()
		if c, ok := s.w.(interface{ SetWriteDeadline(time.Time) error }); ok {
			// Unblock a Write stuck on a receiver that stopped reading.
			_ = c.SetWriteDeadline(time.Now())
		}
		s.mu.Unlock()
		// A blocking stderr pipe ignores deadlines: do not wait for it
		// forever, the process is about to exit anyway.
		t.Reset(timeout)
		select {
		case <-s.finished:
		case <-t.C:
			return
		}
	}
	// Whatever is still queued will never be written.
	for {
		select {
		case <-s.queue:
			s.out.dropped.Add(1)
		default:
			return
		}
	}
}
