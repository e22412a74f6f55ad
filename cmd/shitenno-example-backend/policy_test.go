package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestPolicyQuota(t *testing.T) {
	now := time.Unix(1e9, 0)
	s := &server{quota: quota{now: func() time.Time { return now }}}
	s.data.Policy = PolicyData{RecipientsPerHour: 3, Actions: map[string]string{"x@y": "REJECT 5.7.1 no"}}
	ask := func(attrs map[string]string) (any, bool) {
		t.Helper()
		b, _ := json.Marshal(attrs)
		v, ok, err := s.policy(b)
		if err != nil {
			t.Fatal(err)
		}
		return v, ok
	}
	rcpt := map[string]string{"protocol_state": "RCPT", "sasl_username": "alice", "recipient": "a@b"}
	for i := range 3 {
		if v, ok := ask(rcpt); !ok || v != "DUNNO" {
			t.Fatalf("recipient %d: %v %v", i+1, v, ok)
		}
	}
	if v, ok := ask(rcpt); !ok || !strings.HasPrefix(v.(string), "REJECT 5.7.1 alice: quota of 3") {
		t.Fatalf("over quota: %v %v", v, ok)
	}
	// Another user has their own count; no user, no quota (KO).
	if v, _ := ask(map[string]string{"protocol_state": "RCPT", "sasl_username": "bob"}); v != "DUNNO" {
		t.Errorf("bob: %v", v)
	}
	if _, ok := ask(map[string]string{"protocol_state": "RCPT"}); ok {
		t.Error("anonymous client counted")
	}
	if v, _ := ask(map[string]string{"protocol_state": "RCPT", "sasl_username": "alice", "recipient": "X@Y"}); v != "REJECT 5.7.1 no" {
		t.Errorf("fixed action: %v", v)
	}
	// END-OF-MESSAGE counts recipient_count at once.
	if v, _ := ask(map[string]string{"protocol_state": "END-OF-MESSAGE", "sasl_username": "carol", "recipient_count": "4"}); !strings.HasPrefix(v.(string), "REJECT") {
		t.Errorf("4 recipients against a quota of 3: %v", v)
	}
	// An hour later alice may send again.
	now = now.Add(time.Hour)
	if v, _ := ask(rcpt); v != "DUNNO" {
		t.Errorf("after an hour: %v", v)
	}
}
