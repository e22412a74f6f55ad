package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shitenno/shitenno/pkg/remote"
)

// client is one connection's worth of lookups. lookup performs lookup i
// (an index into the data set), verifies the reply and returns an error
// for anything but the exact expected answer.
type client interface {
	lookup(i int, now time.Time) error
	close()
}

// dialFunc opens a new client connection.
type dialFunc func() (client, error)

// opTimeout bounds one lookup: a server that stops answering is an error,
// not a hang of the benchmark.
const opTimeout = 5 * time.Second

// loadResult is what one run measured.
type loadResult struct {
	Ops      int64           // lookups completed in the measuring window
	Total    int64           // lookups completed, warm-up included
	Window   time.Duration   // length of the measuring window
	Lat      []time.Duration // sorted latencies of the measured lookups
	Errors   int64           // wrong, missing or failed replies (warm-up included)
	FirstErr string
}

// Rate is lookups per second in the measuring window.
func (r loadResult) Rate() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Window.Seconds()
}

// Quantile returns the q-quantile latency (0 when nothing was measured).
func (r loadResult) Quantile(q float64) time.Duration {
	if len(r.Lat) == 0 {
		return 0
	}
	i := int(q * float64(len(r.Lat)))
	if i >= len(r.Lat) {
		i = len(r.Lat) - 1
	}
	return r.Lat[i]
}

// runLoad drives conns closed-loop connections for warm+dur: each sends a
// lookup, waits for and verifies the reply, and sends the next. Worker w
// walks the keys w, w+conns, w+2·conns, …, so concurrent lookups never
// share a key: shitenno's coalescing of identical in-flight lookups cannot
// make the uncached scenario look better than the backend allows.
func runLoad(dial dialFunc, conns int, warm, dur time.Duration) loadResult {
	var (
		phase    atomic.Int32 // 0 warm-up, 1 measuring, 2 stop
		wg       sync.WaitGroup
		mu       sync.Mutex
		res      loadResult
		firstErr error
	)
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<14)
			var c client
			var total, errs int64
			var werr error
			fail := func(err error) {
				errs++
				if werr == nil {
					werr = err
				}
			}
			i := w % numKeys
			for {
				ph := phase.Load()
				if ph == 2 {
					break
				}
				if c == nil {
					var err error
					if c, err = dial(); err != nil {
						fail(fmt.Errorf("connect: %w", err))
						c = nil
						time.Sleep(10 * time.Millisecond)
						continue
					}
				}
				t0 := time.Now()
				err := c.lookup(i, t0)
				d := time.Since(t0)
				if err != nil {
					// The stream may be out of step: start over on a new connection.
					fail(fmt.Errorf("%s: %w", benchKey(i), err))
					c.close()
					c = nil
					continue
				}
				total++
				if ph == 1 {
					lat = append(lat, d)
				}
				i = (i + conns) % numKeys
			}
			if c != nil {
				c.close()
			}
			mu.Lock()
			res.Ops += int64(len(lat))
			res.Total += total
			res.Errors += errs
			res.Lat = append(res.Lat, lat...)
			if firstErr == nil {
				firstErr = werr
			}
			mu.Unlock()
		}()
	}
	time.Sleep(warm)
	phase.Store(1)
	start := time.Now()
	time.Sleep(dur)
	phase.Store(2)
	res.Window = time.Since(start)
	wg.Wait()
	slices.Sort(res.Lat)
	if firstErr != nil {
		res.FirstErr = firstErr.Error()
	}
	return res
}

// deadliner refreshes a connection deadline at most once a second: a
// deadline per lookup would cost timer work the measured servers do not
// ask the client to do.
type deadliner struct {
	c    net.Conn
	last time.Time
}

func (d *deadliner) arm(now time.Time) {
	if now.Sub(d.last) > time.Second {
		_ = d.c.SetDeadline(now.Add(opTimeout + time.Second))
		d.last = now
	}
}

// socketmapClient speaks postfix's socketmap protocol like postfix does:
// one request, wait for the reply, no pipelining.
type socketmapClient struct {
	deadliner
	br  *bufio.Reader
	buf []byte
	w   *wire
}

func dialSocketmap(network, addr string, w *wire) dialFunc {
	return func() (client, error) {
		c, err := net.DialTimeout(network, addr, opTimeout)
		if err != nil {
			return nil, err
		}
		return &socketmapClient{deadliner: deadliner{c: c}, br: bufio.NewReaderSize(c, 4096), buf: make([]byte, 0, 256), w: w}, nil
	}
}

func (s *socketmapClient) lookup(i int, now time.Time) error {
	s.arm(now)
	if _, err := s.c.Write(s.w.req[i]); err != nil {
		return err
	}
	p, err := readNetstring(s.br, s.buf)
	if err != nil {
		return err
	}
	if !bytes.Equal(p, s.w.want[i]) {
		return fmt.Errorf("reply %q, want %q", clip(p), clip(s.w.want[i]))
	}
	return nil
}

