package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PolicyData is the [Policy] section of the data file: the example
// answer to postfix policy delegation requests (verb "policy").
type PolicyData struct {
	// RecipientsPerHour is the outbound quota: at most this many
	// recipients per sasl_username in any hour; 0 means no quota.
	RecipientsPerHour int
	// Actions are fixed answers by recipient address, checked first
	// (e.g. "REJECT 5.7.1 …", "DEFER_IF_PERMIT …", "DUNNO").
	Actions map[string]string
}

// quota counts recipients per SASL user over a sliding hour.
type quota struct {
	mu   sync.Mutex
	sent map[string][]time.Time
	now  func() time.Time
}

// take records n recipients for user unless that would exceed limit; it
// returns the count in the last hour before this message.
func (q *quota) take(user string, n, limit int) (int, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.sent == nil {
		q.sent = map[string][]time.Time{}
	}
	now := q.now()
	kept := q.sent[user][:0]
	for _, t := range q.sent[user] {
		if now.Sub(t) < time.Hour {
			kept = append(kept, t)
		}
	}
	q.sent[user] = kept
	if len(kept)+n > limit {
		return len(kept), false
	}
	for range n {
		q.sent[user] = append(q.sent[user], now)
	}
	return len(kept), true
}

// policy answers a policy request (every attribute postfix sent, as a
// JSON object of strings). A fixed action for the recipient wins; then,
// for an authenticated client, the quota: counted at RCPT (one recipient
// per request) or at END-OF-MESSAGE (recipient_count), whichever stage
// main.cf calls the policy service at. KO means "no opinion" (DUNNO).
func (s *server) policy(obj json.RawMessage) (any, bool, error) {
	var a map[string]string
	if err := json.Unmarshal(obj, &a); err != nil {
		return nil, false, fmt.Errorf("policy wants an object of strings")
	}
	if act, ok := s.data.Policy.Actions[strings.ToLower(a["recipient"])]; ok {
		return act, true, nil
	}
	user, limit := a["sasl_username"], s.data.Policy.RecipientsPerHour
	if user == "" || limit <= 0 {
		return nil, false, nil
	}
	n := 0
	switch a["protocol_state"] {
	case "RCPT":
		n = 1
	case "END-OF-MESSAGE":
		n, _ = strconv.Atoi(a["recipient_count"])
	}
	if n <= 0 {
		return nil, false, nil
	}
	had, ok := s.quota.take(user, n, limit)
	if !ok {
		return fmt.Sprintf("REJECT 5.7.1 %s: quota of %d recipients per hour reached (%d sent)", user, limit, had), true, nil
	}
	return "DUNNO", true, nil
}
