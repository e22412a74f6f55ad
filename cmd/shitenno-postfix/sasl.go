package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"

	"github.com/shitenno/shitenno/pkg/bridge"
	"github.com/shitenno/shitenno/pkg/config"
	"github.com/shitenno/shitenno/pkg/daemon"
	"github.com/shitenno/shitenno/pkg/sasl"
)

// saslEndpoint is the SMTP AUTH listener (smtpd_sasl_type = dovecot);
// the daemon leaves it out when neither SASLSocket nor SASLListen is set.
func saslEndpoint(cfg *config.Config) daemon.Endpoint {
	pf := cfg.Postfix
	return daemon.Endpoint{
		Name:   "sasl",
		Socket: cfg.ResolveSocket(pf.SASLSocket),
		Listen: pf.SASLListen,
		Key:    "Postfix.SASLSocket",
		Build: func(env *daemon.Env) (daemon.Server, error) {
			s := &sasl.Server{Handler: saslBridge(env), Mechanisms: env.Config.Postfix.SASLMechanisms}
			s.MaxConns = maxConns
			env.Hook(&s.Server)
			return s, nil
		},
	}
}

func saslBridge(env *daemon.Env) *bridge.SASL {
	b := &bridge.SASL{Backend: env.Backend, Verb: env.Config.Postfix.SASLVerb, Record: env.Record}
	if env.Limiter != nil { // query has none: a nil pointer must not become a non-nil Limiter
		b.Limiter = bridge.LoginGuard{Guard: env.Limiter}
	}
	return b
}

// maxQueryPassword bounds the password line query reads.
const maxQueryPassword = 4 << 10

// querySASL checks USER with the password read from stdin (one line)
// through the same bridge the listener uses, and prints the reply line
// postfix would get. Exit 0: OK (235); 1: FAIL (535); 75: a backend
// failure (the connection is closed: 454).
func querySASL(ctx context.Context, env *daemon.Env, args []string) int {
	if len(args) != 1 || args[0] == "" {
		fmt.Fprintln(env.Stderr, "usage: shitenno-postfix query --sasl USER   (password on stdin)")
		return daemon.ExitConfig
	}
	line, err := bufio.NewReaderSize(env.Stdin, maxQueryPassword+2).ReadSlice('\n')
	if err != nil && len(line) == 0 {
		fmt.Fprintf(env.Stderr, "shitenno-postfix: query --sasl: no password on stdin: %v\n", err)
		return daemon.ExitConfig
	}
	pw := bytes.Clone(bytes.TrimRight(line, "\r\n"))
	defer clear(pw)
	req := &sasl.Request{Mechanism: sasl.MechPLAIN, Credentials: sasl.Credentials{User: args[0], Password: pw}, Service: "smtp"}
	res, outcome, err := saslBridge(env).Check(ctx, req)
	if env.Record != nil && outcome != "" {
		env.Record(env.Config.Postfix.SASLVerb, outcome, err)
	}
	switch res.Verdict {
	case sasl.Accept:
		fmt.Fprintf(env.Stdout, "OK\t1\tuser=%s\n", res.User)
		return daemon.ExitOK
	case sasl.Reject:
		fmt.Fprintf(env.Stdout, "FAIL\t1\tuser=%s\treason=%s\n", args[0], res.Reason)
		return daemon.ExitNotFound
	}
	fmt.Fprintln(env.Stdout, "(connection closed: postfix answers 454 4.7.0 Temporary authentication failure)")
	return daemon.ExitTempFail
}
