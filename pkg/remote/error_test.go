package remote

import (
	"errors"
	"fmt"
	"testing"
)

// TestErrorKindIs: a failure's Kind is usable with errors.Is through any
// wrapping, and only matches its own kind.
func TestErrorKindIs(t *testing.T) {
	err := fmt.Errorf("lookup virtual: %w", &Error{Kind: KindTimeout, Reason: "backend timeout"})
	if !errors.Is(err, KindTimeout) {
		t.Fatal("errors.Is(wrapped timeout, KindTimeout) = false")
	}
	if errors.Is(err, KindHTTP) {
		t.Fatal("a timeout matches KindHTTP")
	}
	if KindOf(err) != KindTimeout || KindOf(errors.New("x")) != "" || KindOf(nil) != "" {
		t.Fatalf("KindOf: %q", KindOf(err))
	}
	if Reason(err) != "backend timeout" || Reason(errors.New("secret detail")) != "backend failure" {
		t.Fatalf("Reason: %q", Reason(err))
	}
}

// TestErrorTemporary: the link failures (no answer, or no usable one in
// time) are Temporary; a backend that answered with something unusable
// is not, since asking again gets the same answer.
func TestErrorTemporary(t *testing.T) {
	for k, want := range map[Kind]bool{
		KindTransport: true, KindTimeout: true, KindTLS: true, KindHTTP: true,
		KindBody: false, KindJSON: false, KindStatus: false, KindData: false,
	} {
		e := fmt.Errorf("w: %w", &Error{Kind: k})
		if got := Temporary(e); got != want {
			t.Errorf("Temporary(%s) = %v, want %v", k, got, want)
		}
	}
	if Temporary(errors.New("x")) {
		t.Error("a foreign error is Temporary")
	}
}
