package remote

import (
	"context"
	"crypto/tls"
	"errors"
	"slices"
	"time"
)

// get returns a connection for x: the most recently used idle one, a new
// one while the host is under its bound, else the first one another
// exchange hands back (or its slot), in arrival order. Waiting counts
// against ConnectTimeout, as on the net/http path, where the timer runs
// until GotConn.
func (h *h1Host) get(x *h1Call) (*h1Conn, error) {
	now := time.Now()
	h.mu.Lock()
	if n := len(h.idle); n > 0 {
		pc := h.idle[n-1]
		h.idle[n-1] = nil
		h.idle = h.idle[:n-1]
		if now.Sub(pc.idleAt) < h1IdleTimeout {
			h.mu.Unlock()
			return pc, nil
		}
		// The newest idle connection is too old, so all of them are:
		// close them and dial in this one's slot.
		stale := append(h.idle, pc)
		h.open -= len(h.idle)
		h.idle = nil
		h.mu.Unlock()
		for _, s := range stale {
			_ = s.nc.Close()
		}
		return h.dialIn(x)
	}
	if h.max <= 0 || h.open < h.max {
		h.open++
		h.mu.Unlock()
		return h.dialIn(x)
	}
	w := make(chan *h1Conn, 1)
	h.waiters = append(h.waiters, w)
	h.mu.Unlock()
	return h.wait(x, w)
}

// wait waits on w for a connection or a slot (nil) another exchange
// hands over, within x's deadline.
func (h *h1Host) wait(x *h1Call, w chan *h1Conn) (*h1Conn, error) {
	d, why := x.deadline()
	x.why = why
	var expired <-chan time.Time
	if !d.IsZero() {
		t := time.NewTimer(time.Until(d))
		defer t.Stop()
		expired = t.C
	}
	var err error
	select {
	case pc := <-w:
		if pc == nil {
			return h.dialIn(x)
		}
		return pc, nil
	case <-x.ctx.Done():
		err = x.ctx.Err()
	case <-expired:
		err = errH1WaitTimeout
	}
	h.mu.Lock()
	i := slices.Index(h.waiters, w)
	if i >= 0 {
		h.waiters = slices.Delete(h.waiters, i, i+1)
	}
	h.mu.Unlock()
	if i < 0 {
		// Handed something just as the wait ended: pass it on.
		if pc := <-w; pc != nil {
			h.put(pc)
		} else {
			h.release()
		}
	}
	return nil, err
}

// errH1WaitTimeout ends a wait for a connection at MaxConnsPerHost.
var errH1WaitTimeout error = timeoutError("timeout waiting for a connection (MaxConnsPerHost)")

// timeoutError is a net.Error that says it is a timeout.
type timeoutError string

func (e timeoutError) Error() string   { return string(e) }
func (e timeoutError) Timeout() bool   { return true }
func (e timeoutError) Temporary() bool { return true }

// dialIn dials a connection in a slot the caller holds, and frees the
// slot if that fails.
func (h *h1Host) dialIn(x *h1Call) (*h1Conn, error) {
	pc, err := h.dial1(x)
	if err != nil {
		h.release()
		return nil, err
	}
	return pc, nil
}

// dial1 dials, and for https shakes hands (every check of tls.go runs in
// it, VerifyConnection), within the deadline in force.
func (h *h1Host) dial1(x *h1Call) (*h1Conn, error) {
	d, why := x.deadline()
	x.why = why
	ctx := x.ctx
	if !d.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d)
		defer cancel()
	}
	nc, err := h.dial(ctx, "tcp", h.addr)
	if err != nil {
		return nil, err
	}
	if h.tls != nil {
		tc := tls.Client(nc, h.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, err
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
			_ = tc.Close()
			return nil, errors.New("backend chose ALPN protocol " + p + ", not http/1.1")
		}
		nc = tc
	}
	return h.newConn(nc), nil
}

// put makes pc idle, or hands it to the first waiter.
func (h *h1Host) put(pc *h1Conn) {
	pc.idleAt = time.Now()
	h.mu.Lock()
	if w := h.firstWaiter(); w != nil {
		h.mu.Unlock()
		w <- pc
		return
	}
	if len(h.idle) >= h.keep {
		h.open--
		h.mu.Unlock()
		_ = pc.nc.Close()
		return
	}
	h.idle = append(h.idle, pc)
	if !h.sweepOn {
		h.sweepOn = true
		if h.sweep == nil {
			h.sweep = time.AfterFunc(h1IdleTimeout, h.sweepIdle)
		} else {
			h.sweep.Reset(h1IdleTimeout)
		}
	}
	h.mu.Unlock()
}

// discard closes pc and frees its slot.
func (h *h1Host) discard(pc *h1Conn) {
	_ = pc.nc.Close()
	h.release()
}

// release frees a slot: to the first waiter, which dials in it, or back
// to the host.
func (h *h1Host) release() {
	h.mu.Lock()
	if w := h.firstWaiter(); w != nil {
		h.mu.Unlock()
		w <- nil
		return
	}
	h.open--
	h.mu.Unlock()
}

// firstWaiter takes the longest waiting exchange off the queue, nil when
// none waits; h.mu is held.
func (h *h1Host) firstWaiter() chan *h1Conn {
	if len(h.waiters) == 0 {
		return nil
	}
	w := h.waiters[0]
	h.waiters = slices.Delete(h.waiters, 0, 1)
	return w
}

// sweepIdle closes the connections idle for h1IdleTimeout and runs again
// when the next one will be.
func (h *h1Host) sweepIdle() {
	now := time.Now()
	h.mu.Lock()
	i := 0
	for i < len(h.idle) && now.Sub(h.idle[i].idleAt) >= h1IdleTimeout {
		i++
	}
	stale := slices.Clone(h.idle[:i])
	h.idle = slices.Delete(h.idle, 0, i)
	h.open -= i
	if len(h.idle) > 0 {
		h.sweep.Reset(h.idle[0].idleAt.Add(h1IdleTimeout).Sub(now))
	} else {
		h.sweepOn = false
	}
	h.mu.Unlock()
	for _, pc := range stale {
		_ = pc.nc.Close()
	}
}

// closeIdle closes every idle connection.
func (h *h1Host) closeIdle() {
	h.mu.Lock()
	idle := h.idle
	h.idle = nil
	h.open -= len(idle)
	if h.sweep != nil {
		h.sweep.Stop()
	}
	h.sweepOn = false
	h.mu.Unlock()
	for _, pc := range idle {
		_ = pc.nc.Close()
	}
}
