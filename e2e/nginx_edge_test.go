package e2e

import (
	"testing"
)

// TestNginxEdgeBytes: what a client may type that nginx passes on but
// net/http or JSON would choke on still gets a proper answer through the
// real nginx: a DEL in a password reaches the backend byte for byte (a
// wrong one is refused like any wrong password, not with nginx's
// "internal server error"). nginx sends Auth-SMTP-Helo, -From and -To
// only with smtp_auth none, which the documented setup does not use:
// pkg/mailauth and pkg/bridge test those fields.
func TestNginxEdgeBytes(t *testing.T) {
	s := newNginxSetup(t, "unix")

	t.Run("DEL in the right password", func(t *testing.T) {
		imapLoginOK(t, s, "del", nginxUsersPlain["del"])
	})
	t.Run("DEL in a wrong password", func(t *testing.T) {
		c := dialMail(t, s.imap)
		if got := c.imapLogin("a1", "alice", "sec\x7fret"); last(got) != "a1 NO Invalid login or password" {
			t.Fatalf("got %q", got)
		}
		if o := s.lastRequestFor(t, "alice"); o["Auth-Pass"] != "sec\x7fret" {
			t.Errorf("backend got Auth-Pass %q", o["Auth-Pass"])
		}
	})
	t.Run("DEL in the user name over SMTP", func(t *testing.T) {
		if r := dialMail(t, s.smtp).smtpAuthPlain("ali\x7fce", "secret"); last(r) != "535 5.7.8 Invalid login or password" {
			t.Fatalf("got %q", r)
		}
	})
}
