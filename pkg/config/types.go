package config

import (
	"fmt"
	"os/user"
	"strconv"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("5s").
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (use e.g. \"5s\", \"250ms\")", b)
	}
	d.Duration = v
	return nil
}

// URLList is one URL or an array of URLs.
type URLList []string

// UnmarshalTOML accepts a string or an array of strings.
func (u *URLList) UnmarshalTOML(v any) error {
	l, err := stringOrList(v)
	*u = l
	return err
}

// StringList is one string or an array of strings.
type StringList []string

// UnmarshalTOML accepts a string or an array of strings.
func (s *StringList) UnmarshalTOML(v any) error {
	l, err := stringOrList(v)
	*s = l
	return err
}

func stringOrList(v any) ([]string, error) {
	switch x := v.(type) {
	case string:
		if x == "" {
			return nil, nil
		}
		return []string{x}, nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("expected a string or an array of strings, found an element of type %T", e)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("expected a string or an array of strings, not %T", v)
}

// Owner is a user or group given as a number or a name. The zero value
// means "leave as is".
type Owner struct {
	Name string
	ID   int
	Set  bool
}

// UnmarshalTOML accepts an integer or a name.
func (o *Owner) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 || x > 1<<31 {
			return fmt.Errorf("id %d out of range", x)
		}
		*o = Owner{ID: int(x), Set: true}
		return nil
	case string:
		if x == "" {
			*o = Owner{}
			return nil
		}
		if n, err := strconv.Atoi(x); err == nil && n >= 0 {
			*o = Owner{ID: n, Set: true}
			return nil
		}
		*o = Owner{Name: x, Set: true}
		return nil
	}
	return fmt.Errorf("expected a number or a name, not %T", v)
}

// UserID resolves the owner as a user; -1 when unset.
func (o Owner) UserID() (int, error) { return o.resolve(false) }

// GroupID resolves the owner as a group; -1 when unset.
func (o Owner) GroupID() (int, error) { return o.resolve(true) }

// resolve returns the numeric id, looking a name up as a group or a user.
func (o Owner) resolve(group bool) (int, error) {
	if !o.Set {
		return -1, nil
	}
	if o.Name == "" {
		return o.ID, nil
	}
	kind, id, err := "user", "", error(nil)
	if group {
		kind = "group"
		var g *user.Group
		if g, err = user.LookupGroup(o.Name); g != nil {
			id = g.Gid
		}
	} else {
		var u *user.User
		if u, err = user.Lookup(o.Name); u != nil {
			id = u.Uid
		}
	}
	if err != nil {
		return -1, fmt.Errorf("unknown %s %q", kind, o.Name)
	}
	return strconv.Atoi(id)
}

// String shows the owner as configured.
func (o Owner) String() string {
	switch {
	case !o.Set:
		return "-"
	case o.Name != "":
		return o.Name
	}
	return strconv.Itoa(o.ID)
}

// FileMode is permission bits written as an octal string ("0660") or an
// integer (0o660).
type FileMode uint32

// UnmarshalTOML accepts "0660" or an integer.
func (m *FileMode) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 || x > 0o777 {
			return fmt.Errorf("mode %o out of range", x)
		}
		*m = FileMode(x)
		return nil
	case string:
		n, err := strconv.ParseUint(x, 8, 32)
		if err != nil || n > 0o777 {
			return fmt.Errorf("invalid mode %q (use octal like \"0660\")", x)
		}
		*m = FileMode(n)
		return nil
	}
	return fmt.Errorf("expected an octal string like \"0660\", not %T", v)
}
