package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestTCPTablePostmap: postmap -q KEY tcp:127.0.0.1:PORT against a
// [[Postfix.TCPTable]] listener: found, not found, backend failure (a
// 400, which postfix reports as a soft error), keys with spaces and %
// reaching the backend decoded, data with them reaching postfix whole.
func TestTCPTablePostmap(t *testing.T) {
	postmap := requireTool(t, "postmap")
	fb := virtualBackend(t, func(r BackendRequest, key string) (int, string) {
		switch key {
		case "fail@example.org":
			return 500, "down"
		case "nobody@example.org":
			return 200, okReply(r, "KO", nil)
		}
		return 200, okReply(r, "OK", "<"+key+"> 100% été")
	})
	dir := testDir(t)
	addr := loopbackAddr(t)
	// The README's shitenno.conf and main.cf lines (docs/postfix.md), on
	// the test's port.
	const docAddr = "127.0.0.1:10041"
	startDaemonWith(t, dir, "postfix", fb.BaseURL(), "", docReplace(t, docBlock(t, "postfix", "tcptable-conf", ""), docAddr, addr))
	waitDial(t, "tcp", addr)
	pd := postmapDir(t, dir)
	mainCF := docReplace(t, docBlock(t, "postfix", "tcptable", ""), docAddr, addr)
	_, table, ok := strings.Cut(strings.TrimSpace(mainCF[strings.LastIndexByte(strings.TrimSpace(mainCF), '\n')+1:]), " = ")
	if !ok || table != "tcp:"+addr {
		t.Fatalf("docs/postfix.md: tcp_table main.cf line %q", mainCF)
	}
	q := func(key string) (string, string, int) {
		// -v: postmap reports a 400 only in its verbose log ("soft
		// error"); without it a failure and a miss both exit 1 silently
		// when stderr is not a terminal.
		return run(t, 60*time.Second, postmap, "-v", "-c", pd, "-f", "-q", key, table)
	}
	// (No control bytes in these keys: with -v, dict_tcp.c logs the value
	// through printable(), which rewrites it in place, so postmap would
	// print '_' for them.)
	for _, key := range []string{"alice@example.org", "a b%20c%@example.org", "x y z"} {
		out, errOut, code := q(key)
		if want := "<" + key + "> 100% été\n"; code != 0 || out != want {
			t.Errorf("found %q: exit %d stdout %q, want %q\n%s", key, code, out, want, errOut)
		}
	}
	var keys []string
	for _, r := range fb.Requests() {
		var k string
		_ = json.Unmarshal(r.Object, &k)
		keys = append(keys, k)
	}
	if got := strings.Join(keys, "|"); got != "alice@example.org|a b%20c%@example.org|x y z" {
		t.Errorf("backend keys %q", got)
	}
	out, errOut, code := q("nobody@example.org")
	if code != 1 || out != "" || !strings.Contains(errOut, "dict_tcp_lookup: not found: 500") {
		t.Errorf("not found: exit %d stdout %q\n%s", code, out, errOut)
	}
	out, errOut, code = q("fail@example.org")
	if code != 1 || out != "" || !strings.Contains(errOut, "dict_tcp_lookup: soft error: 400") ||
		!strings.Contains(errOut, "query error") {
		t.Errorf("backend failure: exit %d stdout %q\n%s", code, out, errOut)
	}
}
