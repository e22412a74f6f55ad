package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/shitenno/shitenno/pkg/bruteforce"
	"github.com/shitenno/shitenno/pkg/mailauth"
	"github.com/shitenno/shitenno/pkg/remote"
)

// NginxVerb is the Verb of every nginx auth_http lookup.
const NginxVerb = "nginx"

// Nginx answers nginx mail auth_http requests: Verb "nginx", Object = the
// request's header map (mailauth.Request.Object). Status OK with Data
// {"Auth-Server", "Auth-Port", optional "Auth-User", "Auth-Pass"} lets the
// client in; KO with optional Data {"Auth-Status", "Auth-Wait",
// "Auth-Error-Code"} refuses it; anything else is a failure, which
// mailauth turns into "Temporary server problem, try again later".
type Nginx struct {
	Backend Backend
	Record  Recorder
	// Limiter refuses logins from blocked networks before the backend is
	// asked and counts the backend's KOs; nil turns that off.
	Limiter bruteforce.Guard
}

// Brute-force refusal texts: a "try again later" text, not the
// wrong-password one, so a user with the right password knows to wait.
const (
	StatusBlocked = "Too many failed logins, try again later"
	CodeBlocked   = "454 4.7.0"
	// maxBlockedWait caps Auth-Wait for a blocked client: enough to slow
	// a bot down, short enough that nginx does not hold many sessions.
	maxBlockedWait = 15
)

// ServeAuth implements mailauth.Handler.
func (n *Nginx) ServeAuth(ctx context.Context, req *mailauth.Request) (mailauth.Reply, error) {
	rep, outcome, err := n.auth(ctx, req)
	if outcome == "" {
		// Refused while blocked: no lookup happened, so none is recorded
		// (the limiter counts it).
		return rep, err
	}
	if n.Record != nil {
		n.Record(NginxVerb, outcome, err)
	}
	return rep, err
}

// auth returns an empty Outcome when the limiter refused the login.
func (n *Nginx) auth(ctx context.Context, req *mailauth.Request) (rep mailauth.Reply, outcome Outcome, err error) {
	// SMTP without AUTH (Method none) is no login: nothing to limit.
	if n.Limiter != nil && req.Method != "none" {
		ip, _ := netip.ParseAddr(req.ClientIP) // invalid: never blocked nor counted
		d := n.Limiter.Acquire(ctx, ip, req.User)
		if d.Blocked {
			return blockedReply(req, d), "", nil
		}
		// Deferred so that the try Check reserved is given back on every
		// path; a panic leaves outcome failed, which counts nothing.
		outcome = OutcomeFailed
		defer func() { d.Done([]byte(req.Pass), loginOutcome(outcome)) }()
	}
	return n.ask(ctx, req)
}

// blockedReply tells nginx to refuse a blocked client and hold it for up
// to maxBlockedWait seconds (never past the block's end).
func blockedReply(req *mailauth.Request, d bruteforce.Decision) mailauth.Reply {
	wait := int(time.Until(d.Until).Seconds()) + 1
	wait = max(1, min(wait, maxBlockedWait))
	r := mailauth.Reply{Status: StatusBlocked, Wait: wait}
	if req.Protocol == "smtp" {
		r.ErrorCode = CodeBlocked
	}
	return r
}

// ask asks the backend; a login with credentials that cannot be carried
// is refused without asking (and counted as a wrong password).
func (n *Nginx) ask(ctx context.Context, req *mailauth.Request) (mailauth.Reply, Outcome, error) {
	if !validCredentials(req) {
		// JSON would turn every invalid byte into U+FFFD, so different
		// passwords would reach the backend as the same string. Such a
		// login can never be checked: refuse it without asking. The other
		// fields are information (HELO, MAIL FROM, the client's host
		// name): their invalid bytes become U+FFFD in the JSON, and the
		// backend is asked.
		return mailauth.Denied(req), OutcomeNotFound, nil
	}
	res, err := n.Backend.Lookup(ctx, NginxVerb, req.Object())
	if err != nil {
		return mailauth.Reply{}, OutcomeFailed, err
	}
	if res.Status == remote.NotFound {
		rep, err := denied(req, res.Data)
		if err != nil {
			return mailauth.Reply{}, OutcomeFailed, err
		}
		return rep, OutcomeNotFound, nil
	}
	rep, err := n.allowed(ctx, req, res.Data)
	if err != nil {
		return mailauth.Reply{}, OutcomeFailed, err
	}
	return rep, OutcomeFound, nil
}

// validCredentials reports whether Auth-User and Auth-Pass are valid
// UTF-8, so that JSON carries them byte for byte.
func validCredentials(req *mailauth.Request) bool {
	return utf8.ValidString(string(req.Pass)) && utf8.ValidString(req.User) &&
		utf8.ValidString(req.Fields[mailauth.HeaderUser])
}

