package logging

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
)

// receiver collects frames from a test syslog server.
type receiver struct {
	frames chan string
	stop   func()
	addr   string // DevLog value
}

func (r *receiver) next(t *testing.T) string {
	t.Helper()
	select {
	case f := <-r.frames:
		return f
	case <-time.After(10 * time.Second):
		t.Fatal("no log record received")
		return ""
	}
}

// shortTempDir returns a directory whose socket paths fit sun_path.
func shortTempDir(t *testing.T) string {
	t.Helper()
	return testutil.ShortTempDir(t, "shlog")
}

func listenUnixgram(t *testing.T, path string) *receiver {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{frames: make(chan string, 1000), addr: path}
	stop := testutil.ReadPackets(t, c, 65536, r.frames)
	var once sync.Once
	r.stop = func() { once.Do(func() { stop(); os.Remove(path) }) }
	t.Cleanup(r.stop)
	return r
}

func listenUDP(t *testing.T) *receiver {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{frames: make(chan string, 1000), addr: "udp://" + c.LocalAddr().String()}
	r.stop = testutil.ReadPackets(t, c, 65536, r.frames)
	return r
}

// listenTCP runs an RFC 6587 octet-counting receiver on addr ("" picks a
// port).
func listenTCP(t *testing.T, addr string) *receiver {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	// The old listener's port may take a moment to be free again.
	l := testutil.RetryValue(t, 50, 20*time.Millisecond, func() (net.Listener, error) { return net.Listen("tcp", addr) })
	r := &receiver{frames: make(chan string, 1000), addr: "tcp://" + l.Addr().String()}
	r.stop = testutil.Accept(t, l, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			f, err := readOctetCounted(br)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					r.frames <- "FRAMING ERROR: " + err.Error()
				}
				return
			}
			r.frames <- f
		}
	}).Stop
	return r
}

// readOctetCounted reads one "MSG-LEN SP SYSLOG-MSG" frame (RFC 6587 §3.4.1).
func readOctetCounted(br *bufio.Reader) (string, error) {
	n := 0
	digits := 0
	for {
		c, err := br.ReadByte()
		if err != nil {
			return "", err
		}
		if c == ' ' {
			break
		}
		if c < '0' || c > '9' || (digits == 0 && c == '0') || digits > 6 {
			return "", fmt.Errorf("bad MSG-LEN byte %q", c)
		}
		n = n*10 + int(c-'0')
		digits++
	}
	if digits == 0 {
		return "", errors.New("empty MSG-LEN")
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return "", err
	}
	return string(b), nil
}

func newTestLogger(t *testing.T, o Options) (*slog.Logger, *Output) {
	t.Helper()
	if o.App == "" {
		o.App = "shitenno-test"
	}
	if o.Hostname == "" {
		o.Hostname = "testhost"
	}
	if o.Level == "" {
		o.Level = "debug"
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 5 * time.Millisecond
		o.MaxBackoff = 50 * time.Millisecond
	}
	return openLogger(t, o)
}

