package connserver

import (
	"net"
	"time"
)

// Deadline is the read or write deadline last set on a connection. Each
// SetReadDeadline or SetWriteDeadline updates a runtime timer under a
// lock; a connection answering thousands of requests a second would set
// nearly the same instant again and again, so Renew skips a deadline
// that would move by less than a small slack.
type Deadline struct {
	at time.Time // zero: none
}

// slack is how much earlier than asked a renewed deadline may fall: a
// thirty-second of the timeout, at most a second.
func slack(d time.Duration) time.Duration { return min(d/32, time.Second) }

// Renew returns the deadline d from now (none when d <= 0) and true when
// it must be set; false when the one already set is no more than slack
// earlier and not later, so that a timeout of d is honoured within
// slack. The caller sets what it returns.
func (dl *Deadline) Renew(d time.Duration) (time.Time, bool) {
	if d <= 0 {
		if dl.at.IsZero() {
			return time.Time{}, false
		}
		dl.at = time.Time{}
		return time.Time{}, true
	}
	// Until reads only the monotonic clock, half the cost of Now (which
	// reads the wall clock too); at always carries a monotonic reading.
	if !dl.at.IsZero() {
		if r := time.Until(dl.at); r <= d && d-r <= slack(d) {
			return dl.at, false
		}
	}
	dl.at = time.Now().Add(d)
	return dl.at, true
}

// Read sets nc's read deadline d from now when Renew says it must move.
func (dl *Deadline) Read(nc net.Conn, d time.Duration) {
	if t, ok := dl.Renew(d); ok {
		_ = nc.SetReadDeadline(t)
	}
}

// Write sets nc's write deadline d from now when Renew says it must move.
func (dl *Deadline) Write(nc net.Conn, d time.Duration) {
	if t, ok := dl.Renew(d); ok {
		_ = nc.SetWriteDeadline(t)
	}
}
