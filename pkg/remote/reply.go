package remote

import (
	"bytes"
	"encoding/json"
)

// The reply envelope is decoded without reflection in the common case:
// encoding/json cost 4 allocations and about 4 % of an uncached lookup's
// CPU in the daemon (pprof under make bench's load). fastReply accepts
// only what it can decode exactly as encoding/json would; anything else
// (escaped or non-ASCII member names, an escaped or non-string Status)
// goes to json.Unmarshal, and FuzzFastReply holds the two to the same
// answers.

// fastReply reads the Status and Data members of a JSON object. ok is
// false when the slow path must decide (including invalid JSON, which
// the slow path reports). hasStatus is false when Status is absent or
// null; raw is nil when Data is absent. Member names match
// case-insensitively and the last duplicate wins, as in encoding/json.
func fastReply(data []byte) (status []byte, hasStatus bool, raw []byte, ok bool) {
	if !json.Valid(data) {
		return nil, false, nil, false
	}
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return nil, false, nil, false // null, arrays, scalars: the slow path
	}
	i = skipSpace(data, i+1)
	if data[i] == '}' {
		return nil, false, nil, true
	}
	for {
		// data is valid JSON, so a member name starts here.
		end := i + 1
		for data[end] != '"' {
			if data[end] == '\\' || data[end] >= 0x80 {
				return nil, false, nil, false
			}
			end++
		}
		name := data[i+1 : end]
		v := skipSpace(data, skipSpace(data, end+1)+1) // past the colon
		ve := skipValue(data, v)
		switch {
		case bytes.EqualFold(name, []byte("Status")):
			switch {
			case data[v] == '"' && bytes.IndexByte(data[v+1:ve-1], '\\') < 0:
				status, hasStatus = data[v+1:ve-1], true
			case data[v] == 'n': // null leaves the pointer nil
				status, hasStatus = nil, false
			default:
				return nil, false, nil, false
			}
		case bytes.EqualFold(name, []byte("Data")):
			raw = data[v:ve]
		}
		i = skipSpace(data, ve)
		if data[i] == '}' {
			return status, hasStatus, raw, true
		}
		i = skipSpace(data, i+1) // past the comma
	}
}

// skipSpace returns the index of the first non-whitespace byte at or
// after i (len(data) when none).
func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipValue returns the index just past the JSON value starting at i in
// valid JSON.
func skipValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for ; i < len(data); i++ {
			switch data[i] {
			case '"':
				i = skipString(data, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i < len(data) {
		switch data[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// skipString returns the index just past the string starting at i.
func skipString(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}
