// Package redact is shitenno's one rule for secrets in what it prints:
// which names hold a secret, what replaces one, and how a URL loses its
// password. The logger, the query subcommand's trace, --check-config,
// error texts and mailauth.Secret all use it, so a secret hidden in one
// place is hidden in all.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Mask replaces a secret value.
const Mask = "[redacted]"

// exact are secret-holding names that do not contain "pass" or "secret".
var exact = map[string]bool{"pw": true, "token": true, "authorization": true, "cookie": true}

// Key reports whether a name (JSON member, HTTP header, log attribute)
// holds a secret. Only the last dotted segment counts ("tls.password"),
// case is ignored, and any name containing "pass" or "secret" does
// ("password", "Auth-Pass", "userPassword", "passwd", "client_secret"),
// as do pw, token, authorization and cookie.
func Key(name string) bool {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	name = strings.ToLower(name)
	return strings.Contains(name, "pass") || strings.Contains(name, "secret") || exact[name]
}

// URL returns raw with the password of its userinfo replaced by Mask
// ("https://user:[redacted]@host/"). A URL that does not parse loses its
// whole userinfo, since where the password ends cannot be known.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err == nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Mask)
			// url.URL.String would percent-encode the brackets of Mask.
			return strings.Replace(u.String(), url.QueryEscape(Mask), Mask, 1)
		}
		return raw
	}
	return userinfo.ReplaceAllString(raw, "${1}"+Mask+"@")
}

// userinfo matches "scheme://userinfo@" up to the last '@' before the
// path: a password may itself contain '@' or ':'.
var userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@`)

// String replaces the userinfo password of every URL quoted in s (an
// error text, a log line) by Mask.
func String(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	return urlInText.ReplaceAllStringFunc(s, URL)
}

// urlInText finds URLs with userinfo inside free text.
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s"']*@[^\s"']*`)
