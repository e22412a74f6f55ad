package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// RedactedValue replaces passwords in query output.
const RedactedValue = "[redacted]"

// IsPasswordKey reports whether a JSON member or header name holds a
// password: "password", "Auth-Pass", "userPassword", "client_secret"…
// The query subcommand prints backend Data (the operator asked for it) but
// never these.
func IsPasswordKey(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "pass") || strings.Contains(k, "secret") || k == "pw"
}

// redactJSON returns body as compact JSON with every password-like member
// replaced. A body that is not JSON is not shown, only its size: it could
// hold anything.
func redactJSON(body []byte) string {
	if len(bytes.TrimSpace(body)) == 0 {
		return "(empty body)"
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber() // keep big integers as the backend wrote them
	var v any
	if err := d.Decode(&v); err != nil || d.More() {
		return fmt.Sprintf("(%d bytes, not JSON)", len(body))
	}
	out, err := json.Marshal(redactValue(v))
	if err != nil {
		return fmt.Sprintf("(%d bytes)", len(body))
	}
	return string(out)
}

func redactValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, m := range x {
			if IsPasswordKey(k) {
				if _, isBool := m.(bool); !isBool {
					// Flags like dovecot's "nopassword": true say
					// nothing secret and help the operator.
					x[k] = RedactedValue
					continue
				}
			}
			x[k] = redactValue(m)
		}
	case []any:
		for i := range x {
			x[i] = redactValue(x[i])
		}
	}
	return v
}
