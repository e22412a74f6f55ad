// Command shitenno-dovecot answers dovecot's proxy dict lookups (the
// passdb/userdb "dict" drivers of dovecot 2.2 and 2.3) from shitenno's
// HTTP+JSON backend.
package main

import (
	"context"
	"fmt"

	"github.com/shitenno/shitenno/pkg/bridge"
	"github.com/shitenno/shitenno/pkg/daemon"
	"github.com/shitenno/shitenno/pkg/dict"
)

func main() {
	daemon.Main(daemon.Program{
		Name:        "dovecot",
		Build:       build,
		Query:       query,
		QueryUsage:  "VERB OBJECT | KEY  (passdb alice@example.org = shared/passdb/alice@example.org)",
		Credentials: true,
	})
}

func build(env *daemon.Env) (daemon.Server, error) {
	// The dict default idle timeout (5 minutes): dovecot 2.3 disconnects
	// as soon as it has its replies; a client that keeps a connection
	// open (2.4 with idle_msecs) gets a while.
	s := &dict.Server{Handler: &bridge.Dovecot{Backend: env.Backend, Record: env.Record}}
	env.Hook(&s.Server)
	return s, nil
}

// query prints the exact dict reply line dovecot would get for a key, or
// for VERB OBJECT the key dovecot's auth dict driver would build
// ("shared/" is its fixed prefix).
func query(ctx context.Context, env *daemon.Env, args []string) int {
	var key string
	switch len(args) {
	case 1:
		key = args[0]
	case 2:
		key = "shared/" + args[0] + "/" + args[1]
	default:
		fmt.Fprintln(env.Stderr, "usage: shitenno-dovecot query VERB OBJECT | KEY")
		return daemon.ExitConfig
	}
	h := &bridge.Dovecot{Backend: env.Backend, Record: env.Record}
	rep := h.ServeDict(ctx, dict.Request{Key: key})
	env.Stdout.Write(dict.AppendReply(nil, rep))
	return daemon.QueryExit(rep.Kind == dict.Found, rep.Kind == dict.NotFound)
}