// openLogger is NewWithOptions(o) for a test or benchmark: the output
// closes when it ends.
func openLogger(t testing.TB, o Options) (*slog.Logger, *Output) {
	t.Helper()
	l, out, err := NewWithOptions(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	return l, out
}

func TestRFC5424FieldByField(t *testing.T) {
	for _, kind := range []string{"unixgram", "udp", "tcp"} {
		t.Run(kind, func(t *testing.T) {
			var r *receiver
			switch kind {
			case "unixgram":
				r = listenUnixgram(t, filepath.Join(shortTempDir(t), "log"))
			case "udp":
				r = listenUDP(t)
			case "tcp":
				r = listenTCP(t, "")
			}
			l, _ := newTestLogger(t, Options{DevLog: r.addr})
			before := time.Now()
			l.With("conn", 7).WithGroup("req").Warn("lookup failed: héllo",
				"msgid", "lookup",
				"verb", `we"ird\verb]`,
				slog.Group("backend", "url", "http://b/", "elapsed", 1500*time.Millisecond),
				"bad key=x", "v",
				"ctl", "a\nb\x00c",
			)
			f := r.next(t)
			m, err := parse5424(f)
			if err != nil {
				t.Fatalf("unparsable frame %q: %v", f, err)
			}
			if m.Pri != 2*8+4 {
				t.Errorf("PRI = %d, want %d (mail.warning)", m.Pri, 2*8+4)
			}
			if m.Version != 1 {
				t.Errorf("VERSION = %d", m.Version)
			}
			if m.FracDigit != 6 {
				t.Errorf("TIME-SECFRAC digits = %d, want 6", m.FracDigit)
			}
			if m.Timestamp.Before(before.Add(-time.Second)) || m.Timestamp.After(time.Now().Add(time.Second)) {
				t.Errorf("TIMESTAMP %v not around now", m.Timestamp)
			}
			if m.Hostname != "testhost" || m.AppName != "shitenno-test" {
				t.Errorf("HOSTNAME %q APP-NAME %q", m.Hostname, m.AppName)
			}
			if m.ProcID != strconv.Itoa(os.Getpid()) {
				t.Errorf("PROCID = %q, want pid %d", m.ProcID, os.Getpid())
			}
			if m.MsgID != "-" {
				// msgid inside a group is an ordinary parameter.
				t.Errorf("MSGID = %q, want - (msgid was in a group)", m.MsgID)
			}
			if m.SDID != "shitenno@32473" {
				t.Errorf("SD-ID = %q", m.SDID)
			}
			want := map[string]string{
				"conn":                "7",
				"req.msgid":           "lookup",
				"req.verb":            `we"ird\verb]`,
				"req.backend.url":     "http://b/",
				"req.backend.elapsed": "1.5s",
				"req.bad_key_x":       "v",
				"req.ctl":             `a\x0ab\x00c`,
			}
			if len(m.Params) != len(want) {
				t.Errorf("params = %q, want %d of them", m.Params, len(want))
			}
			for k, v := range want {
				if got, ok := m.param(k); !ok || got != v {
					t.Errorf("param %s = %q (present %v), want %q", k, got, ok, v)
				}
			}
			if !m.BOM || m.Msg != "lookup failed: héllo" {
				t.Errorf("MSG = %q (BOM %v)", m.Msg, m.BOM)
			}
		})
	}
}

func TestRFC5424MsgIDAndNil(t *testing.T) {
	r := listenUDP(t)
	l, _ := newTestLogger(t, Options{DevLog: r.addr})
	l.Info("plain ascii", "msgid", "reload now")
	m, err := parse5424(r.next(t))
	if err != nil {
		t.Fatal(err)
	}
	if m.MsgID != "reload_now" {
		t.Errorf("MSGID = %q", m.MsgID)
	}
	if m.SDID != "" || len(m.Params) != 0 {
		t.Errorf("SD = %q %q, want NILVALUE", m.SDID, m.Params)
	}
	if m.BOM || m.Msg != "plain ascii" || m.Pri != 22 {
		t.Errorf("MSG %q BOM %v PRI %d", m.Msg, m.BOM, m.Pri)
	}
}

func TestLevelsAndSeverities(t *testing.T) {
	r := listenUDP(t)
	l, out := newTestLogger(t, Options{DevLog: r.addr, Level: "warn"})
	l.Info("hidden")
	l.Debug("hidden")
	l.Error("shown")
	m, err := parse5424(r.next(t))
	if err != nil {
		t.Fatal(err)
	}
	if m.Msg != "shown" || m.Pri != 19 {
		t.Errorf("got %q PRI %d, want shown PRI 19", m.Msg, m.Pri)
	}
	if err := out.SetLevel("debug"); err != nil {
		t.Fatal(err)
	}
	l.Debug("now shown")
	m, _ = parse5424(r.next(t))
	if m.Msg != "now shown" || m.Pri != 23 {
		t.Errorf("got %q PRI %d, want now shown PRI 23", m.Msg, m.Pri)
	}
	if err := out.SetLevel("loud"); err == nil {
		t.Error("SetLevel accepted an unknown level")
	}
}

func TestTextLayout(t *testing.T) {
	tm := time.Date(2026, 11, 26, 6, 23, 0, 123456789, time.UTC)
	rec := slog.NewRecord(tm, slog.LevelWarn, "backend down", 0)
	rec.AddAttrs(slog.String("url", "http://x/ y"), slog.Int("n", 3), slog.String("k\nx", "a=b"))
	for _, tc := range []struct {
		name     string
		journald int
		want     string
	}{
		{"journald", 1, "<4>level=WARN msg=\"backend down\" url=\"http://x/ y\" n=3 \"k\\nx\"=\"a=b\"\n"},
		{"plain", -1, "time=2026-11-26T06:23:00.123Z level=WARN msg=\"backend down\" url=\"http://x/ y\" n=3 \"k\\nx\"=\"a=b\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf testutil.SyncBuffer
			l, out := newTestLogger(t, Options{Stderr: &buf, Journald: tc.journald})
			if err := l.Handler().Handle(t.Context(), rec); err != nil {
				t.Fatal(err)
			}
			out.Close()
			if got := buf.String(); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
			if out.Target() != "stderr" {
				t.Errorf("Target = %q", out.Target())
			}
		})
	}
}

