package bridge

import (
	"context"
	"fmt"
	"testing"

	"github.com/shitenno/shitenno/pkg/mailauth"
	"github.com/shitenno/shitenno/pkg/remote"
)

// TestNginxBruteForce: after MaxFailures wrong passwords the network gets
// the "try again later" refusal (454 4.7.0 for SMTP) and the backend is
// not asked, even with the right password; failures and SMTP without
// AUTH do not count.
func TestNginxBruteForce(t *testing.T) {
	lim := limiter()
	b := &ngxBackend{res: remote.Result{Status: remote.NotFound}}
	var recorded int
	n := &Nginx{Backend: b, Limiter: lim, Record: func(string, Outcome, error) { recorded++ }}
	ctx := context.Background()

	b.err = remote.Failf("down")
	for i := 0; i < 20; i++ {
		req := ngxRequest("imap", "plain")
		req.Pass = mailauth.Secret(fmt.Sprint("f", i))
		_, _ = n.ServeAuth(ctx, req)
	}
	b.err = nil
	for i := 0; i < 20; i++ {
		req := ngxRequest("smtp", "none")
		req.User, req.Pass = "", ""
		_, _ = n.ServeAuth(ctx, req)
	}
	for i := 0; i < 10; i++ {
		req := ngxRequest("imap", "plain")
		req.Pass = mailauth.Secret(fmt.Sprint("wrong", i))
		rep, err := n.ServeAuth(ctx, req)
		if err != nil || rep.Status != mailauth.StatusDenied {
			t.Fatalf("attempt %d: %+v %v", i+1, rep, err)
		}
	}
	calls := b.calls
	b.res = remote.Result{Status: remote.Found, Data: []byte(`{"Auth-Server":"127.0.0.1","Auth-Port":143}`)}
	rep, err := n.ServeAuth(ctx, ngxRequest("imap", "plain"))
	if err != nil || rep.Status != StatusBlocked || rep.Wait < 1 || rep.Wait > maxBlockedWait || rep.ErrorCode != "" {
		t.Fatalf("blocked imap: %+v %v", rep, err)
	}
	rep, _ = n.ServeAuth(ctx, ngxRequest("smtp", "plain"))
	if rep.Status != StatusBlocked || rep.ErrorCode != CodeBlocked || rep.Validate(ngxRequest("smtp", "plain")) != nil {
		t.Fatalf("blocked smtp: %+v", rep)
	}
	if b.calls != calls {
		t.Fatalf("backend asked %d times while blocked", b.calls-calls)
	}
	if recorded != 50 {
		t.Fatalf("recorded %d lookups, want 50 (blocked ones are not lookups)", recorded)
	}
	if s := lim.Stats(); s.Failures != 10 || s.Refused != 2 {
		t.Fatalf("stats %+v", s)
	}
	// another network still gets through
	req := ngxRequest("imap", "plain")
	req.ClientIP = "192.0.2.8"
	if rep, _ := n.ServeAuth(ctx, req); rep.Status != mailauth.StatusOK {
		t.Fatalf("other network: %+v", rep)
	}
}
