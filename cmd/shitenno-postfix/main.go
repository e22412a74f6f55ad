// Command shitenno-postfix answers postfix socketmap lookups
// (socketmap_table(5)) from shitenno's HTTP+JSON backend.
package main

import (
	"context"
	"fmt"

	"github.com/shitenno/shitenno/pkg/bridge"
	"github.com/shitenno/shitenno/pkg/config"
	"github.com/shitenno/shitenno/pkg/daemon"
	"github.com/shitenno/shitenno/pkg/socketmap"
)

func main() {
	daemon.Main(program)
}

// program is a variable so that the tests can check the shipped socket
// units against its listeners.
var program = daemon.Program{
	Name:       "postfix",
	Build:      build,
	Query:      query,
	QueryUsage: "TABLE KEY | query --policy NAME=VALUE... | query --sasl USER (password on stdin)",
	Extra:      extraEndpoints,
	Logins:     true,
}

// extraEndpoints are the listeners beyond socketmap: SMTP AUTH, policy,
// tcp_table.
func extraEndpoints(cfg *config.Config) []daemon.Endpoint {
	return append([]daemon.Endpoint{saslEndpoint(cfg)}, policyEndpoints(cfg)...)
}

func build(env *daemon.Env) (daemon.Server, error) {
	s := &socketmap.Server{Handler: &bridge.Postfix{Backend: env.Backend, Record: env.Record}}
	env.Hook(&s.Server)
	return s, nil
}

// query prints the exact socketmap reply postfix would get.
func query(ctx context.Context, env *daemon.Env, args []string) int {
	if len(args) > 0 && args[0] == "--policy" {
		return queryPolicy(ctx, env, args[1:])
	}
	if len(args) > 0 && args[0] == "--sasl" {
		return querySASL(ctx, env, args[1:])
	}
	if len(args) != 2 {
		fmt.Fprintln(env.Stderr, "usage: shitenno-postfix query TABLE KEY")
		return daemon.ExitConfig
	}
	h := &bridge.Postfix{Backend: env.Backend, Record: env.Record}
	rep := h.ServeSocketmap(ctx, socketmap.Request{Name: []byte(args[0]), Key: []byte(args[1])})
	fmt.Fprintf(env.Stdout, "%s\n", socketmap.AppendReply(nil, rep))
	return daemon.QueryExit(rep.Kind == socketmap.OK, rep.Kind == socketmap.NotFound)
}
