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
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shitenno/shitenno/pkg/dict"
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
	return runLoadN([]dialFunc{dial}, conns, warm, dur)[0]
}

// runLoadN is runLoad over several servers at once, interleaved request
// by request: each worker holds a connection to every server and sends
// each key to all of them in turn, starting with a different one each
// time. Every server then sees the same requests under the same machine
// load, down to the millisecond, which is what an A/B comparison of two
// daemons on a shared machine needs (a drift between two runs made one
// after the other is larger than the few per cent to tell apart).
func runLoadN(dials []dialFunc, conns int, warm, dur time.Duration) []loadResult {
	n := len(dials)
	var (
		phase    atomic.Int32 // 0 warm-up, 1 measuring, 2 stop
		wg       sync.WaitGroup
		mu       sync.Mutex
		res      = make([]loadResult, n)
		firstErr = make([]error, n)
	)
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lw := newLoadWorker(dials)
			lw.run(w, conns, &phase)
			mu.Lock()
			defer mu.Unlock()
			lw.merge(res, firstErr)
		}()
	}
	time.Sleep(warm)
	phase.Store(1)
	start := time.Now()
	time.Sleep(dur)
	phase.Store(2)
	window := time.Since(start)
	wg.Wait()
	for t := range res {
		res[t].Window = window
		slices.Sort(res[t].Lat)
		if firstErr[t] != nil {
			res[t].FirstErr = firstErr[t].Error()
		}
	}
	return res
}

// loadWorker is one of runLoadN's closed-loop workers: a connection to
// each server and its own tallies per server, merged into the results
// once it stops (no locking in the loop).
type loadWorker struct {
	dials       []dialFunc
	cs          []client
	lat         [][]time.Duration
	total, errs []int64
	werr        []error
}

func newLoadWorker(dials []dialFunc) *loadWorker {
	n := len(dials)
	return &loadWorker{dials: dials, cs: make([]client, n), lat: make([][]time.Duration, n),
		total: make([]int64, n), errs: make([]int64, n), werr: make([]error, n)}
}

// run sends worker w's keys (w, w+conns, …) to every server in turn,
// starting with a different server at each key, until phase is 2.
func (lw *loadWorker) run(w, conns int, phase *atomic.Int32) {
	n := len(lw.dials)
	i := w % numKeys
	for step := 0; ; step++ {
		for k := range n {
			ph := phase.Load()
			if ph == 2 {
				break
			}
			lw.lookup((k+step)%n, i, ph == 1)
		}
		if phase.Load() == 2 {
			return
		}
		i = (i + conns) % numKeys
	}
}

// lookup sends key i to server t, connecting first if need be, and
// records its latency when measuring.
func (lw *loadWorker) lookup(t, i int, measuring bool) {
	if lw.cs[t] == nil {
		c, err := lw.dials[t]()
		if err != nil {
			lw.fail(t, fmt.Errorf("connect: %w", err))
			time.Sleep(10 * time.Millisecond)
			return
		}
		lw.cs[t] = c
	}
	t0 := time.Now()
	err := lw.cs[t].lookup(i, t0)
	d := time.Since(t0)
	if err != nil {
		// The stream may be out of step: start over on a new connection.
		lw.fail(t, fmt.Errorf("%s: %w", benchKey(i), err))
		lw.cs[t].close()
		lw.cs[t] = nil
		return
	}
	lw.total[t]++
	if measuring {
		lw.lat[t] = append(lw.lat[t], d)
	}
}

// fail counts an error on server t and keeps the worker's first.
func (lw *loadWorker) fail(t int, err error) {
	lw.errs[t]++
	if lw.werr[t] == nil {
		lw.werr[t] = err
	}
}

// merge closes the worker's connections and adds its tallies to res
// (the caller holds the lock).
func (lw *loadWorker) merge(res []loadResult, firstErr []error) {
	for t, c := range lw.cs {
		if c != nil {
			c.close()
		}
		res[t].Ops += int64(len(lw.lat[t]))
		res[t].Total += lw.total[t]
		res[t].Errors += lw.errs[t]
		res[t].Lat = append(res[t].Lat, lw.lat[t]...)
		if firstErr[t] == nil {
			firstErr[t] = lw.werr[t]
		}
	}
}

