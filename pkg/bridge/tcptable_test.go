package bridge

import (
	"context"
	"strings"
	"testing"

	"github.com/shitenno/shitenno/pkg/tcptable"
)

func TestTCPTableMapping(t *testing.T) {
	fits := strings.Repeat("x", tcptable.MaxData)
	for _, tc := range []replyCase[tcptable.Reply]{
		{"found", found(`"alice@mbox"`), tcptable.Reply{Kind: tcptable.OK, Text: "alice@mbox"}, OutcomeFound},
		{"largest", found(`"` + fits + `"`), tcptable.Reply{Kind: tcptable.OK, Text: fits}, OutcomeFound},
		{"too long", found(`"` + fits + `x"`), tcptable.Reply{Kind: tcptable.Temp,
			Text: "backend Data longer than postfix's 4096-byte tcp_table reply limit"}, OutcomeFailed},
		{"too long once encoded", found(`"` + strings.Repeat("%", tcptable.MaxData/3+1) + `"`), tcptable.Reply{Kind: tcptable.Temp,
			Text: "backend Data longer than postfix's 4096-byte tcp_table reply limit"}, OutcomeFailed},
		{"not found", notFound,
			tcptable.Reply{Kind: tcptable.NotFound}, OutcomeNotFound},
		{"failure", failing("http", "backend HTTP status 503"), tcptable.Reply{Kind: tcptable.Temp, Text: "backend HTTP status 503"}, OutcomeFailed},
		{"data not a string", found(`{"a":1}`), tcptable.Reply{Kind: tcptable.Temp, Text: "backend Data is not a string"}, OutcomeFailed},
		{"data empty", found(`""`), tcptable.Reply{Kind: tcptable.Temp, Text: "backend Data is an empty string"}, OutcomeFailed},
		{"data with NUL", found(`"a\u0000"`), tcptable.Reply{Kind: tcptable.Temp, Text: "backend Data contains a NUL byte"}, OutcomeFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := &fakeBackend{answer: tc.answer}
			var got Outcome
			h := &TCPTable{Backend: fb, Verb: "virtual", Record: func(verb string, o Outcome, err error) {
				if verb != "virtual" {
					t.Errorf("recorded verb %q", verb)
				}
				got = o
			}}
			rep := h.ServeTCPTable(context.Background(), []byte("a b%"))
			if rep != tc.want || got != tc.outcome {
				t.Errorf("got %+v %s, want %+v %s", rep, got, tc.want, tc.outcome)
			}
			if fb.verb != "virtual" || fb.object != `"a b%"` {
				t.Errorf("backend asked %q %s", fb.verb, fb.object)
			}
		})
	}
}
