package sasl

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shitenno/shitenno/pkg/connserver"
)

// FuzzParseLine: any line parses or is refused, never panics, and an
// accepted AUTH or CONT has a decimal id.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"VERSION\t1\t0", "CPID\t123", "AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp=AG9rMQBwdw==",
		"CONT\t3\tb2sz", "AUTH\t1\tLOGIN\tsecured\tresp=", "AUTH\t1\tX\tlip=a\x01tb", "CONT\t1", "\t\t", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := parseLine(b)
		if err != nil {
			return
		}
		if (l.cmd == cmdAuth || l.cmd == cmdCont) && !validID(l.id) {
			t.Fatalf("accepted id %q", l.id)
		}
		if l.cmd == cmdAuth && l.arg == "" {
			t.Fatal("AUTH without a mechanism accepted")
		}
	})
}

// FuzzExchange: any sequence of responses ends in a challenge, a FAIL or
// credentials whose user name is never empty.
func FuzzExchange(f *testing.F) {
	f.Add(true, "AG9rMQBwdw==", "", "")
	f.Add(false, "b2sz", "cHc=", "")
	f.Add(false, "", "", "")
	f.Fuzz(func(t *testing.T, plain bool, r1, r2, r3 string) {
		x := exchange{mech: MechLOGIN, params: authParams{resp: r1, hasResp: r1 != ""}}
		if plain {
			x.mech = MechPLAIN
		}
		st := x.begin()
		for _, r := range []string{r2, r3} {
			if st.done || st.fail != "" {
				break
			}
			st = x.next(r)
		}
		if st.done && st.creds.User == "" {
			t.Fatalf("credentials without a user: %+v", st.creds)
		}
	})
}

// FuzzConn feeds arbitrary client bytes to a live connection: the server
// never panics and always ends the connection once the client is done.
func FuzzConn(f *testing.F) {
	f.Add([]byte("VERSION\t1\t0\nCPID\t1\nAUTH\t1\tPLAIN\tresp=AG9rAHB3\n"))
	f.Add([]byte("VERSION\t1\t0\nAUTH\t1\tLOGIN\nCONT\t1\tb2s=\nCONT\t1\tcHc=\n"))
	f.Add([]byte("VERSION\t1\t0\nAUTH\t1\tPLAIN\nCONT\t1\tAHRtcAB4\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		h := HandlerFunc(func(ctx context.Context, r *Request) Result {
			switch {
			case strings.HasPrefix(r.User, "tmp"):
				return Result{Verdict: TempFail}
			case len(r.Password)%2 == 0:
				return Result{Verdict: Accept, User: r.User}
			}
			return Result{Verdict: Reject, Reason: r.User}
		})
		s := &Server{Handler: h, MaxInFlight: 4, Server: connserver.Server{ReadTimeout: time.Second}}
		cli, srv := net.Pipe()
		c := &conn{srv: s, nc: srv, pending: map[string]*pendingAuth{}, running: map[string]struct{}{}}
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.Serve(context.Background())
			srv.Close()
		}()
		go func() { _, _ = io.Copy(io.Discard, cli) }()
		_ = cli.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = cli.Write(in)
		cli.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("connection not ended after the client closed")
		}
	})
}
