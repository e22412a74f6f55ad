package bridge

import (
	"context"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/shitenno/shitenno/pkg/remote"
	"github.com/shitenno/shitenno/pkg/socketmap"
)

// Postfix answers socketmap lookups: Verb = the socketmap name, Object =
// the key as a JSON string; Data must be a non-empty JSON string.
type Postfix struct {
	Backend Backend
	Record  Recorder
}

// ServeSocketmap implements socketmap.Handler.
func (p *Postfix) ServeSocketmap(ctx context.Context, req socketmap.Request) socketmap.Reply {
	verb := string(req.Name)
	rep, outcome, err := p.lookup(ctx, verb, req.Key)
	if p.Record != nil {
		p.Record(verb, outcome, err)
	}
	return rep
}

func (p *Postfix) lookup(ctx context.Context, verb string, key []byte) (socketmap.Reply, Outcome, error) {
	if !utf8.Valid(key) || !utf8.ValidString(verb) {
		// JSON cannot carry these bytes faithfully; postfix itself refuses
		// invalid UTF-8 keys when SMTPUTF8 is on (dict_utf8.c).
		return socketmap.Reply{Kind: socketmap.Perm, Text: "key is not valid UTF-8"}, OutcomeFailed, nil
	}
	if verb == "." || verb == ".." {
		// A dot segment in the backend URL, which a server may resolve
		// to another path (the dovecot bridge refuses them too).
		return socketmap.Reply{Kind: socketmap.Perm, Text: "map name is a dot segment"}, OutcomeFailed, nil
	}
	res, err := p.Backend.LookupObject(ctx, verb, remote.StringObject(string(key)))
	if err != nil {
		return socketmap.Reply{Kind: socketmap.Temp, Text: reason(err)}, OutcomeFailed, err
	}
	if res.Status == remote.NotFound {
		return socketmap.Reply{Kind: socketmap.NotFound}, OutcomeNotFound, nil
	}
	// Checked and decoded once per backend reply, not on every cache hit.
	// A value some other bridge derived from the same reply (not in
	// shitenno-postfix, whose bridges share this one) is not reused.
	v, ok := res.Derive(postfixValue).(postfixDerived)
	if !ok {
		v = postfixValue(res.Data).(postfixDerived)
	}
	if v.err != nil {
		return v.rep, OutcomeFailed, v.err
	}
	return v.rep, OutcomeFound, nil
}

// postfixDerived is the reply made from a found backend reply's Data,
// and why it is a failure when it is one.
type postfixDerived struct {
	rep socketmap.Reply
	err *remote.Error
}

// postfixValue checks and decodes Data, which must be a non-empty JSON
// string, into the OK reply.
func postfixValue(data json.RawMessage) any {
	s, ok := plainJSONString(data)
	if !ok && (len(data) == 0 || data[0] != '"' || json.Unmarshal(data, &s) != nil) {
		err := remote.Failf("backend Data is not a string")
		return postfixDerived{socketmap.Reply{Kind: socketmap.Temp, Text: err.Reason}, err}
	}
	if s == "" {
		// "OK " is a configuration error for postfix; an empty value is
		// the backend's bug, report it as such rather than as found.
		err := remote.Failf("backend Data is an empty string")
		return postfixDerived{socketmap.Reply{Kind: socketmap.Temp, Text: err.Reason}, err}
	}
	if strings.IndexByte(s, 0) >= 0 {
		// Postfix reads the value as a C string (dict_sockmap.c,
		// dict_tcp.c): it would act on the part before the NUL.
		err := remote.Failf("backend Data contains a NUL byte")
		return postfixDerived{socketmap.Reply{Kind: socketmap.Temp, Text: err.Reason}, err}
	}
	if len("OK ")+len(s) > socketmap.MaxPayload {
		err := remote.Failf("backend Data longer than postfix's 100000-byte reply limit")
		return postfixDerived{socketmap.Reply{Kind: socketmap.Perm, Text: err.Reason}, err}
	}
	return postfixDerived{rep: socketmap.Reply{Kind: socketmap.OK, Text: s}}
}

// plainJSONString decodes the common case of a JSON string without
// escapes: no backslash, no control byte, valid UTF-8, for which
// encoding/json would return the bytes between the quotes unchanged. It
// saves the reflection-driven decoder on every lookup, cached ones
// included (5 % of a cached lookup's CPU in shitenno-postfix). Anything
// else reports false and goes through encoding/json as before.
func plainJSONString(data []byte) (string, bool) {
	if len(data) < 2 || data[0] != '"' || data[len(data)-1] != '"' {
		return "", false
	}
	in := data[1 : len(data)-1]
	for _, c := range in {
		if c < 0x20 || c == '"' || c == '\\' {
			return "", false
		}
	}
	if !utf8.Valid(in) {
		return "", false
	}
	return string(in), true
}