// dataObject decodes Data as a JSON object; null or absent is empty.
func dataObject(data json.RawMessage) (map[string]json.RawMessage, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || string(data) == "null" {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if data[0] != '{' || json.Unmarshal(data, &m) != nil {
		return nil, remote.Failf("backend Data is not an object")
	}
	return m, nil
}

// denied maps a KO answer: defaults from mailauth.Denied, overridden by
// Data's Auth-Status, Auth-Wait and Auth-Error-Code.
func denied(req *mailauth.Request, data json.RawMessage) (mailauth.Reply, error) {
	rep := mailauth.Denied(req)
	m, err := dataObject(data)
	if err != nil {
		return rep, err
	}
	if v, ok := m["Auth-Status"]; ok {
		s, ok := jsonString(v)
		if !ok || s == "" || s == mailauth.StatusOK || s == "WAIT" {
			// "OK" or "WAIT" would turn a refusal into something else
			// for nginx.
			return rep, remote.Failf("backend KO Auth-Status is not a refusal text")
		}
		rep.Status = s
	}
	if v, ok := m["Auth-Wait"]; ok {
		w, ok := jsonInt(v)
		if !ok || w < 0 || w > mailauth.MaxWait {
			return rep, remote.Failf("backend Auth-Wait is not an integer in 0..%d", mailauth.MaxWait)
		}
		rep.Wait = w
	}
	if v, ok := m["Auth-Error-Code"]; ok {
		s, ok := jsonString(v)
		if !ok || !mailauth.ValidErrorCode(s) {
			return rep, remote.Failf("backend Auth-Error-Code is not a 4xx/5xx SMTP code")
		}
		rep.ErrorCode = s
	}
	if err := rep.Validate(req); err != nil {
		return rep, remote.Failf("backend KO Data cannot be sent to nginx")
	}
	return rep, nil
}

// allowed maps an OK answer.
func (n *Nginx) allowed(ctx context.Context, req *mailauth.Request, data json.RawMessage) (mailauth.Reply, error) {
	m, err := dataObject(data)
	if err != nil {
		return mailauth.Reply{}, err
	}
	host, ok := jsonString(m["Auth-Server"])
	if !ok || host == "" {
		return mailauth.Reply{}, remote.Failf("backend Data has no Auth-Server string")
	}
	port, ok := jsonPort(m["Auth-Port"])
	if !ok {
		return mailauth.Reply{}, remote.Failf("backend Data has no Auth-Port in 1..65535")
	}
	rep := mailauth.Reply{Status: mailauth.StatusOK, Port: port}
	if rep.Server, err = serverAddr(host); err != nil {
		return mailauth.Reply{}, err
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{"Auth-User", &rep.User}, {"Auth-Pass", (*string)(&rep.Pass)}} {
		if v, present := m[f.key]; present {
			if *f.dst, ok = jsonString(v); !ok {
				return mailauth.Reply{}, remote.Failf("backend %s is not a string", f.key)
			}
		}
	}
	if rep.Pass == "" && req.Protocol != "smtp" && (req.Method == "apop" || req.Method == "cram-md5") {
		// nginx only holds the client's digest and cannot log in to the
		// upstream; it would answer "internal server error".
		return mailauth.Reply{}, remote.Failf("backend OK for %s has no Auth-Pass", req.Method)
	}
	if err := rep.Validate(req); err != nil {
		return mailauth.Reply{}, remote.Failf("backend OK Data cannot be sent to nginx (control bytes, blanks or too long)")
	}
	return rep, nil
}

// serverAddr returns Auth-Server as an IP address. nginx's
// ngx_parse_addr takes IP literals only; a host name is the backend's to
// resolve, not a DNS lookup on every login here (a second failure mode
// and a wait inside nginx's auth timeout).
func serverAddr(host string) (netip.Addr, error) {
	a, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		return netip.Addr{}, remote.Failf("backend Auth-Server is not an IP address (nginx takes no host names)")
	case a.Zone() != "":
		return netip.Addr{}, remote.Failf("backend Auth-Server has an IPv6 zone")
	}
	return a.Unmap(), nil
}

func jsonString(v json.RawMessage) (string, bool) {
	var s string
	if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// jsonInt accepts a JSON integer or a string of decimal digits.
func jsonInt(v json.RawMessage) (int, bool) {
	s, ok := jsonString(v)
	if !ok {
		s = string(v)
	}
	if s == "" || len(s) > 9 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

func jsonPort(v json.RawMessage) (int, bool) {
	p, ok := jsonInt(v)
	return p, ok && p >= 1 && p <= 65535
}
