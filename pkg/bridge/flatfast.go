package bridge

import (
	"bytes"
	"slices"

	"github.com/shitenno/shitenno/pkg/remote"
)

// The dovecot bridge re-encodes every backend reply's Data (flatJSON):
// through encoding/json that is a map, a sort and a decode per string,
// about 3.5 µs and 30 allocations per uncached lookup. Real replies are a
// handful of plain members ({"password":"{CRYPT}…","uid":1000,…}), so
// fastFlatJSON handles exactly those with one scan and hands anything
// else (escapes, non-ASCII, duplicate names, many members) to flatJSON's
// encoding/json path. FuzzFastFlatJSON holds the two to the same output.

// maxFastMembers bounds the members fastFlatJSON keeps on the stack.
const maxFastMembers = 16

// flatMember is one member of a flat object, as spans of the input.
type flatMember struct {
	name, value []byte // name without its quotes; value as written
	null        bool
}

// fastFlatJSON returns flatJSON's output for data, or ok false when data
// is outside what it handles (never because data is invalid: the slow
// path decides that).
func fastFlatJSON(data []byte) (out string, ok bool) {
	var buf [maxFastMembers]flatMember
	members, ok := scanFlatObject(data, buf[:0])
	if !ok {
		return "", false
	}
	slices.SortFunc(members, func(a, b flatMember) int { return bytes.Compare(a.name, b.name) })
	n := 2
	for i, m := range members {
		if m.name == nil || (i > 0 && bytes.Equal(m.name, members[i-1].name)) {
			return "", false // an empty or repeated name: the slow path's rules apply
		}
		n += len(m.name) + len(m.value) + 4
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	first := true
	for _, m := range members {
		if m.null {
			continue // null: the field is absent, as flatJSON drops it
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, m.name...)
		b = append(b, '"', ':')
		b = append(b, m.value...)
	}
	return string(append(b, '}')), true
}

// scanFlatObject splits a JSON object whose names and string values are
// plain (printable ASCII that needs no escaping) and whose other values
// are numbers, booleans or null.
func scanFlatObject(data []byte, members []flatMember) ([]flatMember, bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return members, skipSpace(data, i+1) == len(data)
	}
	for len(members) < maxFastMembers {
		var m flatMember
		var ok bool
		if m.name, i, ok = plainString(data, i); !ok {
			return nil, false
		}
		if i = skipSpace(data, i); i >= len(data) || data[i] != ':' {
			return nil, false
		}
		if m.value, m.null, i, ok = flatValue(data, skipSpace(data, i+1)); !ok {
			return nil, false
		}
		if len(m.name) == 0 {
			m.name = nil // marks the empty name for fastFlatJSON
		}
		members = append(members, m)
		if i = skipSpace(data, i); i >= len(data) {
			return nil, false
		}
		switch data[i] {
		case '}':
			return members, skipSpace(data, i+1) == len(data)
		case ',':
			i = skipSpace(data, i+1)
		default:
			return nil, false
		}
	}
	return nil, false
}

// plainString returns the contents of the string at data[i], which must
// be plain (every byte one remote.AppendJSONString copies unchanged), and
// the index after its closing quote.
func plainString(data []byte, i int) ([]byte, int, bool) {
	if i >= len(data) || data[i] != '"' {
		return nil, 0, false
	}
	j := i + 1
	for j < len(data) && data[j] != '"' {
		if !remote.JSONPlain(data[j]) {
			return nil, 0, false
		}
		j++
	}
	if j >= len(data) {
		return nil, 0, false
	}
	return data[i+1 : j], j + 1, true
}

// flatValue returns the value at data[i] as written (a plain string with
// its quotes, a number, true or false), whether it is null, and the index
// after it.
func flatValue(data []byte, i int) (v []byte, null bool, next int, ok bool) {
	if i >= len(data) {
		return nil, false, 0, false
	}
	switch c := data[i]; {
	case c == '"':
		_, next, ok = plainString(data, i)
	case c == '-' || '0' <= c && c <= '9':
		next, ok = jsonNumber(data, i)
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(data[i:], []byte(lit)) {
				return data[i : i+len(lit)], lit == "null", i + len(lit), true
			}
		}
	}
	if !ok {
		return nil, false, 0, false
	}
	return data[i:next], false, next, true
}

// jsonNumber returns the end of the JSON number (RFC 8259 §6) at data[i]:
// [-] int [frac] [exp].
func jsonNumber(data []byte, i int) (int, bool) {
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && '1' <= data[i] && data[i] <= '9':
		i = digits(data, i)
	default:
		return 0, false
	}
	if i < len(data) && data[i] == '.' {
		j := digits(data, i+1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	return exponent(data, i)
}

// exponent returns the end of the optional exponent at data[i].
func exponent(data []byte, i int) (int, bool) {
	if i >= len(data) || (data[i] != 'e' && data[i] != 'E') {
		return i, true
	}
	i++
	if i < len(data) && (data[i] == '+' || data[i] == '-') {
		i++
	}
	j := digits(data, i)
	return j, j > i
}

func digits(data []byte, i int) int {
	for i < len(data) && '0' <= data[i] && data[i] <= '9' {
		i++
	}
	return i
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}
