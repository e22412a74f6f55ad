package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// errNoBinary marks a daemon that is not built (yet): its scenarios are
// skipped, not failed.
var errNoBinary = errors.New("binary not built")

// runOptions configure a full benchmark run.
type runOptions struct {
	Bin       string        // directory holding the shitenno binaries
	Work      string        // scratch directory: configs, sockets, logs
	Backend   string        // "builtin" or "example"
	Protocols []string      // "postfix", "dovecot", "sasl", "policy", "nginx"
	Conns     []int         // concurrent connections per run
	Repeat    int           // rounds of every scenario at the RepeatAt concurrencies
	RepeatAt  []int         // concurrencies measured Repeat times (the targets')
	Warmup    time.Duration // per run, not measured
	Duration  time.Duration // per run, measured
	MaxAge    int           // Cache-Control max-age of the cached backend
	Out       string        // Markdown results file ("" for none)
	Extra     []string      // Markdown files appended to the results
	Commit    string        // source version, for the record
	// LimiterControl runs the limiter scenario with the limiter off as
	// well (A/A): its ratios then show the measurement's noise floor.
	LimiterControl bool
	Stdout         io.Writer
}

// Scenario names, in the order of the issue.
const (
	scNull   = "null"
	scDirect = "direct"
	// scNaive is the naive reference daemon (naive.go, issue #21): what
	// shitenno's uncached path must at least match.
	scNaive    = "naive"
	scUncached = "uncached"
	scCached   = "cached"
	// scScan is postfix's scan (scan.go, issue #21): a cache half the
	// size of the keys, cycled through on one connection.
	scScan = "scan"
	// scLimiter is shitenno-nginx uncached with the brute-force limiter
	// on (issue #19); its uncached run has it off.
	scLimiter = "limiter"
)

// allScenarios orders the rows of the report.
var allScenarios = []string{scNull, scDirect, scNaive, scUncached, scCached, scScan, scLimiter}

// allProtocols are what --protocols accepts: the two lookup protocols,
// then SMTP AUTH and policy (served by shitenno-postfix) and nginx
// auth_http (issue #17, #19).
var allProtocols = []string{"postfix", "dovecot", "sasl", "policy", "nginx"}

// scenariosOf lists the scenarios measured for proto. Logins and policy
// requests are uncached by design, so they have no cached scenario, and
// no null responder: their reference is the direct HTTP hop.
func scenariosOf(proto string) []string {
	switch proto {
	case "sasl", "policy":
		return []string{scDirect, scUncached}
	case "nginx":
		return []string{scDirect, scUncached, scLimiter}
	}
	return []string{scNull, scDirect, scNaive, scUncached, scCached}
}

// onceScenarios lists the scenarios of proto measured once, on one
// connection, after the others: they compare with no other scenario.
func onceScenarios(proto string) []string {
	if proto == "postfix" {
		return []string{scScan}
	}
	return nil
}

// daemonOf names the daemon serving proto: shitenno-<daemonOf>.
func daemonOf(proto string) string {
	switch proto {
	case "sasl", "policy":
		return "postfix"
	}
	return proto
}

// lookupProto reports whether proto is one of the cached lookup
// protocols (socketmap, dict), which have the issue-6 targets.
func lookupProto(proto string) bool { return proto == "postfix" || proto == "dovecot" }

// row is one measured run.
type row struct {
	Proto, Scenario string
	Conns           int
	Round           int // 0-based repetition
	Res             loadResult
	Server          string  // which process answered the client
	RSS             int64   // its peak RSS during the run, bytes (-1 unknown)
	ServerCPU       float64 // µs of CPU per lookup in that process (-1 unknown)
	BackendCPU      float64 // µs per lookup in the backend (-1: no backend involved)
	ClientCPU       float64 // µs per lookup in this load generator
	BackendPer      float64 // backend requests per lookup (-1 unknown)
	Skipped         string  // why the run did not happen
	// Pair is the other half of an interleaved A/B run (scLimiter: the
	// limiter-off daemon, request by request with this one); nil for a
	// run of one server. Backend and client CPU and BackendPer then
	// cover both halves.
	Pair *pairRun
}

