package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/shitenno/shitenno/pkg/remote"
	"github.com/shitenno/shitenno/pkg/sasl"
)

// SASL answers postfix SMTP AUTH logins: Verb = the configured SASL verb,
// Object = {"Mechanism","User","Password","Authzid","Service","Client-IP",
// "Local-IP","Secured"} (Authzid, Service and the addresses left out when
// postfix did not send them). Status OK with optional Data {"User": name}
// accepts the login under that name (postfix's sasl_username), else under
// the login name; KO refuses it (535); anything else is a temporary
// failure (454).
//
// Logins go to the backend uncached and uncoalesced: a cached OK would
// keep an old password working after it was changed, and each attempt
// may count at the backend.
type SASL struct {
	Backend Backend
	Verb    string
	Record  Recorder
	// Limiter refuses logins from blocked networks before the backend is
	// asked and counts the backend's KOs; nil turns that off.
	Limiter Limiter
}

// Limiter is the brute-force hook of a login bridge (LoginGuard).
type Limiter interface {
	// Allow reports whether user may try to log in from clientIP now.
	// When it may, the login holds one of the remaining tries until done
	// is called, exactly once, with the backend's answer.
	Allow(ctx context.Context, clientIP, user string) (done func(password []byte, o Outcome), ok bool)
}

// SASLTimeout bounds one login's backend exchange: postfix waits 10 s
// (AUTH_TIMEOUT, not configurable) and must see the connection close
// (454) before it gives up by itself, or the late answer is a stray line.
const SASLTimeout = 8 * time.Second

// Fixed FAIL reasons: they reach the SMTP client after "535 5.7.8 Error:
// authentication failed:".
const (
	ReasonWrongPassword = sasl.ReasonAuthFailed
	ReasonBlocked       = StatusBlocked
	ReasonAuthzid       = "Not allowed to act as another user"
)

// maxSASLUser bounds the name a backend may hand back: postfix copies it
// into logs, policy requests and Received headers.
const maxSASLUser = 512

// Authenticate implements sasl.Handler.
func (s *SASL) Authenticate(ctx context.Context, req *sasl.Request) sasl.Result {
	res, outcome, err := s.Check(ctx, req)
	if outcome != "" && s.Record != nil {
		s.Record(s.Verb, outcome, err)
	}
	return res
}

// Check is Authenticate with the outcome ("" when the limiter refused the
// login without asking) and the failure, for the query subcommand.
func (s *SASL) Check(ctx context.Context, req *sasl.Request) (res sasl.Result, outcome Outcome, err error) {
	if s.Limiter != nil {
		// The wait for a try and the backend share SASLTimeout: postfix
		// gives up on the auth server after 10 s.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, SASLTimeout)
		defer cancel()
		done, ok := s.Limiter.Allow(ctx, req.ClientIP, req.User)
		if !ok {
			return sasl.Result{Verdict: sasl.Reject, Reason: ReasonBlocked}, "", nil
		}
		// Deferred so that the reserved try is given back on every path;
		// a panic leaves outcome failed, which counts nothing.
		outcome = OutcomeFailed
		defer func() { done(req.Password, outcome) }()
	}
	return s.ask(ctx, req)
}

func (s *SASL) ask(ctx context.Context, req *sasl.Request) (sasl.Result, Outcome, error) {
	// JSON would turn invalid bytes into U+FFFD, so two passwords could
	// reach the backend as one: such a login can never be checked.
	if !utf8.ValidString(req.User) || !utf8.Valid(req.Password) || !utf8.ValidString(req.Authzid) || !sasl.Printable(req.User) {
		return sasl.Result{Verdict: sasl.Reject, Reason: ReasonWrongPassword}, OutcomeNotFound, nil
	}
	ctx, cancel := context.WithTimeout(remote.Uncached(ctx), SASLTimeout)
	defer cancel()
	res, err := s.Backend.LookupRaw(ctx, s.Verb, SASLObject(req))
	if err != nil {
		return sasl.Result{Verdict: sasl.TempFail}, OutcomeFailed, err
	}
	if res.Status == remote.NotFound {
		return sasl.Result{Verdict: sasl.Reject, Reason: ReasonWrongPassword}, OutcomeNotFound, nil
	}
	user, err := saslUser(res.Data)
	if err != nil {
		return sasl.Result{Verdict: sasl.TempFail}, OutcomeFailed, err
	}
	if user == "" {
		user = req.User
	}
	// A client acting as someone else (PLAIN's authzid) is let in only
	// when the backend names that identity as the user: a backend that
	// checks only the password must not make alice able to send as bob.
	if req.Authzid != "" && req.Authzid != req.User && user != req.Authzid {
		return sasl.Result{Verdict: sasl.Reject, Reason: ReasonAuthzid}, OutcomeFound, nil
	}
	return sasl.Result{Verdict: sasl.Accept, User: user}, OutcomeFound, nil
}

// saslUser reads the optional Data {"User": name} of an OK.
func saslUser(data json.RawMessage) (string, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || string(data) == "null" {
		return "", nil
	}
	var d struct{ User *string }
	if data[0] != '{' || json.Unmarshal(data, &d) != nil {
		return "", remote.Failf("backend Data is not an object")
	}
	if d.User == nil {
		return "", nil
	}
	u := *d.User
	if u == "" || len(u) > maxSASLUser || !sasl.Printable(u) || !utf8.ValidString(u) {
		return "", remote.Failf("backend Data.User is not a printable name of at most %d bytes", maxSASLUser)
	}
	return u, nil
}

// SASLObject encodes a login as the backend's Object.
func SASLObject(req *sasl.Request) json.RawMessage {
	b := make([]byte, 0, 128+len(req.User)+len(req.Password)+len(req.Authzid))
	b = append(b, `{"Mechanism":`...)
	b = remote.AppendJSONString(b, req.Mechanism)
	b = append(b, `,"User":`...)
	b = remote.AppendJSONString(b, req.User)
	b = append(b, `,"Password":`...)
	b = remote.AppendJSONString(b, string(req.Password))
	for _, f := range [...]struct{ name, value string }{
		{"Authzid", req.Authzid}, {"Service", req.Service}, {"Client-IP", req.ClientIP}, {"Local-IP", req.LocalIP},
	} {
		if f.value != "" {
			b = append(b, ',')
			b = remote.AppendJSONString(b, f.name)
			b = append(b, ':')
			b = remote.AppendJSONString(b, f.value)
		}
	}
	if req.Secured {
		b = append(b, `,"Secured":true}`...)
	} else {
		b = append(b, `,"Secured":false}`...)
	}
	return b
}
