// Package logging builds shitenno's *slog.Logger for a DevLog target.
//
// Targets (the DevLog configuration key):
//
//   - "stderr": one plain "level=… msg=… key=value" line per record, for
//     journald or runit's svlogd. Under journald (JOURNAL_STREAM names our
//     stderr) the timestamp is left out, because journald stamps every line
//     itself, and the line starts with an sd-daemon(3) "<N>" priority prefix
//     that journald strips and stores as PRIORITY. Anywhere else (runit,
//     upstart, a terminal) the line starts with time=…: svlogd only adds a
//     timestamp with -t/-tt, and a missing timestamp is worse than two.
//   - an absolute path such as "/dev/log": a unix datagram socket. When the
//     path is journald's syslog socket (/dev/log → /run/systemd/journal/dev-log),
//     records use the traditional RFC 3164 framing "<PRI>Mmm dd hh:mm:ss
//     app[pid]: msg key=value", because journald only parses the PRI of an
//     RFC 5424 frame and would keep identifier and pid inside MESSAGE
//     (systemd issue #19251). Any other receiver (rsyslog, syslog-ng) gets
//     RFC 5424.
//   - "udp://host:port": RFC 5424 over UDP (RFC 5426), one record per datagram.
//   - "tcp://host:port": RFC 5424 over TCP with RFC 6587 octet counting.
//
// RFC 5424 records carry PRI (facility mail), version 1, an RFC 3339 UTC
// timestamp with 6 fraction digits, hostname, app-name, the pid as PROCID,
// the "msgid" attribute as MSGID ("-" without one) and every other attribute
// as a PARAM of one SD-ELEMENT [shitenno@32473 …]. 32473 is the private
// enterprise number reserved for documentation (RFC 5612): shitenno has none
// of its own, and receivers only need the SD-ID to be well-formed.
//
// Logging never blocks the caller: a record is formatted in the calling
// goroutine and handed to one writer goroutine through a bounded queue. When
// the queue is full (receiver slow or gone) the record is dropped and
// counted; the writer reports the count in a later record. The writer
// reconnects with exponential backoff when the receiver restarts.
//
// Secrets: attributes whose key names a secret (password, pass, secret,
// data, …) and every json.RawMessage value (backend Data) are written as
// [redacted], so a careless call site cannot leak a password or backend
// reply. Call sites still must not put secrets into the message text.
package logging

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Options fields left zero.
const (
	DefaultQueueSize    = 1024
	DefaultFlushTimeout = 2 * time.Second
	DefaultMinBackoff   = 50 * time.Millisecond
	DefaultMaxBackoff   = 10 * time.Second
	// DefaultMaxFrame bounds one record on the wire. 8 KiB is rsyslog's
	// default maxMessageSize and fits a UDP datagram without trouble.
	DefaultMaxFrame = 8192
)

// journaldDevLog is where /dev/log points under systemd-journald.
const journaldDevLog = "/run/systemd/journal/dev-log"

// Format is a record layout.
type Format int

// The record layouts.
const (
	// FormatAuto picks the layout from the target (see the package doc).
	FormatAuto Format = iota
	// FormatText is "level=… msg=… key=value".
	FormatText
	// FormatRFC5424 is the syslog protocol of RFC 5424.
	FormatRFC5424
	// FormatRFC3164 is the BSD syslog layout journald understands.
	FormatRFC3164
)

// Options configures a logger. Only DevLog and App matter in production;
// the rest exists for tests and has sane defaults.
type Options struct {
	// DevLog is the target: "stderr", an absolute unix datagram socket
	// path, "udp://host:port" or "tcp://host:port". Empty means stderr.
	DevLog string
	// Level is debug, info, warn or error; empty means info.
	Level string
	// App is the RFC 5424 APP-NAME / RFC 3164 TAG (the binary name).
	App string

	// Format overrides the automatic layout choice.
	Format Format
	// Hostname overrides os.Hostname in RFC 5424 records.
	Hostname string
	// Journald forces (1) or forbids (-1) the journald stderr layout
	// instead of looking at JOURNAL_STREAM.
	Journald int
	// Stderr replaces os.Stderr for the stderr target.
	Stderr io.Writer
	// QueueSize bounds the records waiting for the writer.
	QueueSize int
	// FlushTimeout bounds how long Close waits for queued records.
	FlushTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnections.
	MinBackoff, MaxBackoff time.Duration
	// MaxFrame bounds one formatted record in bytes.
	MaxFrame int
}

// Stats counts what happened to records since the Output was created.
type Stats struct {
	// Written records reached the target (for datagrams: were sent).
	Written uint64
	// Dropped records were lost: queue full, target unreachable, or
	// logged after Close.
	Dropped uint64
	// Reconnects counts successful connections after the first.
	Reconnects uint64
}

// Output owns the logger's target and writer goroutine. It implements
// io.Closer; Close flushes queued records within a bound.
type Output struct {
	level slog.LevelVar
	app   string
	opts  Options

	cur atomic.Pointer[sink]

	written, dropped, reconnects atomic.Uint64
	// lastReported is the Dropped value the last drop notice covered.
	lastReported atomic.Uint64

	mu     sync.Mutex // serialises Reopen and Close
	closed bool
}

// New returns a logger writing to devLog at level, with app as the program
// name, and the Output to Close (at exit) and ask for Stats.
func New(devLog, level, app string) (*slog.Logger, *Output, error) {
	return NewWithOptions(Options{DevLog: devLog, Level: level, App: app})
}

