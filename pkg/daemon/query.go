package daemon

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/shitenno/shitenno/pkg/config"
	"github.com/shitenno/shitenno/pkg/logging"
)

// query runs the query subcommand: one lookup through the protocol's own
// code path, the backend exchange printed on stderr (passwords redacted),
// the protocol reply on stdout by p.Query. Logs go to stderr as plain
// text whatever DevLog says: the operator is at a terminal.
func (p Program) query(cfg *config.Config, sec *config.Service, args []string, stdout, stderr io.Writer) int {
	bin := "shitenno-" + p.Name
	logger, out, err := logging.NewWithOptions(logging.Options{Level: cfg.LogLevel, App: bin, Stderr: stderr, Journald: -1})
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", bin, err)
		return ExitConfig
	}
	defer out.Close()
	backend, err := newTracedBackend(cfg, stderr, p.Credentials)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", bin, err)
		return ExitConfig
	}
	env := &Env{
		Config: cfg, Section: sec, Logger: logger, Backend: backend, Stdout: stdout, Stderr: stderr,
		ConnState: func(int) {}, Record: recorder(logger, nil, ""), Stdin: p.Stdin,
	}
	if env.Stdin == nil {
		env.Stdin = os.Stdin
	}
	// Bound the whole query even if the protocol code forgets to.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout.Duration+5*time.Second)
	defer cancel()
	return p.Query(ctx, env, args)
}

// QueryExit is the exit status of a query subcommand: ExitOK when the
// backend found the object, ExitNotFound when it answered that it did not
// (found and notFound both false: a failure), ExitTempFail otherwise.
func QueryExit(found, notFound bool) int {
	switch {
	case found:
		return ExitOK
	case notFound:
		return ExitNotFound
	}
	return ExitTempFail
}
