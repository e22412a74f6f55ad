package bridge

import (
	"context"

	"github.com/shitenno/shitenno/pkg/remote"
	"github.com/shitenno/shitenno/pkg/socketmap"
	"github.com/shitenno/shitenno/pkg/tcptable"
)

// TCPTable answers tcp_table(5) lookups of one table: Verb is fixed by
// the listener (tcp_table sends no map name), Object is the decoded key
// as a JSON string and Data must be a non-empty JSON string, exactly as
// for socketmap; the lookup path is Postfix's. Found → 200, KO → 500,
// any backend failure → 400 (postfix: try again later).
type TCPTable struct {
	Backend Backend
	Verb    string
	Record  Recorder
}

// ServeTCPTable implements tcptable.Handler.
func (t *TCPTable) ServeTCPTable(ctx context.Context, key []byte) tcptable.Reply {
	p := Postfix{Backend: t.Backend}
	rep, outcome, err := p.lookup(ctx, t.Verb, key)
	var out tcptable.Reply
	switch rep.Kind {
	case socketmap.OK:
		out = tcptable.Reply{Kind: tcptable.OK, Text: rep.Text}
		if tcptable.EncodedLen(rep.Text) > tcptable.MaxData {
			// Checked here, not only in the codec, so that the failure is
			// counted and logged as one.
			err = remote.Failf("backend Data longer than postfix's 4096-byte tcp_table reply limit")
			out, outcome = tcptable.Reply{Kind: tcptable.Temp, Text: err.(*remote.Error).Reason}, OutcomeFailed
		}
	case socketmap.NotFound:
		out = tcptable.Reply{Kind: tcptable.NotFound}
	default:
		out = tcptable.Reply{Kind: tcptable.Temp, Text: rep.Text}
	}
	if t.Record != nil {
		t.Record(t.Verb, outcome, err)
	}
	return out
}
