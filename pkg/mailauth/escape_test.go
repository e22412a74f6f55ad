package mailauth

import (
	"errors"
	"net/url"
	"testing"
)

// escapeCases are the values nginx 1.22.1 was seen to send (PROTOCOLS.md
// §4.1), plus edge cases; they double as fuzz seeds.
var escapeCases = []struct {
	wire, want string
	err        bool
}{
	{wire: "alice", want: "alice"},
	{wire: "ok%20user", want: "ok user"},
	{wire: `p%25a+ss%20w"d`, want: `p%a+ss w"d`},
	{wire: "ok%01ctl", want: "ok\x01ctl"},
	{wire: "p\xc3\xa9%09x", want: "p\xc3\xa9\tx"},
	{wire: "a+b", want: "a+b"},
	{wire: "%00", want: "\x00"},
	{wire: "%7f%7F", want: "\x7f\x7f"},
	{wire: "-----BEGIN%20CERTIFICATE-----%0AMII%0A", want: "-----BEGIN CERTIFICATE-----\nMII\n"},
	{wire: "", want: ""},
	{wire: "%", err: true},
	{wire: "%2", err: true},
	{wire: "a%zz", err: true},
	{wire: "%%20", err: true},
	{wire: "x%2g", err: true},
}

func TestUnescape(t *testing.T) {
	for _, tc := range escapeCases {
		t.Run(tc.wire, func(t *testing.T) {
			got, err := Unescape(tc.wire)
			if tc.err {
				if !errors.Is(err, ErrBadEscape) {
					t.Fatalf("Unescape(%q) = %q, %v; want ErrBadEscape", tc.wire, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Unescape(%q) = %q, %v; want %q", tc.wire, got, err, tc.want)
			}
		})
	}
}

func TestEscapeMatchesNginx(t *testing.T) {
	for in, want := range map[string]string{
		"ok user":          "ok%20user",
		`p%a+ss w"d`:       `p%25a+ss%20w"d`,
		"ok\x01ctl":        "ok%01ctl",
		"p\xc3\xa9\tx":     "p\xc3\xa9%09x",
		"del\x7f":          "del\x7f",
		"trailing ":        "trailing%20",
		"\x00\x1f\x20\x25": "%00%1F%20%25",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzUnescape(f *testing.F) {
	for _, tc := range escapeCases {
		f.Add(tc.wire)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Unescape(s)
		if err != nil {
			if got != "" {
				t.Fatalf("error with output %q", got)
			}
			return
		}
		if len(got) > len(s) {
			t.Fatalf("decoded %q longer than input %q", got, s)
		}
		// Cross-check with the standard library's strict path decoder,
		// which also leaves '+' alone.
		if want, err := url.PathUnescape(s); err != nil || want != got {
			t.Fatalf("Unescape(%q) = %q, url.PathUnescape = %q, %v", s, got, want, err)
		}
		// Round trip: what nginx sends decodes to the original bytes.
		if back, err := Unescape(Escape(s)); err != nil || back != s {
			t.Fatalf("Unescape(Escape(%q)) = %q, %v", s, back, err)
		}
	})
}
