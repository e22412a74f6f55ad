package policy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// postfixRequest is what postfix 3.7's smtpd sends at RCPT (from
// SMTPD_POLICY_README, trimmed).
const postfixRequest = "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n" +
	"client_address=127.0.0.1\nsender=a@b.example\nrecipient=c@d.example\nrecipient_count=0\n" +
	"sasl_username=alice\nsize=0\nstress=\nccert_subject=x=y\n\n"

func TestReadRequest(t *testing.T) {
	br := NewReader(strings.NewReader(postfixRequest + "request=smtpd_access_policy\nrequest=dup\n\n"))
	req, err := ReadRequest(br)
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Attrs) != 11 || req.Get("sasl_username") != "alice" || req.Get("stress") != "" ||
		req.Get("ccert_subject") != "x=y" || req.Attrs[0] != (Attr{"request", "smtpd_access_policy"}) {
		t.Errorf("request: %+v", req)
	}
	if got := string(AppendRequest(nil, req)); got != postfixRequest {
		t.Errorf("AppendRequest = %q", got)
	}
	req, err = ReadRequest(br)
	if err != nil || req.Get("request") != "smtpd_access_policy" || len(req.Attrs) != 2 {
		t.Errorf("second request (first value kept): %+v %v", req, err)
	}
	if _, err := ReadRequest(br); err != io.EOF {
		t.Errorf("end of stream: %v", err)
	}
}

func TestReadRequestBounds(t *testing.T) {
	many := func(n int) string {
		var b strings.Builder
		for i := range n {
			b.WriteString("a" + strings.Repeat("x", i%7) + "=v\n")
		}
		return b.String() + "\n"
	}
	// 60 lines of 1100 bytes: below the line bound, above the request bound.
	large := strings.Repeat("n="+strings.Repeat("v", 1098)+"\n", 60) + "\n"
	for _, tc := range []struct {
		name string
		in   string
		err  error
	}{
		{"longest line", "n=" + strings.Repeat("v", MaxLine-2) + "\n\n", nil},
		{"line one byte too long", "n=" + strings.Repeat("v", MaxLine-1) + "\n\n", ErrLineTooLong},
		{"most attributes", many(MaxAttributes), nil},
		{"one attribute too many", many(MaxAttributes + 1), ErrTooManyAttrs},
		{"request too large", large, ErrRequestTooLarge},
		{"no equals", "request\n\n", ErrNoEquals},
		{"empty name", "=v\n\n", ErrEmptyName},
		{"empty request", "\n", ErrEmptyRequest},
		{"truncated", "request=x\n", ErrTruncated},
		{"truncated line", "request=x", ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadRequest(NewReader(strings.NewReader(tc.in)))
			if !errors.Is(err, tc.err) {
				t.Errorf("got %v, want %v", err, tc.err)
			}
		})
	}
}

func TestCheckAction(t *testing.T) {
	for _, ok := range []string{"DUNNO", "REJECT 5.7.1 over quota", "DEFER_IF_PERMIT Service temporarily unavailable",
		"PREPEND X-Quota: 3/100", "OK", "reject ünïcode", strings.Repeat("x", MaxAction)} {
		if err := CheckAction(ok); err != nil {
			t.Errorf("CheckAction(%.40q) = %v", ok, err)
		}
	}
	for bad, want := range map[string]error{
		"": ErrActionEmpty, "  ": ErrActionEmpty, "REJECT a\nb": ErrActionLine, "DUNNO\r": ErrActionLine,
		"a\x00": ErrActionLine, "a\tb": ErrActionLine, "REJECT \xff": ErrActionUTF8,
		strings.Repeat("x", MaxAction+1): ErrActionTooLong,
	} {
		if err := CheckAction(bad); err != want {
			t.Errorf("CheckAction(%.40q) = %v, want %v", bad, err, want)
		}
	}
	if got := string(AppendReply(nil, "DUNNO")); got != "action=DUNNO\n\n" {
		t.Errorf("AppendReply = %q", got)
	}
}

// FuzzReadRequest: never panics, never returns more than the bounds, and
// a request that was read re-encodes to the bytes it was read from.
func FuzzReadRequest(f *testing.F) {
	f.Add([]byte(postfixRequest))
	f.Add([]byte("a=b\n\nc=d\n\n"))
	f.Add([]byte("=\n\n"))
	f.Add([]byte("a==\nb\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		br := NewReader(bytes.NewReader(in))
		consumed := 0
		for {
			req, err := ReadRequest(br)
			if err != nil {
				return
			}
			if len(req.Attrs) == 0 || len(req.Attrs) > MaxAttributes {
				t.Fatalf("%d attributes", len(req.Attrs))
			}
			enc := AppendRequest(nil, req)
			if len(enc) > MaxRequest {
				t.Fatalf("request of %d bytes", len(enc))
			}
			if !bytes.Equal(enc, in[consumed:consumed+len(enc)]) {
				t.Fatalf("re-encoded %q, read from %q", enc, in[consumed:])
			}
			consumed += len(enc)
			back, err := ReadRequest(NewReader(bytes.NewReader(enc)))
			if err != nil || !reflect.DeepEqual(back, req) {
				t.Fatalf("round trip: %+v %v, want %+v", back, err, req)
			}
		}
	})
}

// bufio's size is what enforces MaxLine: make sure NewReader's is the
// one ReadRequest relies on.
func TestNewReaderSize(t *testing.T) {
	if NewReader(nil).Size() != MaxLine+1 {
		t.Fatal("reader size")
	}
	_ = bufio.ErrBufferFull
}