// pairRun is the second server of an interleaved run.
type pairRun struct {
	Server    string
	Res       loadResult
	ServerCPU float64 // µs of CPU per request in that process (-1 unknown)
}

// target is one process a scenario talks to.
type target struct {
	dial    dialFunc
	server  *proc
	backend *proc
	url     string // the backend's base URL, for its counters
	cleanup func()
	scan    *scanRun // the scan scenario's connection, warmed up
}

type runner struct {
	o        runOptions
	self     string
	procs    []*proc
	backends map[bool]*proc // keyed by "cached"
	urls     map[bool]string
	daemons  map[string]*proc // "postfix/cached" …
	nulls    map[string]*proc
	naives   map[string]*proc // the naive reference daemons, by protocol
	notes    []string
}

// benchRun starts everything, runs every scenario and reports.
func benchRun(o runOptions) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	r := &runner{o: o, self: self, backends: map[bool]*proc{}, urls: map[bool]string{},
		daemons: map[string]*proc{}, nulls: map[string]*proc{}, naives: map[string]*proc{}}
	defer r.stopAll()
	if err := r.startAll(); err != nil {
		return err
	}
	rows := r.measureAll()
	sortRows(rows, o.Protocols)
	rep := report{Opts: o, Rows: rows, Notes: r.notes, Date: time.Now().UTC()}
	if slices.Contains(o.Protocols, "nginx") {
		rep.LimiterOn, rep.LimiterOff = limiterCost()
	}
	return rep.write(o.Stdout, o.Out)
}

// startAll starts the backends, the null responders and naive daemons of
// the lookup protocols, and the shitenno daemons the protocols need (a
// daemon not built is noted, not fatal).
func (r *runner) startAll() error {
	if err := r.startBackends(); err != nil {
		return err
	}
	for _, p := range r.o.Protocols {
		if lookupProto(p) {
			if err := r.startResponders(p); err != nil {
				return err
			}
		}
	}
	for _, d := range r.daemonsNeeded() {
		if err := r.startDaemon(d[0], d[1]); err != nil && !errors.Is(err, errNoBinary) {
			return err
		}
	}
	return nil
}

// measureAll runs every scenario of every protocol at every concurrency,
// in the order plan gives, printing a progress line per run.
func (r *runner) measureAll() []row {
	var rows []row
	for _, s := range plan(r.o) {
		rw := r.measure(s.proto, s.sc, s.conns)
		rw.Round = s.round
		rows = append(rows, rw)
		fmt.Fprintln(r.o.Stdout, progressLine(rw))
	}
	return rows
}

// step is one run of the plan.
type step struct {
	proto, sc    string
	conns, round int
}

// plan orders the runs. The scenarios compared in a ratio run back to
// back (same protocol, same concurrency, same round), so that load from
// elsewhere on the machine affects both sides of a ratio alike. The
// protocols take turns round by round, first in --protocols order and
// then reversed: on a VM whose speed drifts over minutes, measuring one
// protocol's whole block before the next made whichever went second look
// faster (2026-12-08, docs/bench.md), and the dovecot-against-postfix
// target compares the two.
func plan(o runOptions) []step {
	var steps []step
	for _, n := range o.Conns {
		rounds := 1
		if slices.Contains(o.RepeatAt, n) {
			rounds = max(1, o.Repeat)
		}
		for round := range rounds {
			protos := slices.Clone(o.Protocols)
			if round%2 == 1 {
				slices.Reverse(protos)
			}
			for _, p := range protos {
				for _, sc := range scenariosOf(p) {
					steps = append(steps, step{p, sc, n, round})
				}
			}
		}
	}
	for _, p := range o.Protocols {
		for _, sc := range onceScenarios(p) {
			steps = append(steps, step{p, sc, 1, 0})
		}
	}
	return steps
}