func TestRFC3164ForJournald(t *testing.T) {
	// journald's /dev/log cannot be used in a test; force the layout the
	// symlink check would pick.
	r := listenUnixgram(t, filepath.Join(shortTempDir(t), "log"))
	l, _ := newTestLogger(t, Options{DevLog: r.addr, Format: FormatRFC3164, App: "shitenno-postfix"})
	l.Error("cannot reach backend", "url", "http://b/")
	f := r.next(t)
	prefix := "<19>"
	if !strings.HasPrefix(f, prefix) {
		t.Fatalf("frame %q lacks %q", f, prefix)
	}
	stamp := f[len(prefix) : len(prefix)+len(time.Stamp)]
	if _, err := time.Parse(time.Stamp, stamp); err != nil {
		t.Errorf("timestamp %q: %v", stamp, err)
	}
	rest := f[len(prefix)+len(time.Stamp):]
	want := fmt.Sprintf(" shitenno-postfix[%d]: cannot reach backend url=http://b/", os.Getpid())
	if rest != want {
		t.Errorf("got %q, want %q", rest, want)
	}
}

func TestRedaction(t *testing.T) {
	r := listenUDP(t)
	l, _ := newTestLogger(t, Options{DevLog: r.addr})
	l.With("Password", "hunter2").Info("x",
		"pass", "s3cret-pass",
		slog.Group("backend", "Data", "topsecret-data"),
		"reply", json.RawMessage(`{"Password":"raw-json-secret"}`),
		"user", "alice",
	)
	f := r.next(t)
	for _, s := range []string{"hunter2", "s3cret-pass", "topsecret-data", "raw-json-secret"} {
		if strings.Contains(f, s) {
			t.Errorf("secret %q leaked into %q", s, f)
		}
	}
	m, err := parse5424(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Password", "pass", "backend.Data", "reply"} {
		if v, _ := m.param(k); v != Redacted {
			t.Errorf("%s = %q, want %q", k, v, Redacted)
		}
	}
	if v, _ := m.param("user"); v != "alice" {
		t.Errorf("user = %q", v)
	}
}

func TestFrameBound(t *testing.T) {
	r := listenUDP(t)
	l, _ := newTestLogger(t, Options{DevLog: r.addr, MaxFrame: 1200})
	args := []any{"msgid", "big"}
	for i := range 20 {
		args = append(args, fmt.Sprintf("k%02d", i), strings.Repeat("é]", 200))
	}
	l.Info(strings.Repeat("m", 5000), args...)
	f := r.next(t)
	if len(f) > 1200 {
		t.Errorf("frame of %d bytes exceeds MaxFrame 1200", len(f))
	}
	m, err := parse5424(f)
	if err != nil {
		t.Fatalf("%v in %q", err, f)
	}
	if v, _ := m.param("truncated"); v != "1" {
		t.Errorf("no truncated=1 marker: %q", m.Params)
	}
	if !strings.HasSuffix(m.Msg, "…") || len(m.Msg) > maxMsgBytes+len("…") {
		t.Errorf("message not cut: %d bytes", len(m.Msg))
	}
}

