package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/shitenno/shitenno/pkg/bridge"
	"github.com/shitenno/shitenno/pkg/config"
	"github.com/shitenno/shitenno/pkg/daemon"
	"github.com/shitenno/shitenno/pkg/policy"
	"github.com/shitenno/shitenno/pkg/tcptable"
)

// queryPolicy prints the policy reply postfix would get for the request
// made of the name=value arguments (request=smtpd_access_policy is added
// when absent, as postfix always sends it). Exit 0: the backend answered
// OK; 1: KO (DUNNO); 75: a backend failure (the fail action).
func queryPolicy(ctx context.Context, env *daemon.Env, args []string) int {
	var req policy.Request
	for _, a := range args {
		name, value, ok := strings.Cut(a, "=")
		if !ok || name == "" || strings.ContainsAny(a, "\n\x00") {
			fmt.Fprintf(env.Stderr, "shitenno-postfix: query --policy: %q is not name=value\n", a)
			return daemon.ExitConfig
		}
		req.Attrs = append(req.Attrs, policy.Attr{Name: name, Value: value})
	}
	if req.Get("request") == "" {
		req.Attrs = append([]policy.Attr{{Name: "request", Value: "smtpd_access_policy"}}, req.Attrs...)
	}
	pf := env.Config.Postfix
	h := &bridge.Policy{Backend: env.Backend, Verb: pf.PolicyVerb, FailAction: pf.PolicyFailAction, Record: env.Record}
	action, outcome, err := h.Decide(ctx, req)
	if env.Record != nil {
		env.Record(pf.PolicyVerb, outcome, err)
	}
	fmt.Fprintf(env.Stdout, "%s", policy.AppendReply(nil, action))
	return daemon.QueryExit(outcome == bridge.OutcomeFound, outcome == bridge.OutcomeNotFound)
}

// maxConns bounds each policy and tcp_table listener's connections: every
// smtpd process holds one policy connection, so this is far above a
// default master.cf's process limit (100) while keeping a local flood
// from exhausting file descriptors that the other listeners need.
const maxConns = 1024

// policyEndpoints are the policy delegation listener and one listener per
// [[Postfix.TCPTable]]; the daemon leaves out those not configured.
func policyEndpoints(cfg *config.Config) []daemon.Endpoint {
	pf := cfg.Postfix
	eps := []daemon.Endpoint{{
		Name:   "policy",
		Socket: cfg.ResolveSocket(pf.PolicySocket),
		Listen: pf.PolicyListen,
		Key:    "Postfix.PolicySocket",
		Build: func(env *daemon.Env) (daemon.Server, error) {
			p := env.Config.Postfix
			s := &policy.Server{Handler: &bridge.Policy{Backend: env.Backend, Verb: p.PolicyVerb, FailAction: p.PolicyFailAction, Record: env.Record}}
			s.MaxConns = maxConns
			env.Hook(&s.Server)
			return s, nil
		},
	}}
	for _, t := range pf.TCPTable {
		eps = append(eps, daemon.Endpoint{
			Name:   "tcptable",
			Listen: t.Listen,
			Key:    "Postfix.TCPTable.Listen",
			Unit:   tcpTableUnit,
			Build: func(env *daemon.Env) (daemon.Server, error) {
				s := &tcptable.Server{Handler: &bridge.TCPTable{Backend: env.Backend, Verb: t.Verb, Record: env.Record}}
				s.MaxConns = maxConns
				env.Hook(&s.Server)
				return s, nil
			},
		})
	}
	if len(pf.TCPTable) == 0 {
		// No table, no Verb to ask with: a tcptable socket from systemd
		// alone cannot be served, and the daemon says which key is missing.
		eps = append(eps, daemon.Endpoint{Name: "tcptable", Key: "Postfix.TCPTable.Listen", Unit: tcpTableUnit})
	}
	return eps
}

// tcpTableUnit is the socket unit template of the tcp_table listeners:
// one instance per table, named by its port (127.0.0.1:%i).
const tcpTableUnit = "shitenno-postfix-tcptable@.socket"
