package main

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shitenno/shitenno/pkg/bridge"
	"github.com/shitenno/shitenno/pkg/remote"
	"github.com/shitenno/shitenno/pkg/socketmap"
)

func TestScanIndex(t *testing.T) {
	for _, j := range []int{0, 1, 9999, scanKeys - 1} {
		if i, ok := scanIndex([]byte(scanKey(j))); !ok || i != j {
			t.Fatalf("scanIndex(%q) = %d, %v", scanKey(j), i, ok)
		}
	}
	for _, k := range []string{"", "user20000@example.org", "user0001@example.org", "user0000x@example.org",
		"user00001@example.com", "u1@bench.example", "user000001@example.org"} {
		if i, ok := scanIndex([]byte(k)); ok {
			t.Errorf("scanIndex(%q) = %d, want no key", k, i)
		}
	}
	// The data set's keys stay apart from the scan's.
	i, _, ok := parseBackendRequest(postfixVerb, []byte(`{"Verb":"virtual","Object":"user00042@example.org"}`))
	if !ok || i != scanKeyBase+42 {
		t.Fatalf("scan key parsed as %d, %v", i, ok)
	}
	if i, _, _ := parseBackendRequest(postfixVerb, []byte(`{"Verb":"virtual","Object":"u42@bench.example"}`)); i != 42 {
		t.Fatalf("data-set key parsed as %d", i)
	}
	if out := string(appendAnswer(nil, dovecotVerb, scanKeyBase+42, []byte(`{}`))); !strings.Contains(out, `"KO"`) {
		t.Fatalf("a scan key answered for passdb: %s", out)
	}
}

// TestScanThroughShitenno drives the scan client through shitenno's own
// socketmap server, postfix bridge and remote client with a cache half
// the size of the keys, against the built-in backend sending max-age:
// every reply checks, the first pass asks the backend for every key, and
// the measured passes' backend requests give a hit ratio within what
// such a cache allows.
func TestScanThroughShitenno(t *testing.T) {
	const keys = 1000
	fb := newFastBackend(600)
	hs := httptest.NewServer(fb)
	defer hs.Close()
	rc, err := remote.New(remote.Options{URLs: []string{hs.URL + "/"}, Timeout: 5 * time.Second,
		Cache: remote.NewCache(keys/2, time.Hour, 0)})
	if err != nil {
		t.Fatal(err)
	}
	srv := &socketmap.Server{Handler: &bridge.Postfix{Backend: rc}}
	sock := serveOn(t, srv.Serve, func() { srv.Close() })
	s := startScan(dialSocketmap("unix", sock, new(scanWire(keys))), keys)
	defer s.close()
	if n := fb.requests.Load(); n != keys || s.errs != 0 {
		t.Fatalf("first pass: %d backend requests, %d errors (%v); want %d and 0", n, s.errs, s.first, keys)
	}
	res := s.measure(0)
	misses := fb.requests.Load() - keys
	if res.Errors != 0 || res.Total != scanMinPasses*keys || res.Ops != res.Total || len(res.Lat) != int(res.Total) {
		t.Fatalf("measured %d lookups (%d ops, %d latencies), %d errors (%s); want %d and 0",
			res.Total, res.Ops, len(res.Lat), res.Errors, res.FirstErr, scanMinPasses*keys)
	}
	hit := 1 - float64(misses)/float64(res.Total)
	t.Logf("hit ratio %.3f (%d backend requests for %d lookups)", hit, misses, res.Total)
	if hit <= 0 || hit > 0.5 || fb.bad.Load() != 0 {
		t.Fatalf("hit ratio %.3f, %d malformed requests: want in (0, 0.5] and none", hit, fb.bad.Load())
	}
}

// TestScanCountsErrors: a server that refuses the scan keys (the null
// responder closes the connection) makes errors, and the scan gives up
// after scanMaxErrors rather than trying every key.
func TestScanCountsErrors(t *testing.T) {
	s := startScan(dialSocketmap("unix", startNull(t, "postfix"), new(scanWire(scanKeys))), scanKeys)
	defer s.close()
	res := s.measure(time.Hour)
	if res.Errors != scanMaxErrors || res.Total != 0 || !strings.Contains(res.FirstErr, "key 0") {
		t.Fatalf("%d errors (%q), %d lookups; want %d errors and none", res.Errors, res.FirstErr, res.Total, scanMaxErrors)
	}
}

// TestScanReport: the scan's hit ratio is issue #21's target row, in
// postfix's column, and its run a row of the Runs table.
func TestScanReport(t *testing.T) {
	const name = "| scan: 20 000 keys cycled through a cache of 10 000, hit ratio ≥ 40 % |"
	scan := func(per float64, errs int64) row {
		return row{Proto: "postfix", Scenario: scScan, Conns: 1, BackendPer: per, RSS: 17 << 20, ServerCPU: 20,
			BackendCPU: 9, ClientCPU: 10, Res: loadResult{Ops: 40000, Total: 40000, Window: 2 * time.Second, Errors: errs,
				Lat: []time.Duration{50 * time.Microsecond, 90 * time.Microsecond}}}
	}
	for _, tc := range []struct {
		protos []string
		rows   []row
		want   string
	}{
		{[]string{"postfix", "dovecot"}, []row{scan(0.5004, 0)}, name + " ✅ 50.0 % of 40000 lookups | — |\n"},
		{[]string{"postfix"}, []row{scan(0.62, 0)}, name + " ❌ 38.0 % of 40000 lookups |\n"},
		{[]string{"postfix"}, []row{scan(0.5, 1)}, name + " ❌ 50.0 % of 40000 lookups |\n"},
		{[]string{"postfix"}, []row{{Proto: "postfix", Scenario: scScan, Conns: 1, Skipped: "needs the built-in backend"}},
			name + " not measured |\n"},
		{[]string{"postfix"}, []row{scan(-1, 0)}, name + " not measured |\n"},
	} {
		r := report{Opts: runOptions{Protocols: tc.protos, Conns: []int{8}}, Rows: tc.rows}
		var b strings.Builder
		r.writeIssue21Targets(&b, tc.protos)
		if !strings.HasSuffix(b.String(), tc.want) {
			t.Errorf("targets end\n%s\nwant %q", b.String(), tc.want)
		}
	}
	r := report{Opts: runOptions{Protocols: []string{"postfix"}, Conns: []int{8}, MaxAge: 600}, Rows: []row{scan(0.5, 0)}}
	wantLines(t, r.markdown().full,
		"| postfix | scan | 1 | 1 | 20000 | 90 µs | 90 µs | 0 | 17.0 MB | 20.0 / 9.0 / 10.0 | 0.500 |\n",
		"- **scan** (postfix only): one connection looks up 20000 distinct keys (`user00000@example.org` …)",
		"`[Cache] MaxEntries = 10000, MaxBytes = 8388608, DefaultTTL = \"1h\"` and the backend sending `Cache-Control: max-age=600`",
		"e2e TestCacheScanPostmap does the same with the real `postmap -q -`\n",
	)
	r.Opts.Protocols = []string{"dovecot"}
	r.Rows = nil
	if full := r.markdown().full; strings.Contains(full, "scan") {
		t.Errorf("a dovecot-only report mentions the scan:\n%s", full)
	}
}
