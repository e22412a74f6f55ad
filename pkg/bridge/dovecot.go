package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/shitenno/shitenno/pkg/dict"
	"github.com/shitenno/shitenno/pkg/remote"
)

// Dovecot answers dovecot dict lookups, as sent by the passdb/userdb dict
// drivers: key "<context>/<verb>/<object>" (dovecot prefixes "shared/"
// itself) → Verb = <verb>, Object = {"Context": <context>, "Object":
// <object>}. Found with a flat JSON object → O + that object as compact
// one-line JSON; not found → N; any failure → F<reason>, which dovecot
// reports as a temporary failure, never as an unknown user.
type Dovecot struct {
	Backend Backend
	Record  Recorder
}

// ServeDict implements dict.Handler.
func (d *Dovecot) ServeDict(ctx context.Context, req dict.Request) dict.Reply {
	verb, rep, outcome, err := d.lookup(ctx, req.Key)
	if d.Record != nil {
		d.Record(verb, outcome, err)
	}
	return rep
}

// dictObject is the shape of the dovecot bridge's request objects.
var dictObject = remote.NewShape("Context", "Object")

// splitKey splits "<context>/<verb>/<object>" at the first two slashes:
// the object (a user name, or "user/quota" with the new-style keys) may
// contain slashes itself.
func splitKey(key string) (cx, verb, object string, ok bool) {
	cx, rest, ok1 := strings.Cut(key, "/")
	verb, object, ok2 := strings.Cut(rest, "/")
	// "." and ".." would become dot segments in the backend URL, which a
	// server may resolve to another path.
	if !ok1 || !ok2 || cx == "" || verb == "" || verb == "." || verb == ".." {
		return "", "", "", false
	}
	return cx, verb, object, true
}

func (d *Dovecot) lookup(ctx context.Context, key string) (string, dict.Reply, Outcome, error) {
	cx, verb, object, ok := splitKey(key)
	if !ok {
		err := remote.Failf("malformed key: want <context>/<verb>/<object>")
		return "", dict.Reply{Kind: dict.Failed, Value: err.Reason}, OutcomeFailed, err
	}
	// The dict codec only passes valid UTF-8, so the strings go into JSON
	// unchanged.
	res, err := d.Backend.LookupObject(ctx, verb, dictObject.Object(cx, object))
	if err != nil {
		return verb, dict.Reply{Kind: dict.Failed, Value: reason(err)}, OutcomeFailed, err
	}
	if res.Status == remote.NotFound {
		return verb, dict.Reply{Kind: dict.NotFound}, OutcomeNotFound, nil
	}
	// Re-encoding is done once per backend reply, not on every cache hit.
	v, ok := res.Derive(dovecotValue).(derivedValue)
	if !ok { // derived by another bridge (not in shitenno-dovecot)
		v = dovecotValue(res.Data).(derivedValue)
	}
	if v.err != nil {
		return verb, dict.Reply{Kind: dict.Failed, Value: v.err.Reason}, OutcomeFailed, v.err
	}
	return verb, dict.Reply{Kind: dict.Found, Value: v.value}, OutcomeFound, nil
}

// derivedValue is the dict value made from a backend reply's Data, or why
// none can be.
type derivedValue struct {
	value string
	err   *remote.Error
}

// dovecotValue checks and re-encodes Data for an O reply.
func dovecotValue(data json.RawMessage) any {
	value, err := flatJSON(data)
	if err != nil {
		return derivedValue{err: err}
	}
	// 'O' + value + LF must fit dovecot's 64 KiB reply line, or its client
	// drops the connection. The value has no byte dict escaping expands
	// (flatJSON escapes every control character), so its length is exact.
	if len(value)+2 > dict.MaxLineSize {
		return derivedValue{err: remote.Failf("backend Data longer than dovecot's 64 KiB line limit")}
	}
	return derivedValue{value: value}
}

// flatJSON re-encodes Data, which must be a JSON object of strings,
// numbers, booleans and nulls, as compact one-line JSON with sorted keys.
// Dovecot's auth dict parser refuses nested objects and arrays (a
// temporary failure on its side), so they are refused here with a clearer
// reason; null members are dropped, as dovecot would skip them. Numbers
// keep their exact digits: a uid beyond 2^53 must not come back as 1e+21.
func flatJSON(data json.RawMessage) (string, *remote.Error) {
	if s, ok := fastFlatJSON(data); ok {
		return s, nil
	}
	return slowFlatJSON(data)
}

// slowFlatJSON is flatJSON through encoding/json, for every input.
func slowFlatJSON(data json.RawMessage) (string, *remote.Error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return "", remote.Failf("backend Data is not a JSON object")
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		return "", remote.Failf("backend Data is not a JSON object")
	}
	keys := make([]string, 0, len(members))
	for k, v := range members {
		if k == "" {
			return "", remote.Failf("backend Data has an empty key")
		}
		switch v[0] {
		case '{', '[':
			// The member's name is reply data: not part of the reason.
			return "", remote.Failf("backend Data is not flat (a member is an object or array)")
		case 'n': // null: the field is absent
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]byte, 0, len(data))
	out = append(out, '{')
	for i, k := range keys {
		if i > 0 {
			out = append(out, ',')
		}
		out = remote.AppendJSONString(out, k)
		out = append(out, ':')
		v := members[k]
		if v[0] == '"' {
			// Re-encode strings so that invalid UTF-8 or raw bytes a
			// lenient decoder let through never reach dovecot.
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return "", remote.Failf("backend Data is not a JSON object")
			}
			out = remote.AppendJSONString(out, s)
		} else {
			out = append(out, v...) // number or boolean, validated by Unmarshal
		}
	}
	out = append(out, '}')
	return string(out), nil
}