// TestStalledReceiverDoesNotBlock logs many records at a receiver that
// never reads. The test would hang (and time out) if logging blocked;
// every record must be accounted for as written or dropped.
func TestStalledReceiverDoesNotBlock(t *testing.T) {
	for _, kind := range []string{"unixgram", "tcp"} {
		t.Run(kind, func(t *testing.T) {
			var devLog string
			switch kind {
			case "unixgram":
				path := filepath.Join(shortTempDir(t), "log")
				c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				devLog = path
			case "tcp":
				unread := testutil.AcceptTCP(t, func(net.Conn) {}) // accepted, never read
				devLog = "tcp://" + unread.Addr()
			}
			l, out := newTestLogger(t, Options{DevLog: devLog, QueueSize: 16, FlushTimeout: 100 * time.Millisecond})
			const n = 50000
			payload := strings.Repeat("x", 500)
			for i := range n {
				l.Info("record", "i", i, "pad", payload)
			}
			out.Close()
			st := out.Stats()
			if st.Dropped == 0 {
				t.Errorf("no drops counted with a stalled receiver: %+v", st)
			}
			if st.Written+st.Dropped < n {
				t.Errorf("records unaccounted for: %+v, logged %d", st, n)
			}
			// Logging after Close is dropped and counted, never blocks.
			l.Info("late")
			if out.Stats().Dropped != st.Dropped+1 {
				t.Errorf("record after Close not counted as dropped")
			}
		})
	}
}

func BenchmarkLogStalledReceiver(b *testing.B) {
	path := filepath.Join(b.TempDir(), "log")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	l, _ := openLogger(b, Options{DevLog: path, App: "bench", QueueSize: 64, FlushTimeout: 10 * time.Millisecond})
	b.ReportAllocs()
	for b.Loop() {
		l.Info("lookup failed", "verb", "passdb", "reason", "backend timeout")
	}
}

func BenchmarkLogDisabledDebug(b *testing.B) {
	l, _ := openLogger(b, Options{Stderr: io.Discard, App: "bench", Level: "info"})
	b.ReportAllocs()
	for b.Loop() {
		l.Debug("lookup", "verb", "passdb", "key", "alice@example.org")
	}
}

func TestReconnectAfterReceiverRestart(t *testing.T) {
	for _, kind := range []string{"unixgram", "tcp"} {
		t.Run(kind, func(t *testing.T) {
			var r *receiver
			var restart func() *receiver
			switch kind {
			case "unixgram":
				path := filepath.Join(shortTempDir(t), "log")
				r = listenUnixgram(t, path)
				restart = func() *receiver { return listenUnixgram(t, path) }
			case "tcp":
				r = listenTCP(t, "")
				addr := strings.TrimPrefix(r.addr, "tcp://")
				restart = func() *receiver { return listenTCP(t, addr) }
			}
			l, out := newTestLogger(t, Options{DevLog: r.addr})
			l.Info("before")
			if m, err := parse5424(r.next(t)); err != nil || m.Msg != "before" {
				t.Fatalf("first record: %v %+v", err, m)
			}
			r.stop()
			l.Info("while down")
			r2 := restart()
			// Keep logging until a record gets through: the writer
			// reconnects on its own, with backoff.
			deadline := time.Now().Add(10 * time.Second)
			got := false
			for i := 0; !got && time.Now().Before(deadline); i++ {
				l.Info("after", "i", i)
				select {
				case f := <-r2.frames:
					m, err := parse5424(f)
					if err != nil {
						t.Fatalf("bad frame after reconnect %q: %v", f, err)
					}
					got = true
					_ = m
				case <-time.After(20 * time.Millisecond):
				}
			}
			if !got {
				t.Fatal("no record reached the restarted receiver")
			}
			if out.Stats().Reconnects == 0 {
				t.Errorf("reconnect not counted: %+v", out.Stats())
			}
		})
	}
}

func TestDropNotice(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "log")
	l, out := newTestLogger(t, Options{DevLog: path, QueueSize: 4})
	// No receiver yet: the writer waits in backoff, the queue fills.
	for i := range 100 {
		l.Info("lost", "i", i)
	}
	r := listenUnixgram(t, path)
	deadline := time.After(10 * time.Second)
	for {
		var f string
		select {
		case f = <-r.frames:
		case <-deadline:
			t.Fatalf("no drop notice; stats %+v", out.Stats())
		}
		m, err := parse5424(f)
		if err != nil {
			t.Fatal(err)
		}
		if m.Msg == "log records dropped" {
			if v, _ := m.param("dropped"); v == "" || v == "0" {
				t.Errorf("drop notice without a count: %q", m.Params)
			}
			return
		}
	}
}

