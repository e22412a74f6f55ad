package mailauth

import (
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/shitenno/shitenno/internal/redact"
)

// Secret is a password. It prints and logs as redact.Mask however it is
// formatted; only MarshalJSON yields the real value, because the backend
// has to receive it. Convert with string(s) where the value is needed.
type Secret string

const redacted = redact.Mask

// String returns redact.Mask.
func (s Secret) String() string { return redacted }

// GoString returns redact.Mask so that %#v does not leak the value either.
func (s Secret) GoString() string { return redacted }

// Format prints redact.Mask for every verb (%s, %q, %x, %v ...).
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue makes slog print redact.Mask.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON encodes the real value as a JSON string.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(string(s)) }