func (s *socketmapClient) close() { s.c.Close() }

// dictClient speaks dovecot's proxy dict protocol like dovecot 2.3.17+'s
// auth worker: a hello, then one lookup at a time. It keeps its
// connection, which dovecot does not (it reconnects per batch): the
// benchmark measures lookups, not connection set-up.
type dictClient struct {
	deadliner
	br *bufio.Reader
	w  *wire
}

func dialDict(network, addr string, w *wire) dialFunc {
	return func() (client, error) {
		c, err := net.DialTimeout(network, addr, opTimeout)
		if err != nil {
			return nil, err
		}
		_ = c.SetDeadline(time.Now().Add(opTimeout))
		if _, err := io.WriteString(c, dictHelloRaw); err != nil {
			c.Close()
			return nil, err
		}
		return &dictClient{deadliner: deadliner{c: c}, br: bufio.NewReaderSize(c, 4096), w: w}, nil
	}
}

func (d *dictClient) lookup(i int, now time.Time) error {
	d.arm(now)
	if _, err := d.c.Write(d.w.req[i]); err != nil {
		return err
	}
	line, err := d.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	line = line[:len(line)-1]
	if bytes.Equal(line, d.w.want[i]) {
		return nil
	}
	// The same object written differently (key order, spacing) is right too.
	if len(line) > 0 && line[0] == 'O' && jsonEqual(unescapeDict(line[1:]), d.w.want[i][1:]) {
		return nil
	}
	return fmt.Errorf("reply %q, want %q", clip(line), clip(d.w.want[i]))
}

func (d *dictClient) close() { d.c.Close() }

// httpClient POSTs the lookup straight to the backend, as shitenno would,
// with the same keep-alive transport settings (remote.NewTransport), and
// checks the decoded reply the way shitenno's bridges do.
type httpClient struct {
	hc     *http.Client
	url    string
	proto  string
	bodies [][]byte
	buf    bytes.Buffer
}

// dialHTTP returns clients sharing one keep-alive transport: each worker
// holds one connection at a time, so conns workers use conns connections.
func dialHTTP(base, proto string) (dialFunc, func()) {
	tr := remote.NewTransport(nil, 0)
	hc := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	verb := postfixVerb
	if proto == "dovecot" {
		verb = dovecotVerb
	}
	bodies := make([][]byte, numKeys)
	for i := range bodies {
		obj := remote.AppendJSONString(nil, benchKey(i))
		if proto == "dovecot" {
			obj = append(append([]byte(`{"Context":"shared","Object":`), obj...), '}')
		}
		bodies[i] = remote.EncodeRequest(nil, verb, obj)
	}
	return func() (client, error) {
		return &httpClient{hc: hc, url: base + verb, proto: proto, bodies: bodies}, nil
	}, tr.CloseIdleConnections
}

func (h *httpClient) lookup(i int, _ time.Time) error {
	req, err := http.NewRequest(http.MethodPost, h.url, bytes.NewReader(h.bodies[i]))
	if err != nil {
		return err
	}
	req.Header["Content-Type"] = hdrJSON
	req.Header["Accept"] = hdrJSON
	resp, err := h.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	h.buf.Reset()
	if _, err := h.buf.ReadFrom(io.LimitReader(resp.Body, 1<<20)); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	res, err := remote.ParseReply(h.buf.Bytes())
	if err != nil {
		return err
	}
	if !known(i) {
		if res.Status != remote.NotFound {
			return errors.New("found, want not found")
		}
		return nil
	}
	if res.Status != remote.Found {
		return errors.New("not found, want found")
	}
	if h.proto == "postfix" {
		var s string
		if json.Unmarshal(res.Data, &s) != nil || s != virtualValue(i) {
			return fmt.Errorf("backend Data %q, want %q", clip(res.Data), virtualValue(i))
		}
		return nil
	}
	if want := passdbData(i); string(res.Data) != want && !jsonEqual(res.Data, []byte(want)) {
		return fmt.Errorf("backend Data %q, want %q", clip(res.Data), want)
	}
	return nil
}

func (h *httpClient) close() {}

// jsonEqual compares two JSON documents by value.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// unescapeDict reverses dovecot's tab escaping (strescape.c,
// str_tabunescape): \x01 followed by 0, 1, t, r, n.
func unescapeDict(s []byte) []byte {
	if bytes.IndexByte(s, 1) < 0 {
		return s
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != 1 {
			out = append(out, s[i])
			continue
		}
		i++
		if i == len(s) {
			break
		}
		switch s[i] {
		case '0':
			out = append(out, 0)
		case '1':
			out = append(out, 1)
		case 't':
			out = append(out, '\t')
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		default:
			out = append(out, s[i])
		}
	}
	return out
}

// clip shortens a reply for an error message.
func clip(b []byte) string {
	if len(b) > 120 {
		return string(b[:120]) + "…"
	}
	return string(b)
}