// sortRows orders the rows as the report lists them: by protocol (in
// --protocols order), scenario, concurrency, round.
func sortRows(rows []row, protos []string) {
	slices.SortStableFunc(rows, func(a, b row) int {
		if c := slices.Index(protos, a.Proto) - slices.Index(protos, b.Proto); c != 0 {
			return c
		}
		if c := slices.Index(allScenarios, a.Scenario) - slices.Index(allScenarios, b.Scenario); c != 0 {
			return c
		}
		if c := a.Conns - b.Conns; c != 0 {
			return c
		}
		return a.Round - b.Round
	})
}

func (r *runner) stopAll() {
	for i := len(r.procs) - 1; i >= 0; i-- {
		r.procs[i].stop()
	}
}

func (r *runner) start(name string, argv ...string) (*proc, error) {
	p, err := startProc(r.o.Work, name, argv...)
	if err != nil {
		return nil, err
	}
	r.procs = append(r.procs, p)
	return p, nil
}

// startBackends starts two backends: one without Cache-Control (direct
// and uncached) and one with max-age (cached).
func (r *runner) startBackends() error {
	var data string
	if r.o.Backend == "example" {
		data = filepath.Join(r.o.Work, "example-data.toml")
		f, err := os.Create(data)
		if err != nil {
			return err
		}
		err = writeExampleData(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	for _, cached := range []bool{false, true} {
		port, err := freePort()
		if err != nil {
			return err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		age := 0
		name := "backend-uncached"
		if cached {
			age, name = r.o.MaxAge, "backend-cached"
		}
		var argv []string
		if r.o.Backend == "example" {
			argv = []string{filepath.Join(r.o.Bin, "shitenno-example-backend"), "--listen", addr,
				"--data", data, "--quiet", "--max-age", strconv.Itoa(age)}
		} else {
			argv = []string{r.self, "backend", "--listen", addr, "--max-age", strconv.Itoa(age)}
		}
		p, err := r.start(name, argv...)
		if err != nil {
			return err
		}
		if err := p.waitReady("tcp", addr); err != nil {
			return err
		}
		r.backends[cached] = p
		r.urls[cached] = "http://" + addr + "/"
	}
	return nil
}

// startResponders starts the null responder and the naive reference
// daemon of a lookup protocol, the naive one against the uncached
// backend (the one direct and uncached use).
func (r *runner) startResponders(proto string) error {
	null, err := r.startResponder("null", proto)
	if err != nil {
		return err
	}
	naive, err := r.startResponder("naive", proto, "--url", r.urls[false])
	if err != nil {
		return err
	}
	r.nulls[proto], r.naives[proto] = null, naive
	return nil
}

// startResponder starts this binary's subcommand sub (null or naive) for
// proto on the socket <work>/<sub>-<proto> and waits until it listens.
func (r *runner) startResponder(sub, proto string, args ...string) (*proc, error) {
	name := sub + "-" + proto
	sock := filepath.Join(r.o.Work, name)
	argv := append([]string{r.self, sub, "--protocol", proto, "--socket", sock}, args...)
	p, err := r.start(name, argv...)
	if err != nil {
		return nil, err
	}
	return p, p.waitReady("unix", sock)
}

// daemonsNeeded lists the daemons the protocols need, as (daemon,
// kind) pairs: kind is a scenario name (uncached, cached, limiter).
func (r *runner) daemonsNeeded() [][2]string {
	var out [][2]string
	for _, p := range r.o.Protocols {
		for _, sc := range append(scenariosOf(p), onceScenarios(p)...) {
			// The scan needs the built-in backend (measure).
			if sc == scNull || sc == scDirect || sc == scNaive || (sc == scScan && r.o.Backend != "builtin") {
				continue
			}
			d := [2]string{daemonOf(p), sc}
			if !slices.Contains(out, d) {
				out = append(out, d)
			}
		}
	}
	return out
}

// startDaemon writes a configuration and starts shitenno-<daemon> of one
// kind: uncached (no cache, no brute-force limiter), cached (the cache
// on, against the cached backend), scan (the e2e scan test's cache,
// against the cached backend) or limiter (uncached with [BruteForce] at
// its defaults). A daemon that is not built yet is noted and its
// scenarios skipped.
func (r *runner) startDaemon(daemon, kind string) error {
	bin := filepath.Join(r.o.Bin, "shitenno-"+daemon)
	if _, err := os.Stat(bin); err != nil {
		r.notes = append(r.notes, fmt.Sprintf("%s not found: its %s scenarios skipped", bin, kind))
		return errNoBinary
	}
	conf := filepath.Join(r.o.Work, kind+"-"+daemon+".conf")
	text, sockets := r.daemonConfig(daemon, kind)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return err
	}
	p, err := r.start(daemon+"-"+kind, bin, "--config", conf)
	if err != nil {
		return err
	}
	for _, sock := range sockets {
		if err := p.waitReady("unix", sock); err != nil {
			return err
		}
	}
	r.daemons[daemon+"/"+kind] = p
	return nil
}

// daemonConfig returns the configuration of shitenno-<daemon> of one
// kind (startDaemon) and the sockets it listens on once started.
func (r *runner) daemonConfig(daemon, kind string) (string, []string) {
	cached := kind == scCached || kind == scScan
	// The uncached daemon caches nothing, whatever the backend says.
	cache := "MaxEntries = 0\n"
	switch kind {
	case scCached:
		cache = "MaxEntries = 10000\n"
	case scScan:
		cache = scanCacheConf
	}
	prefix := filepath.Join(r.o.Work, kind)
	// The listeners beyond socketmap, relative to SocketPrefix like the
	// main socket: <work>/uncached-sasl, <work>/uncached-policy.
	var extra string
	sockets := []string{prefix + "-" + daemon}
	if daemon == "postfix" && kind == scUncached {
		for _, l := range [][2]string{{"sasl", "SASLSocket"}, {"policy", "PolicySocket"}} {
			if slices.Contains(r.o.Protocols, l[0]) {
				extra += fmt.Sprintf("%s = %q\n", l[1], l[0])
				sockets = append(sockets, prefix+"-"+l[0])
			}
		}
	}
	// The limiter is off but where it is measured, so that the other
	// scenarios measure the same work as before it existed; AllowNets
	// stays the default (loopback), which the nginx clients' Client-IPs
	// are outside of.
	bf := "MaxFailures = 0\n"
	if kind == scLimiter && !r.o.LimiterControl {
		bf = "# defaults: MaxFailures = 10, Window = 15m, AllowNets = loopback\n"
	}
	return fmt.Sprintf(`# Generated by shitenno-bench.
RemoteURL = %q
SocketPrefix = %q
Timeout = "5s"
LogLevel = "warn"
[Cache]
%s[Postfix]
Mode = "0600"
%s[Dovecot]
Mode = "0600"
[Nginx]
Mode = "0600"
[BruteForce]
%s`, r.urls[cached], prefix, cache, extra, bf), sockets
}

// target returns how to reach the server of one scenario.
func (r *runner) target(proto, sc string) (target, error) {
	switch sc {
	case scNull:
		return target{dial: dialProto(proto, filepath.Join(r.o.Work, "null-"+proto)), server: r.nulls[proto]}, nil
	case scDirect:
		d, cleanup := dialHTTP(r.urls[false], proto)
		return target{dial: d, server: r.backends[false], backend: r.backends[false], url: r.urls[false], cleanup: cleanup}, nil
	case scNaive:
		return target{dial: dialProto(proto, filepath.Join(r.o.Work, "naive-"+proto)), server: r.naives[proto],
			backend: r.backends[false], url: r.urls[false]}, nil
	}
	cached := sc == scCached || sc == scScan
	p := r.daemons[daemonOf(proto)+"/"+sc]
	if p == nil {
		return target{}, errNoBinary
	}
	path := filepath.Join(r.o.Work, sc) + "-" + proto
	dial := dialProto(proto, path)
	if sc == scScan {
		dial = dialSocketmap("unix", path, new(scanWire(scanKeys)))
	}
	return target{dial: dial, server: p, backend: r.backends[cached], url: r.urls[cached]}, nil
}

// dialProto returns proto's load client for the unix socket at path.
func dialProto(proto, path string) dialFunc {
	switch proto {
	case "dovecot":
		return dialDict("unix", path, new(dovecotWire()))
	case "sasl":
		authTail, okTail := saslWire()
		return dialSASL("unix", path, authTail, okTail)
	case "policy":
		return dialPolicy("unix", path, new(policyWire()))
	case "nginx":
		req, want := nginxWire()
		return dialNginx("unix", path, req, want)
	}
	return dialSocketmap("unix", path, new(postfixWire()))
}

// measure runs one scenario at one concurrency and collects the process
// figures around it.
func (r *runner) measure(proto, sc string, conns int) row {
	rw := row{Proto: proto, Scenario: sc, Conns: conns, RSS: -1, ServerCPU: -1, BackendCPU: -1, ClientCPU: -1, BackendPer: -1}
	if sc == scScan && r.o.Backend != "builtin" {
		// Its hit ratio is the built-in backend's request count, and
		// only that backend knows the scan keys.
		rw.Skipped = "needs the built-in backend"
		return rw
	}
	t, err := r.target(proto, sc)
	if err != nil {
		rw.Skipped = "daemon not built"
		return rw
	}
	if t.cleanup != nil {
		defer t.cleanup()
	}
	rw.Server = t.server.name
	// The limiter-on daemon is measured interleaved with the limiter-off
	// one (runLoadN): their ratio must resolve a few per cent, which
	// runs made one after the other on a shared machine cannot.
	var pt target
	if sc == scLimiter {
		if pt, err = r.target(proto, scUncached); err != nil {
			rw.Skipped = "daemon not built"
			return rw
		}
	}
	if sc == scCached {
		// Fill the cache with every key once, so the measured window sees
		// hits only (as long as max-age outlives the run).
		r.prewarm(t)
	}
	if sc == scScan {
		// The first pass fills the cache; only the passes after it,
		// the steady state, are measured.
		t.scan = startScan(t.dial, scanKeys)
		defer t.scan.close()
	}
	r.runMeasured(&rw, t, pt, conns)
	if t.server.exited() {
		rw.Res.Errors++
		rw.Res.FirstErr = t.server.name + " exited: " + t.server.logTail()
	}
	return rw
}

// runMeasured drives the load on t (interleaved with pt when pt is set)
// and turns the process counters read before and after into rw's per
// request figures. Backend and client CPU, and backend requests, are per
// request of both halves of an interleaved run.
func (r *runner) runMeasured(rw *row, t, pt target, conns int) {
	pid := t.server.pid()
	resetPeakRSS(pid)
	cpu0, self0 := procCPU(pid), selfCPU()
	ownBackend := t.backend != nil && t.backend != t.server
	var bcpu0 time.Duration
	if ownBackend {
		bcpu0 = procCPU(t.backend.pid())
	}
	req0, bad0, statsOK := backendStats(t.url)
	total := 0.0
	switch {
	case pt.dial != nil:
		total = r.runPair(rw, t, pt, conns)
	case t.scan != nil:
		rw.Res = t.scan.measure(r.o.Duration)
	default:
		rw.Res = runLoad(t.dial, conns, r.o.Warmup, r.o.Duration)
	}
	cpu1, self1 := procCPU(pid), selfCPU()
	rw.RSS = peakRSS(pid)
	own := float64(rw.Res.Total)
	total += own
	if own > 0 {
		rw.ServerCPU = cpuPer(cpu0, cpu1, own)
		rw.ClientCPU = float64((self1 - self0).Microseconds()) / total
		if ownBackend {
			rw.BackendCPU = cpuPer(bcpu0, procCPU(t.backend.pid()), total)
		}
	}
	if t.url != "" && statsOK {
		rw.addBackendStats(t.url, req0, bad0, total)
	}
}

// runPair runs t and pt interleaved, fills rw.Res and rw.Pair, and
// returns the pair half's request count.
func (r *runner) runPair(rw *row, t, pt target, conns int) float64 {
	ppid := pt.server.pid()
	pcpu0 := procCPU(ppid)
	res := runLoadN([]dialFunc{t.dial, pt.dial}, conns, r.o.Warmup, r.o.Duration)
	rw.Res = res[0]
	rw.Pair = &pairRun{Server: pt.server.name, Res: res[1], ServerCPU: cpuPer(pcpu0, procCPU(ppid), float64(res[1].Total))}
	return float64(res[1].Total)
}

// cpuPer is the CPU time from cpu0 to cpu1 in µs per request over n
// requests, -1 when either reading or n is unknown.
func cpuPer(cpu0, cpu1 time.Duration, n float64) float64 {
	if cpu0 < 0 || cpu1 < 0 || n <= 0 {
		return -1
	}
	return float64((cpu1 - cpu0).Microseconds()) / n
}

// addBackendStats reads the backend's counters again: requests per
// request since req0 over total, and any request it refused as malformed
// since bad0, added to the run's first error.
func (rw *row) addBackendStats(url string, req0, bad0 int64, total float64) {
	req1, bad1, ok := backendStats(url)
	if ok && total > 0 {
		rw.BackendPer = float64(req1-req0) / total
	}
	if ok && bad1 > bad0 {
		// A request the backend refused is shitenno breaking the
		// contract; the client already saw a failure, make it visible.
		rw.Res.FirstErr = fmt.Sprintf("%s (backend refused %d requests as malformed)", rw.Res.FirstErr, bad1-bad0)
	}
}

// prewarm looks every key up once over 8 connections.
func (r *runner) prewarm(t target) {
	const conns = 8
	done := make(chan struct{}, conns)
	for w := 0; w < conns; w++ {
		go func() {
			defer func() { done <- struct{}{} }()
			c, err := t.dial()
			if err != nil {
				return
			}
			defer c.close()
			for i := w; i < numKeys; i += conns {
				if c.lookup(i, time.Now()) != nil {
					return
				}
			}
		}()
	}
	for w := 0; w < conns; w++ {
		<-done
	}
}

func progressLine(rw row) string {
	if rw.Skipped != "" {
		return fmt.Sprintf("%-8s %-9s %3d conns: skipped (%s)", rw.Proto, rw.Scenario, rw.Conns, rw.Skipped)
	}
	s := fmt.Sprintf("%-8s %-9s %3d conns: %9.0f req/s  p50 %-9s p99 %-9s errors %d  RSS %s",
		rw.Proto, rw.Scenario, rw.Conns, rw.Res.Rate(), fmtDur(rw.Res.Quantile(0.5)), fmtDur(rw.Res.Quantile(0.99)),
		rw.Res.Errors, fmtBytes(rw.RSS))
	if rw.Res.FirstErr != "" {
		s += "\n    first error: " + rw.Res.FirstErr
	}
	if p := rw.Pair; p != nil {
		s += fmt.Sprintf("\n%-8s %-9s %3d conns: %9.0f req/s  p50 %-9s p99 %-9s errors %d  (limiter off, interleaved)",
			"", "", rw.Conns, p.Res.Rate(), fmtDur(p.Res.Quantile(0.5)), fmtDur(p.Res.Quantile(0.99)), p.Res.Errors)
		if p.Res.FirstErr != "" {
			s += "\n    first error: " + p.Res.FirstErr
		}
	}
	return s
}