func TestCloseFlushes(t *testing.T) {
	r := listenTCP(t, "")
	l, out := newTestLogger(t, Options{DevLog: r.addr, QueueSize: 256})
	for i := range 100 {
		l.Info("r", "i", i)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		m, err := parse5424(r.next(t))
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := m.param("i"); v != strconv.Itoa(i) {
			t.Fatalf("record %d has i=%q: order or loss", i, v)
		}
	}
	if st := out.Stats(); st.Written != 100 || st.Dropped != 0 {
		t.Errorf("stats %+v, want 100 written", st)
	}
}

func TestReopen(t *testing.T) {
	r1 := listenUDP(t)
	r2 := listenUDP(t)
	l, out := newTestLogger(t, Options{DevLog: r1.addr})
	l.Info("one")
	if m, _ := parse5424(r1.next(t)); m == nil || m.Msg != "one" {
		t.Fatal("first record missing")
	}
	if err := out.Reopen("ftp://nope"); err == nil {
		t.Fatal("Reopen accepted a bad target")
	}
	if err := out.Reopen(r2.addr); err != nil {
		t.Fatal(err)
	}
	l.Info("two")
	if m, _ := parse5424(r2.next(t)); m == nil || m.Msg != "two" {
		t.Fatal("record after Reopen missing")
	}
	if out.Target() != r2.addr {
		t.Errorf("Target = %q", out.Target())
	}
}

func TestBadTargets(t *testing.T) {
	for _, d := range []string{"relative/path", "udp://", "tcp://host", "udp://h:1/x", "syslog", "tcp://u@h:1"} {
		if _, _, err := New(d, "info", "x"); err == nil {
			t.Errorf("New(%q) accepted", d)
		}
	}
	if _, _, err := New("stderr", "chatty", "x"); err == nil {
		t.Error("bad level accepted")
	}
}

func TestUnderJournald(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "")
	if UnderJournald() {
		t.Error("UnderJournald without JOURNAL_STREAM")
	}
	t.Setenv("JOURNAL_STREAM", "1:2")
	if UnderJournald() {
		t.Error("UnderJournald with a JOURNAL_STREAM naming another file")
	}
	f, err := os.CreateTemp(t.TempDir(), "s")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	st := statOf(fi)
	if !journalStreamMatches(fmt.Sprintf("%d:%d", st.dev, st.ino), f) {
		t.Error("matching JOURNAL_STREAM not recognised")
	}
	if journalStreamMatches("garbage", f) {
		t.Error("garbage JOURNAL_STREAM accepted")
	}
}

func FuzzRFC5424(f *testing.F) {
	f.Add("hello", "verb", "passdb", "msgid")
	f.Add("é\x00\n", "a b=c]\"", `x"y\z]`, "lookup")
	f.Add("", "", "", "")
	f.Add("\xff\xfe", "k\x80", "\xc3", "m i d")
	f.Fuzz(func(t *testing.T, msg, key, val, msgid string) {
		fm := &formatter{format: FormatRFC5424, hdr: newHeader("h", "app", 1)}
		fields := []field{{key: MsgIDKey, val: slog.StringValue(msgid)}, {key: key, val: slog.StringValue(val)}}
		b := fm.appendRecord(nil, time.Now(), slog.LevelInfo, msg, fields, 600)
		if len(b) > 600 {
			t.Fatalf("frame of %d bytes", len(b))
		}
		m, err := parse5424(string(b))
		if err != nil {
			t.Fatalf("%v in %q", err, b)
		}
		if len(m.Params) == 1 && m.Params[0][0] != "truncated" {
			if m.Params[0][0] != sdName(key) {
				t.Fatalf("key %q came back as %q", key, m.Params[0][0])
			}
			// What comes back must be exactly the safe rendering.
			if want := string(appendSafe(nil, val, false, 1<<20)); len(val) < 100 && m.Params[0][1] != want {
				t.Fatalf("value %q came back as %q, want %q", val, m.Params[0][1], want)
			}
		}
		if strings.ContainsAny(m.Msg, "\n\r\x00") {
			t.Fatalf("control character in MSG %q", m.Msg)
		}
	})
}
