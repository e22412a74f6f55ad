package sasl

import (
	"bytes"
	"encoding/base64"
	"strings"
)

// Failure reasons sent in FAIL replies: short fixed texts, since postfix
// shows them to the SMTP client.
const (
	ReasonBadBase64    = "Invalid base64 data in response"
	ReasonBadResponse  = "Invalid response"
	ReasonUnknownMech  = "Unsupported authentication mechanism"
	ReasonUnknownID    = "Unknown or expired authentication request"
	ReasonAuthFailed   = "Invalid user name or password"
	ReasonTooManyAuths = "Too many authentication requests in progress"
)

// LOGIN's challenges, base64 of "Username:" and "Password:" as every
// LOGIN client expects (draft-murchison-sasl-login).
const (
	challengeUsername = "VXNlcm5hbWU6"
	challengePassword = "UGFzc3dvcmQ6"
)

// step is what an exchange does next: ask for more (cont with a
// challenge), fail with a reason, or check the credentials (done).
type step struct {
	done      bool
	challenge string // sent in CONT when !done and fail == ""
	fail      string
	creds     Credentials
}

// exchange is one AUTH waiting for the client's next CONT.
type exchange struct {
	mech   string
	params authParams
	// login is LOGIN's user name once received.
	login   string
	hasUser bool
}

// findMech returns the canonical name of a configured mechanism; postfix
// sends the name as the SMTP client typed it.
func findMech(mechs []string, name string) (string, bool) {
	for _, m := range mechs {
		if strings.EqualFold(m, name) {
			return m, true
		}
	}
	return "", false
}

// begin runs an AUTH line's part of the exchange.
func (x *exchange) begin() step {
	if !x.params.hasResp {
		if x.mech == MechLOGIN {
			return step{challenge: challengeUsername}
		}
		// PLAIN without an initial response: an empty challenge, and
		// the client's next CONT carries the credentials.
		return step{challenge: ""}
	}
	return x.next(x.params.resp)
}

// next feeds one base64 response (from resp= or a CONT) to the exchange.
func (x *exchange) next(b64 string) step {
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return step{fail: ReasonBadBase64}
	}
	switch x.mech {
	case MechPLAIN:
		c, ok := parsePlain(data)
		if !ok {
			return step{fail: ReasonBadResponse}
		}
		return step{done: true, creds: c}
	case MechLOGIN:
		if !x.hasUser {
			if len(data) == 0 || bytes.IndexByte(data, 0) >= 0 {
				return step{fail: ReasonBadResponse}
			}
			x.login, x.hasUser = string(data), true
			return step{challenge: challengePassword}
		}
		if bytes.IndexByte(data, 0) >= 0 {
			return step{fail: ReasonBadResponse}
		}
		return step{done: true, creds: Credentials{User: x.login, Password: data}}
	}
	return step{fail: ReasonUnknownMech}
}

// parsePlain splits PLAIN's "authzid NUL authcid NUL password" (RFC 4616
// section 2); the authcid must not be empty.
func parsePlain(data []byte) (Credentials, bool) {
	authzid, rest, ok1 := bytes.Cut(data, []byte{0})
	authcid, pass, ok2 := bytes.Cut(rest, []byte{0})
	if !ok1 || !ok2 || len(authcid) == 0 || bytes.IndexByte(pass, 0) >= 0 {
		return Credentials{}, false
	}
	return Credentials{Authzid: string(authzid), User: string(authcid), Password: pass}, true
}