// NewWithOptions is New with every knob.
func NewWithOptions(o Options) (*slog.Logger, *Output, error) {
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.FlushTimeout <= 0 {
		o.FlushTimeout = DefaultFlushTimeout
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	if o.MaxFrame <= 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	out := &Output{app: o.App, opts: o}
	if err := out.SetLevel(o.Level); err != nil {
		return nil, nil, err
	}
	s, err := out.newSink(o.DevLog)
	if err != nil {
		return nil, nil, err
	}
	out.cur.Store(s)
	return slog.New(&handler{out: out}), out, nil
}

// ParseLevel turns debug, info, warn or error (any case) into a slog.Level;
// empty means info.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("logging: unknown level %q (use debug, info, warn or error)", s)
}

// SetLevel changes the minimum level of every logger built from this
// Output; a reload uses it.
func (o *Output) SetLevel(level string) error {
	l, err := ParseLevel(level)
	if err != nil {
		return err
	}
	o.level.Set(l)
	return nil
}

// Level reports the current minimum level.
func (o *Output) Level() slog.Level { return o.level.Level() }

// Stats reports the record counters.
func (o *Output) Stats() Stats {
	return Stats{Written: o.written.Load(), Dropped: o.dropped.Load(), Reconnects: o.reconnects.Load()}
}

// Reopen switches to another DevLog target, for a configuration reload.
// Loggers built earlier follow the switch. Records queued for the old
// target are flushed (within the flush bound) before Reopen returns. A bad
// target is an error and the old one stays.
func (o *Output) Reopen(devLog string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return errors.New("logging: output closed")
	}
	s, err := o.newSink(devLog)
	if err != nil {
		return err
	}
	old := o.cur.Swap(s)
	old.close(o.opts.FlushTimeout)
	return nil
}

// Target reports the DevLog target in use.
func (o *Output) Target() string { return o.cur.Load().target }

// Close flushes queued records, waiting at most the flush timeout, and
// closes the target. Records logged afterwards are dropped and counted.
func (o *Output) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	o.cur.Load().close(o.opts.FlushTimeout)
	return nil
}

// newSink parses a DevLog value and starts its writer.
//
// Complexity: one case per DevLog form (stderr, journald, syslog over udp,
// tcp, tls or unix).
func (o *Output) newSink(devLog string) (*sink, error) {
	host := o.opts.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	hdr := newHeader(host, o.app, os.Getpid())
	s := &sink{out: o, target: devLog, maxFrame: o.opts.MaxFrame}
	format := o.opts.Format
	switch {
	case devLog == "" || devLog == "stderr":
		s.target = "stderr"
		journald := o.opts.Journald > 0 || (o.opts.Journald == 0 && UnderJournald())
		if format == FormatAuto {
			format = FormatText
		}
		s.fmt = &formatter{format: format, hdr: hdr, journald: journald}
		w := o.opts.Stderr
		s.dial = func() (io.Writer, error) { return w, nil }
		s.stream = true
	case strings.HasPrefix(devLog, "udp://"), strings.HasPrefix(devLog, "tcp://"):
		if err := CheckDevLog(devLog); err != nil {
			return nil, fmt.Errorf("logging: DevLog %q: %w", devLog, err)
		}
		u, _ := url.Parse(devLog)
		if format == FormatAuto {
			format = FormatRFC5424
		}
		s.fmt = &formatter{format: format, hdr: hdr}
		network, addr := u.Scheme, u.Host
		s.dial = func() (io.Writer, error) {
			return net.DialTimeout(network, addr, 5*time.Second)
		}
		s.octetCount = network == "tcp"
		s.stream = network == "tcp"
	case filepath.IsAbs(devLog):
		if format == FormatAuto {
			format = FormatRFC5424
			if real, err := filepath.EvalSymlinks(devLog); err == nil && real == journaldDevLog {
				format = FormatRFC3164
			}
		}
		s.fmt = &formatter{format: format, hdr: hdr}
		addr := &net.UnixAddr{Name: devLog, Net: "unixgram"}
		s.dial = func() (io.Writer, error) { return net.DialUnix("unixgram", nil, addr) }
	default:
		return nil, fmt.Errorf("logging: DevLog %q: %w", devLog, CheckDevLog(devLog))
	}
	s.start()
	return s, nil
}

// CheckDevLog tells whether devLog is a destination New accepts: stderr
// (or empty), an absolute unix socket path, udp://host:port or
// tcp://host:port. The configuration is checked with it, so that a
// destination start-up would refuse is found when the file is loaded.
func CheckDevLog(devLog string) error {
	switch {
	case devLog == "" || devLog == "stderr", filepath.IsAbs(devLog):
		return nil
	case strings.HasPrefix(devLog, "udp://"), strings.HasPrefix(devLog, "tcp://"):
		u, err := url.Parse(devLog)
		if err != nil || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			return errors.New("want udp://host:port or tcp://host:port")
		}
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
			return errors.New("want udp://host:port or tcp://host:port")
		}
		return nil
	}
	return errors.New("want stderr, an absolute socket path, udp://host:port or tcp://host:port")
}

// UnderJournald reports whether stderr is connected to journald: systemd
// sets JOURNAL_STREAM to "device:inode" of that stream (systemd.exec(5)),
// and a child that inherited the variable with another stderr must not
// believe it.
func UnderJournald() bool {
	v := os.Getenv("JOURNAL_STREAM")
	if v == "" {
		return false
	}
	return journalStreamMatches(v, os.Stderr)
}
