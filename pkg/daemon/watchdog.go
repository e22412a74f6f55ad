package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// notify sends states to the service manager (sd_notify(3)); a no-op
// without NOTIFY_SOCKET, so the same binary runs under runit and upstart.
func notify(log *slog.Logger, states ...string) {
	msg := strings.Join(states, "\n")
	if _, err := sddaemon.SdNotify(false, msg); err != nil && log != nil {
		log.Debug("sd_notify failed", "state", msg, "err", err)
	}
}

// reloadingState is RELOADING=1 with the MONOTONIC_USEC that systemd ≥ 253
// requires for Type=notify-reload; older managers ignore the extra field.
func reloadingState() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "RELOADING=1"
	}
	usec := ts.Nano() / 1000
	return "RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(usec, 10)
}

// probeListener wraps a listener so that the goroutine serving it shows
// it is alive. A background goroutine does the real accept; the serving
// goroutine's Accept waits for either a connection or a probe token.
// Taking a token proves that the serve loop is back in Accept, i.e. not
// wedged, without bothering the server with a fake connection: the token
// is consumed inside Accept and never returned.
type probeListener struct {
	net.Listener
	probes   chan struct{} // capacity 1: at most one probe pending
	accepted chan acceptResult
	done     chan struct{}
	start    sync.Once
	stop     sync.Once
	// last is when the serve loop was last seen in Accept (unix nanos).
	last atomic.Int64
	now  func() time.Time
}

type acceptResult struct {
	c   net.Conn
	err error
}

func newProbeListener(l net.Listener, now func() time.Time) *probeListener {
	p := &probeListener{
		Listener: l,
		probes:   make(chan struct{}, 1),
		accepted: make(chan acceptResult),
		done:     make(chan struct{}),
		now:      now,
	}
	p.last.Store(now().UnixNano())
	return p
}

// Accept implements net.Listener.
func (p *probeListener) Accept() (net.Conn, error) {
	p.start.Do(func() { go p.acceptLoop() })
	for {
		p.beat()
		select {
		case r := <-p.accepted:
			p.beat()
			return r.c, r.err
		case <-p.probes:
		case <-p.done:
			return nil, &net.OpError{Op: "accept", Net: p.Addr().Network(), Addr: p.Addr(), Err: net.ErrClosed}
		}
	}
}

func (p *probeListener) beat() { p.last.Store(p.now().UnixNano()) }

// acceptLoop hands real connections (and accept errors) to Accept. It
// accepts at most one connection ahead of the server.
func (p *probeListener) acceptLoop() {
	for {
		c, err := p.Listener.Accept()
		select {
		case p.accepted <- acceptResult{c, err}:
		case <-p.done:
			if c != nil {
				c.Close()
			}
			return
		}
		if err != nil && errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// Close implements net.Listener.
func (p *probeListener) Close() error {
	err := net.ErrClosed
	p.stop.Do(func() {
		close(p.done)
		err = p.Listener.Close()
	})
	return err
}

// probe asks the serve loop to show up; it never blocks.
func (p *probeListener) probe() {
	select {
	case p.probes <- struct{}{}:
	default:
	}
}

// age is how long ago the serve loop was last seen in Accept.
func (p *probeListener) age(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, p.last.Load()))
}

// liveness watches the serve loops and pings the systemd watchdog while
// they all respond.
type liveness struct {
	listeners []*probeListener
	// watchdog is WATCHDOG_USEC; 0 when systemd does not watch us.
	watchdog time.Duration
	// tick is how often loops are probed (and the watchdog pinged).
	tick time.Duration
	// stale: a loop not seen for longer is considered wedged.
	stale    time.Duration
	now      func() time.Time
	log      *slog.Logger
	stopping atomic.Bool
	quit     chan struct{}
	done     chan struct{}
	wedged   atomic.Bool // for logging the transition once
}

// defaultLivenessTick is the probe period without a systemd watchdog
// (for /healthz).
const defaultLivenessTick = 5 * time.Second

func newLiveness(ls []*probeListener, watchdog time.Duration, log *slog.Logger) *liveness {
	lv := &liveness{listeners: ls, watchdog: watchdog, now: time.Now, log: log,
		quit: make(chan struct{}), done: make(chan struct{})}
	if watchdog > 0 {
		// Ping at least every WATCHDOG_USEC/2 (sd_watchdog_enabled(3)):
		// probing at a quarter leaves one missed tick of slack.
		lv.tick = watchdog / 4
		lv.stale = watchdog / 2
	} else {
		lv.tick = defaultLivenessTick
		lv.stale = 3 * defaultLivenessTick
	}
	return lv
}

// Alive reports an error when a serve loop has not been seen in Accept
// for too long (/healthz).
func (lv *liveness) Alive() error {
	now := lv.now()
	for _, p := range lv.listeners {
		if a := p.age(now); a > lv.stale {
			return fmt.Errorf("serve loop on %s not seen for %s", describeListener(p.Listener), a.Round(time.Millisecond))
		}
	}
	return nil
}

// run probes the loops every tick and pings the watchdog when all of them
// answered recently. After shutdown starts it pings unconditionally: the
// loops are gone on purpose and the shutdown is bounded by its own grace.
func (lv *liveness) run() {
	defer close(lv.done)
	t := time.NewTicker(lv.tick)
	defer t.Stop()
	for {
		err := lv.Alive()
		switch {
		case lv.stopping.Load():
			if lv.watchdog > 0 {
				notify(lv.log, "WATCHDOG=1")
			}
		case err == nil:
			if lv.wedged.CompareAndSwap(true, false) {
				lv.log.Warn("serve loops respond again", "msgid", "watchdog")
			}
			if lv.watchdog > 0 {
				notify(lv.log, "WATCHDOG=1")
			}
		default:
			if lv.wedged.CompareAndSwap(false, true) {
				lv.log.Error("serve loop wedged; withholding watchdog pings", "msgid", "watchdog", "err", err)
			}
		}
		for _, p := range lv.listeners {
			if p.age(lv.now()) >= lv.tick/2 {
				p.probe()
			}
		}
		select {
		case <-t.C:
		case <-lv.quit:
			return
		}
	}
}

func (lv *liveness) stop() {
	close(lv.quit)
	<-lv.done
}

// watchdogInterval reads WATCHDOG_USEC (checking WATCHDOG_PID); 0 when
// systemd does not expect pings.
func watchdogInterval(log *slog.Logger) time.Duration {
	d, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("ignoring the watchdog settings", "err", err)
		return 0
	}
	return d
}