// MeanLatency is the mean latency of the measured lookups: over the same
// window and connections, the inverse of a server's throughput (Little's
// law), so two servers measured interleaved compare by it.
func (r loadResult) MeanLatency() time.Duration {
	if len(r.Lat) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range r.Lat {
		sum += d
	}
	return sum / time.Duration(len(r.Lat))
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

// streamConn is what the clients on a kept stream connection share: the
// connection with its deadline and a read buffer.
type streamConn struct {
	deadliner
	br *bufio.Reader
}

func newStreamConn(c net.Conn) streamConn {
	return streamConn{deadliner: deadliner{c: c}, br: bufio.NewReaderSize(c, 4096)}
}

func (s *streamConn) close() { s.c.Close() }

// socketmapClient speaks postfix's socketmap protocol like postfix does:
// one request, wait for the reply, no pipelining.
type socketmapClient struct {
	streamConn
	buf []byte
	w   *wire
}

// dialWith returns a dialFunc connecting to addr and handing the
// connection to open, which wraps it in a client (after a handshake, for
// some); the connection is closed when open fails.
func dialWith(network, addr string, open func(net.Conn) (client, error)) dialFunc {
	return func() (client, error) {
		c, err := net.DialTimeout(network, addr, opTimeout)
		if err != nil {
			return nil, err
		}
		cl, err := open(c)
		if err != nil {
			c.Close()
			return nil, err
		}
		return cl, nil
	}
}

func dialSocketmap(network, addr string, w *wire) dialFunc {
	return dialWith(network, addr, func(c net.Conn) (client, error) {
		return &socketmapClient{streamConn: newStreamConn(c), buf: make([]byte, 0, 256), w: w}, nil
	})
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

// dictClient speaks dovecot's proxy dict protocol like dovecot 2.3.17+'s
// auth worker: a hello, then one lookup at a time. It keeps its
// connection, which dovecot does not (it reconnects per batch): the
// benchmark measures lookups, not connection set-up.
type dictClient struct {
	streamConn
	w *wire
}

func dialDict(network, addr string, w *wire) dialFunc {
	return dialWith(network, addr, func(c net.Conn) (client, error) {
		_ = c.SetDeadline(time.Now().Add(opTimeout))
		if _, err := io.WriteString(c, dictHelloRaw); err != nil {
			return nil, err
		}
		return &dictClient{streamConn: newStreamConn(c), w: w}, nil
	})
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
	verb := protoVerb(proto)
	bodies := make([][]byte, numKeys)
	for i := range bodies {
		bodies[i] = remote.EncodeRequest(nil, verb, directObject(proto, i))
	}
	return func() (client, error) {
		return &httpClient{hc: hc, url: base + verb, proto: proto, bodies: bodies}, nil
	}, tr.CloseIdleConnections
}

// protoVerb is the backend verb a protocol's requests use.
func protoVerb(proto string) string {
	switch proto {
	case "dovecot":
		return dovecotVerb
	case "sasl":
		return saslVerb
	case "policy":
		return policyVerb
	case "nginx":
		return nginxVerb
	}
	return postfixVerb
}

// directObject is the Object shitenno sends the backend for request i of
// proto, byte for byte: bridge.SASLObject's member order, every policy
// attribute in the order received, and nginx's headers as a JSON object
// with sorted keys (encoding/json of a map).
func directObject(proto string, i int) []byte {
	str := remote.AppendJSONString
	switch proto {
	case "dovecot":
		return append(str([]byte(`{"Context":"shared","Object":`), benchKey(i)), '}')
	case "sasl":
		b := str([]byte(`{"Mechanism":"PLAIN","User":`), benchKey(i))
		b = str(append(b, `,"Password":`...), loginPassword(i))
		return append(b, `,"Service":"smtp","Client-IP":"127.0.0.1","Local-IP":"127.0.0.1","Secured":false}`...)
	case "policy":
		b := []byte{'{'}
		for j, a := range policyAttrs(i) {
			if j > 0 {
				b = append(b, ',')
			}
			b = str(append(str(b, a[0]), ':'), a[1])
		}
		return append(b, '}')
	case "nginx":
		b := []byte(`{"Auth-Login-Attempt":"1","Auth-Method":"plain","Auth-Pass":`)
		b = str(b, loginPassword(i))
		b = str(append(b, `,"Auth-Protocol":"imap","Auth-User":`...), benchKey(i))
		return append(str(append(b, `,"Client-IP":`...), nginxClientIP(i)), '}')
	}
	return str(nil, benchKey(i))
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
	return checkDirectData(h.proto, i, res.Data)
}

// checkDirectData checks the Data of a found reply the way the bridge
// reads it.
func checkDirectData(proto string, i int, data []byte) error {
	var s string
	var m map[string]any
	var ok bool
	// A string is compared with its plain encoding first, as the bridges
	// read one without encoding/json (bridge.plainJSONString): decoding every
	// reply by reflection cost the postfix reference 1 µs more than the
	// dovecot one per lookup, which made the two references unequal.
	switch proto {
	case "postfix":
		want := virtualValue(i)
		ok = plainStringIs(data, want) || json.Unmarshal(data, &s) == nil && s == want
	case "policy":
		want := policyAction(i)
		ok = plainStringIs(data, want) || json.Unmarshal(data, &s) == nil && s == want
	case "sasl":
		ok = json.Unmarshal(data, &m) == nil && m["User"] == benchKey(i)
	case "nginx":
		// Auth-Port may be a number or a string of digits.
		ok = json.Unmarshal(data, &m) == nil && m["Auth-Server"] == nginxServer &&
			(m["Auth-Port"] == float64(nginxPort) || m["Auth-Port"] == strconv.Itoa(nginxPort))
	default:
		want := passdbData(i)
		ok = string(data) == want || jsonEqual(data, []byte(want))
	}
	if !ok {
		return fmt.Errorf("backend Data %q is not the answer for %s", clip(data), benchKey(i))
	}
	return nil
}

// plainStringIs reports whether data is want encoded as encoding/json
// would: then it decodes to want, with no decoder run.
func plainStringIs(data []byte, want string) bool {
	var buf [128]byte
	return bytes.Equal(data, remote.AppendJSONString(buf[:0], want))
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

// unescapeDict reverses dovecot's tab escaping, as the dict server does.
func unescapeDict(s []byte) []byte { return []byte(dict.Unescape(s)) }

// clip shortens a reply for an error message.
func clip(b []byte) string {
	if len(b) > 120 {
		return string(b[:120]) + "…"
	}
	return string(b)
}

// saslClient speaks the dovecot auth client protocol as postfix's smtpd
// does (xsasl_dovecot_server.c): VERSION and CPID, the server's handshake
// up to DONE, then one AUTH at a time with the PLAIN initial response, on
// a connection kept for the process's life.
type saslClient struct {
	streamConn
	id       int
	buf      []byte
	authTail [][]byte
	okTail   [][]byte
}

// saslCPID numbers the connections as the smtpd processes they stand for.
var saslCPID atomic.Int64

func dialSASL(network, addr string, authTail, okTail [][]byte) dialFunc {
	return dialWith(network, addr, func(c net.Conn) (client, error) {
		_ = c.SetDeadline(time.Now().Add(opTimeout))
		s := &saslClient{streamConn: newStreamConn(c), buf: make([]byte, 0, 256), authTail: authTail, okTail: okTail}
		if err := s.handshake(); err != nil {
			return nil, err
		}
		return s, nil
	})
}

// handshake sends the client's VERSION and CPID without waiting, as
// postfix does, and reads the server's lines up to DONE: it must speak
// major version 1 and offer PLAIN.
func (s *saslClient) handshake() error {
	hello := fmt.Appendf(nil, "VERSION\t1\t0\nCPID\t%d\n", 10000+saslCPID.Add(1))
	if _, err := s.c.Write(hello); err != nil {
		return err
	}
	version, plain := false, false
	for {
		line, err := s.br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("handshake: %w", err)
		}
		switch {
		case bytes.Equal(line, []byte("DONE\n")):
			if !version || !plain {
				return fmt.Errorf("handshake without VERSION 1 or MECH PLAIN")
			}
			return nil
		case bytes.HasPrefix(line, []byte("VERSION\t1\t")):
			version = true
		case bytes.HasPrefix(line, []byte("MECH\tPLAIN\t")) || bytes.Equal(line, []byte("MECH\tPLAIN\n")):
			plain = true
		}
	}
}

func (s *saslClient) lookup(i int, now time.Time) error {
	s.arm(now)
	s.id++
	b := append(s.buf[:0], "AUTH\t"...)
	b = strconv.AppendInt(b, int64(s.id), 10)
	idEnd := len(b)
	b = append(b, s.authTail[i]...)
	s.buf = b
	if _, err := s.c.Write(b); err != nil {
		return err
	}
	line, err := s.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	// The reply names the same id: "OK\t<id>..." or "FAIL\t<id>...".
	id := b[len("AUTH\t"):idEnd]
	if known(i) {
		if len(line) == 3+len(id)+len(s.okTail[i]) && string(line[:3]) == "OK\t" &&
			bytes.Equal(line[3:3+len(id)], id) && bytes.Equal(line[3+len(id):], s.okTail[i]) {
			return nil
		}
		return fmt.Errorf("reply %q, want OK\\t%s%q", clip(line), id, s.okTail[i])
	}
	if r, ok := bytes.CutPrefix(line, []byte("FAIL\t")); ok {
		if r, ok = bytes.CutPrefix(r, id); ok && len(r) > 0 && (r[0] == '\t' || r[0] == '\n') {
			return nil
		}
	}
	return fmt.Errorf("reply %q, want FAIL\\t%s", clip(line), id)
}

// policyClient speaks postfix's policy delegation protocol as smtpd
// does: a request of name=value lines and an empty line, then the reply
// "action=...\n\n", one at a time on a kept connection.
type policyClient struct {
	streamConn
	w *wire
}

func dialPolicy(network, addr string, w *wire) dialFunc {
	return dialWith(network, addr, func(c net.Conn) (client, error) {
		return &policyClient{streamConn: newStreamConn(c), w: w}, nil
	})
}

func (p *policyClient) lookup(i int, now time.Time) error {
	p.arm(now)
	if _, err := p.c.Write(p.w.req[i]); err != nil {
		return err
	}
	want := p.w.want[i]
	line, err := p.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.Equal(line, want[:len(want)-1]) {
		return fmt.Errorf("reply %q, want %q", clip(line), clip(want))
	}
	if line, err = p.br.ReadSlice('\n'); err != nil {
		return err
	}
	if len(line) != 1 {
		return fmt.Errorf("reply not ended by an empty line: %q", clip(line))
	}
	return nil
}

// nginxClient sends auth_http requests as nginx's mail proxy does: a new
// connection per login, an HTTP/1.0 GET with the Auth-* headers, the
// reply read to the end. The Auth-* headers of the reply must be exactly
// the expected ones.
type nginxClient struct {
	network, addr string
	req           [][]byte
	want          [][]string
	buf           bytes.Buffer
	got           []string
}

func dialNginx(network, addr string, req [][]byte, want [][]string) dialFunc {
	return func() (client, error) {
		return &nginxClient{network: network, addr: addr, req: req, want: want}, nil
	}
}

func (n *nginxClient) lookup(i int, now time.Time) error {
	c, err := net.DialTimeout(n.network, n.addr, opTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(now.Add(opTimeout))
	if _, err := c.Write(n.req[i]); err != nil {
		return err
	}
	n.buf.Reset()
	// HTTP/1.0 without keep-alive: the server closes after the reply.
	if _, err := n.buf.ReadFrom(io.LimitReader(c, 16<<10)); err != nil {
		return err
	}
	return n.check(n.buf.Bytes(), n.want[i])
}

// check parses an HTTP response head and compares its Auth-* headers.
func (n *nginxClient) check(resp []byte, want []string) error {
	head, _, ok := bytes.Cut(resp, []byte("\r\n\r\n"))
	if !ok {
		return fmt.Errorf("incomplete HTTP response %q", clip(resp))
	}
	status, rest, _ := bytes.Cut(head, []byte("\r\n"))
	if !bytes.HasPrefix(status, []byte("HTTP/1.")) || !bytes.HasPrefix(status[min(len(status), 8):], []byte(" 200 ")) {
		return fmt.Errorf("status line %q", clip(status))
	}
	n.got = n.got[:0]
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if bytes.HasPrefix(line, []byte("Auth-")) {
			n.got = append(n.got, string(line))
		}
	}
	slices.Sort(n.got)
	if !slices.Equal(n.got, want) {
		return fmt.Errorf("reply headers %q, want %q", n.got, want)
	}
	return nil
}

func (n *nginxClient) close() {}
