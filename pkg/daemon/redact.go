package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/shitenno/shitenno/internal/redact"
)

// redactJSON returns body as compact JSON with every password-like member
// (redact.Key) replaced: the query subcommand prints backend Data (the
// operator asked for it) but never these. A body that is not JSON is not shown, only its size: it could
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
			if redact.Key(k) {
				if _, isBool := m.(bool); !isBool {
					// Flags like dovecot's "nopassword": true say
					// nothing secret and help the operator.
					x[k] = redact.Mask
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
