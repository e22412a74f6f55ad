package logging

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"

	"github.com/shitenno/shitenno/internal/redact"
)

// Redacted replaces the value of an attribute that may hold a secret.
const Redacted = redact.Mask

// MsgIDKey is the attribute that becomes the RFC 5424 MSGID (and is not
// repeated in the structured data). Use short constant words: "lookup",
// "reload", "tls".
const MsgIDKey = "msgid"

// IsSensitiveKey reports whether an attribute with this key is redacted:
// every name redact.Key says holds a secret, and "data" (last dotted
// segment, any case), which is backend Data: not always a secret, but
// never logged.
func IsSensitiveKey(key string) bool {
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		key = key[i+1:]
	}
	return redact.Key(key) || strings.EqualFold(key, "data")
}

// field is one flattened attribute: group names joined with dots.
type field struct {
	key string
	val slog.Value
}

// handler is the slog.Handler behind every logger of an Output. It only
// formats; the Output's current sink queues and writes.
type handler struct {
	out    *Output
	attrs  []field // from WithAttrs, already qualified
	prefix string  // open groups, "a.b." style
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.out.level.Level()
}

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	fields := make([]field, 0, len(h.attrs)+r.NumAttrs())
	fields = append(fields, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		fields = appendAttr(fields, h.prefix, a)
		return true
	})
	h.out.cur.Load().log(r, fields)
	return nil
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	n := *h
	n.attrs = append(make([]field, 0, len(h.attrs)+len(as)), h.attrs...)
	for _, a := range as {
		n.attrs = appendAttr(n.attrs, h.prefix, a)
	}
	return &n
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.prefix = h.prefix + name + "."
	return &n
}

// appendAttr flattens a, following the slog.Handler rules: LogValuers are
// resolved, empty attributes are ignored, groups qualify their members and
// a group with an empty key is inlined.
func appendAttr(dst []field, prefix string, a slog.Attr) []field {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return dst
	}
	if a.Value.Kind() == slog.KindGroup {
		g := a.Value.Group()
		if len(g) == 0 {
			return dst
		}
		p := prefix
		if a.Key != "" {
			p = prefix + a.Key + "."
		}
		for _, m := range g {
			dst = appendAttr(dst, p, m)
		}
		return dst
	}
	key := prefix + a.Key
	if IsSensitiveKey(key) {
		a.Value = slog.StringValue(Redacted)
	} else if a.Value.Kind() == slog.KindAny {
		switch a.Value.Any().(type) {
		case json.RawMessage, *json.RawMessage:
			// Backend Data travels as json.RawMessage: never log it,
			// whatever the key says.
			a.Value = slog.StringValue(Redacted)
		}
	}
	return append(dst, field{key: key, val: a.Value})
}
