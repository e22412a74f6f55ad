package bridge

import (
	"context"
	"encoding/json"

	"github.com/shitenno/shitenno/pkg/policy"
	"github.com/shitenno/shitenno/pkg/remote"
)

// DefaultPolicyFailAction is the action for a backend failure when none
// is configured: a 4xx unless a permanent rejection applies, never a
// silent accept.
const DefaultPolicyFailAction = "DEFER_IF_PERMIT Service temporarily unavailable"

// Policy answers postfix policy delegation requests: Verb = the
// configured policy verb, Object = every attribute received as a JSON
// object of strings (unknown ones included: postfix adds attributes each
// release). Status OK → action=<Data> (a one-line string, see
// policy.CheckAction), KO → action=DUNNO, any failure → FailAction.
//
// Requests go to the backend uncached and uncoalesced: each one may count
// (a recipient quota), so two identical requests are two requests.
type Policy struct {
	Backend Backend
	Verb    string
	// FailAction is the action on a backend failure; "" means
	// DefaultPolicyFailAction.
	FailAction string
	Record     Recorder
}

// ServePolicy implements policy.Handler.
func (p *Policy) ServePolicy(ctx context.Context, req policy.Request) string {
	action, outcome, err := p.decide(ctx, req)
	if p.Record != nil {
		p.Record(p.Verb, outcome, err)
	}
	return action
}

// Decide is ServePolicy with the outcome and the failure, for the query
// subcommand.
func (p *Policy) Decide(ctx context.Context, req policy.Request) (string, Outcome, error) {
	return p.decide(ctx, req)
}

func (p *Policy) decide(ctx context.Context, req policy.Request) (string, Outcome, error) {
	res, err := p.Backend.LookupRaw(remote.Uncached(ctx), p.Verb, PolicyObject(req))
	if err != nil {
		return p.failAction(), OutcomeFailed, err
	}
	if res.Status == remote.NotFound {
		return "DUNNO", OutcomeNotFound, nil
	}
	var action string
	if len(res.Data) == 0 || res.Data[0] != '"' || json.Unmarshal(res.Data, &action) != nil {
		return p.failAction(), OutcomeFailed, remote.Failf("backend Data is not a string")
	}
	if err := policy.CheckAction(action); err != nil {
		return p.failAction(), OutcomeFailed, remote.Failf("backend Data is not a valid policy action: %s", err)
	}
	return action, OutcomeFound, nil
}

func (p *Policy) failAction() string {
	if p.FailAction == "" || policy.CheckAction(p.FailAction) != nil {
		return DefaultPolicyFailAction
	}
	return p.FailAction
}

// PolicyObject encodes the attributes of req as a JSON object of strings,
// in the order received; a repeated attribute keeps its first value
// (policy.Request.Get). Bytes that are not UTF-8 become U+FFFD, as
// encoding/json does: JSON cannot carry them, and refusing the request
// would defer mail over, say, an 8-bit HELO name.
func PolicyObject(req policy.Request) json.RawMessage {
	n := 2
	for _, a := range req.Attrs {
		n += len(a.Name) + len(a.Value) + 6
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	seen := make(map[string]struct{}, len(req.Attrs))
	for _, a := range req.Attrs {
		if _, dup := seen[a.Name]; dup {
			continue
		}
		seen[a.Name] = struct{}{}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = remote.AppendJSONString(b, a.Name)
		b = append(b, ':')
		b = remote.AppendJSONString(b, a.Value)
	}
	return append(b, '}')
}
