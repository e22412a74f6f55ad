package main

import (
	"fmt"
	"net"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestNaiveDaemon: the naive reference daemon answers both protocols
// correctly through the built-in backend (every reply checked by the load
// clients), and the backend sees well-formed requests only.
func TestNaiveDaemon(t *testing.T) {
	fb := newFastBackend(0)
	srv := httptest.NewServer(fb)
	defer srv.Close()
	pw, dw := postfixWire(), dovecotWire()
	for _, proto := range []string{"postfix", "dovecot"} {
		t.Run(proto, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "naive")
			errc := make(chan error, 1)
			go func() { errc <- serveNaive(proto, sock, srv.URL+"/") }()
			waitSocket(t, sock, errc)
			dial := dialSocketmap("unix", sock, &pw)
			if proto == "dovecot" {
				dial = dialDict("unix", sock, &dw)
			}
			res := runLoad(dial, 3, 0, 200*time.Millisecond)
			if res.Errors != 0 || res.Ops == 0 {
				t.Fatalf("%d errors (%s), %d ops", res.Errors, res.FirstErr, res.Ops)
			}
		})
	}
	if n := fb.bad.Load(); n != 0 {
		t.Fatalf("backend refused %d requests", n)
	}
}

// TestIssue21Targets: the report judges the naive, direct, p50 and
// dovecot-vs-postfix targets from the rows of one run.
func TestIssue21Targets(t *testing.T) {
	lat := func(ops int64, d time.Duration) loadResult {
		r := loadResult{Ops: ops, Window: time.Second}
		for range 100 {
			r.Lat = append(r.Lat, d)
		}
		return r
	}
	var rows []row
	add := func(proto, sc string, conns int, ops int64, d time.Duration) {
		rows = append(rows, row{Proto: proto, Scenario: sc, Conns: conns, Res: lat(ops, d)})
	}
	for _, p := range []string{"postfix", "dovecot"} {
		for _, n := range []int{1, 8, 64} {
			add(p, scNull, n, 1000, 10*time.Microsecond)
			add(p, scDirect, n, 100, 100*time.Microsecond)
			add(p, scNaive, n, 60, 160*time.Microsecond)
			add(p, scCached, n, 800, 20*time.Microsecond)
		}
	}
	add("postfix", scUncached, 1, 70, 140*time.Microsecond)
	add("postfix", scUncached, 8, 70, 140*time.Microsecond)
	add("postfix", scUncached, 64, 70, 140*time.Microsecond)
	add("dovecot", scUncached, 1, 50, 200*time.Microsecond)
	add("dovecot", scUncached, 8, 50, 200*time.Microsecond)
	add("dovecot", scUncached, 64, 50, 200*time.Microsecond)
	r := report{Opts: runOptions{Protocols: []string{"postfix", "dovecot"}, Conns: []int{1, 8, 64}}, Rows: rows}
	var b strings.Builder
	r.writeIssue21Targets(&b, r.Opts.Protocols)
	wantLines(t, b.String(),
		"| uncached ≥ 1× naive @64 conns | ✅ 1.17× | ❌ 0.83× |",
		"| uncached ≥ 0.6× direct @8 and 64 conns | ✅ 0.70× @8, 0.70× @64 | ❌ 0.50× @8, 0.50× @64 |",
		"| uncached p50 ≤ 1.5× direct p50 @1 conn | ✅ 1.40×, p50 140 µs | ❌ 2.00×, p50 200 µs |",
		"| cached ≥ 0.75× null @8 conns, p99 < 1.00 ms",
		"| — | ❌ 0.71× @1, 0.71× @8, 0.71× @64 |",
	)
}

// waitSocket waits until something listens on sock, or the server fails.
func waitSocket(t *testing.T, sock string, errc <-chan error) {
	t.Helper()
	for range 200 {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-errc:
			t.Fatal(err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("server did not start")
}

// wantLines reports each of wants that out does not contain.
func wantLines(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

// TestPlanInterleaves checks the run order: per concurrency and round
// every protocol, each one's scenarios back to back, the protocols'
// order reversed every other round, and the once-only scenarios last.
func TestPlanInterleaves(t *testing.T) {
	o := runOptions{Protocols: []string{"postfix", "dovecot"}, Conns: []int{1, 8}, Repeat: 3, RepeatAt: []int{8}}
	var got []string
	for _, s := range plan(o) {
		k := fmt.Sprintf("%s@%d#%d", s.proto, s.conns, s.round)
		if s.sc == scScan {
			k = "scan"
		}
		if len(got) == 0 || got[len(got)-1] != k {
			got = append(got, k)
		}
	}
	want := []string{"postfix@1#0", "dovecot@1#0",
		"postfix@8#0", "dovecot@8#0", "dovecot@8#1", "postfix@8#1", "postfix@8#2", "dovecot@8#2", "scan"}
	if !slices.Equal(got, want) {
		t.Fatalf("plan order\n got %v\nwant %v", got, want)
	}
	if n, want := len(plan(o)), 4*len(scenariosOf("postfix"))*2+1; n != want {
		t.Errorf("plan has %d runs, want %d", n, want)
	}
}
