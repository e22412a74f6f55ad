package mailauth

import (
	"encoding/json"
	"fmt"
	"log/slog"
)

// Secret is a password. It prints and logs as "***" however it is
// formatted; only MarshalJSON yields the real value, because the backend
// has to receive it. Convert with string(s) where the value is needed.
type Secret string

const redacted = "***"

// String returns "***".
func (s Secret) String() string { return redacted }

// GoString returns "***" so that %#v does not leak the value either.
func (s Secret) GoString() string { return redacted }

// Format prints "***" for every verb (%s, %q, %x, %v ...).
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue makes slog print "***".
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON encodes the real value as a JSON string.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(string(s)) }
