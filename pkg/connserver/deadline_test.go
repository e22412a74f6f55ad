package connserver

import (
	"testing"
	"time"
)

// Renew sets a deadline the first time, skips one that would move by
// less than the slack, and sets it again once it would move further, or
// to none.
func TestDeadlineRenew(t *testing.T) {
	var dl Deadline
	if _, ok := dl.Renew(0); ok {
		t.Fatal("none over none was set")
	}
	first, ok := dl.Renew(time.Minute)
	if !ok || time.Until(first) < 59*time.Second {
		t.Fatalf("first deadline %v set %v", time.Until(first), ok)
	}
	if again, ok := dl.Renew(time.Minute); ok || !again.Equal(first) {
		t.Fatal("a deadline moved by microseconds was set again")
	}
	if _, ok := dl.Renew(10 * time.Second); !ok {
		t.Fatal("a shorter deadline was not set")
	}
	if _, ok := dl.Renew(0); !ok {
		t.Fatal("none after a deadline was not set")
	}
	short, _ := dl.Renew(32 * time.Millisecond)
	time.Sleep(2 * time.Millisecond) // more than the slack of 1 ms
	if later, ok := dl.Renew(32 * time.Millisecond); !ok || !later.After(short) {
		t.Fatal("a deadline older than the slack was not renewed")
	}
}
