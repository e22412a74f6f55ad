// Command shitenno-bench measures shitenno against the physical limit of
// the machine it runs on: lookups per second, median and 99th-percentile
// latency, errors and peak memory, for postfix (socketmap) and dovecot
// (proxy dict), each in five scenarios:
//
//  1. null: a responder that answers without any backend (the floor of
//     the socket round trip);
//  2. direct: the same lookups as HTTP POSTs straight to the backend
//     (the cost of the HTTP hop alone);
//  3. naive: a naive reference daemon (naive.go: a goroutine per
//     connection, net/http, no cache), the bar uncached shitenno must clear;
//  4. uncached: through shitenno, every lookup reaching the backend;
//  5. cached: through shitenno, answered from its cache.
//
// postfix also has a scan (scan.go): 20 000 keys cycled on one
// connection through a cache of 10 000, which reports the hit ratio.
//
// SMTP AUTH logins (sasl), policy requests (policy) and nginx auth_http
// requests (nginx) are uncached by design: they are measured direct and
// uncached, and nginx also with the brute-force limiter on (limiter).
//
// `make bench` runs it through scripts/bench.sh. Subcommands:
//
//	shitenno-bench run [flags]            start everything, measure, report
//	shitenno-bench backend --listen ADDR  the built-in minimal backend
//	shitenno-bench null --protocol P --socket PATH
//	shitenno-bench naive --protocol P --socket PATH --url URL
//	shitenno-bench gen-data               data file for shitenno-example-backend
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: shitenno-bench run [--bin DIR] [--work DIR] [--backend builtin|example]
                          [--protocols postfix,dovecot,sasl,policy,nginx]
                          [--conns 1,8,64] [--duration 2s] [--warmup 500ms] [--repeat 3]
                          [--repeat-at 8] [--out FILE] [--append FILE]... [--limiter-control]
       shitenno-bench backend --listen ADDR [--max-age N]
       shitenno-bench null --protocol postfix|dovecot --socket PATH
       shitenno-bench naive --protocol postfix|dovecot --socket PATH --url URL
       shitenno-bench gen-data
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	fs := pflag.NewFlagSet("shitenno-bench "+args[0], pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(fs, args[1:], stdout)
	case "backend":
		err = cmdBackend(fs, args[1:])
	case "null":
		err = cmdNull(fs, args[1:])
	case "naive":
		err = cmdNaive(fs, args[1:])
	case "gen-data":
		err = writeExampleData(stdout)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprint(stderr, usage)
		return 2
	}
	if err != nil {
		if err == pflag.ErrHelp {
			return 0
		}
		fmt.Fprintf(stderr, "shitenno-bench %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func cmdBackend(fs *pflag.FlagSet, args []string) error {
	listen := fs.String("listen", "127.0.0.1:18090", "address to listen on")
	maxAge := fs.Int("max-age", 0, "Cache-Control max-age (seconds) on every answer; 0 sends none")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return serveBackend(*listen, *maxAge)
}

func cmdNull(fs *pflag.FlagSet, args []string) error {
	proto := fs.String("protocol", "postfix", "postfix or dovecot")
	sock := fs.String("socket", "", "unix socket path")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sock == "" {
		return fmt.Errorf("--socket is required")
	}
	return serveNull(*proto, *sock)
}

func cmdNaive(fs *pflag.FlagSet, args []string) error {
	proto := fs.String("protocol", "postfix", "postfix or dovecot")
	sock := fs.String("socket", "", "unix socket path")
	url := fs.String("url", "", "backend base URL (the verb is appended)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sock == "" || *url == "" || (*proto != "postfix" && *proto != "dovecot") {
		return fmt.Errorf("--socket, --url and --protocol postfix|dovecot are required")
	}
	return serveNaive(*proto, *sock, *url)
}

func cmdRun(fs *pflag.FlagSet, args []string, stdout io.Writer) error {
	o, err := parseRunFlags(fs, args, stdout)
	if err != nil {
		return err
	}
	if o.Work == "" {
		d, err := os.MkdirTemp("", "shitenno-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.Work = d
	}
	return benchRun(o)
}

// parseRunFlags reads and checks the flags of shitenno-bench run.
func parseRunFlags(fs *pflag.FlagSet, args []string, stdout io.Writer) (runOptions, error) {
	self, _ := os.Executable()
	bin := fs.String("bin", filepath.Dir(self), "directory holding shitenno-postfix, shitenno-dovecot, shitenno-nginx, shitenno-example-backend")
	work := fs.String("work", "", "scratch directory for configs, sockets and logs (default: a new temp dir, removed afterwards)")
	backend := fs.String("backend", "builtin", "backend: builtin (minimal, counts requests) or example (shitenno-example-backend)")
	protos := fs.String("protocols", strings.Join(allProtocols, ","), "protocols to measure: "+strings.Join(allProtocols, ", "))
	conns := fs.String("conns", "1,8,64", "concurrent connections per run")
	dur := fs.Duration("duration", 2*time.Second, "measured time per run")
	repeat := fs.Int("repeat", 3, "rounds of every scenario at the --repeat-at concurrencies (ratios are medians over rounds)")
	repeatAt := fs.String("repeat-at", "8", "concurrencies measured --repeat times (the targets are set at 8)")
	warm := fs.Duration("warmup", 500*time.Millisecond, "unmeasured time before each run")
	maxAge := fs.Int("max-age", 600, "Cache-Control max-age of the cached backend (must outlive the whole run)")
	out := fs.String("out", "bench/RESULTS.md", "Markdown results file (empty: none)")
	extra := fs.StringSlice("append", nil, "Markdown files appended to the results (microbenchmarks, leak check)")
	commit := fs.String("commit", "", "source version recorded in the results")
	control := fs.Bool("limiter-control", false, "A/A control: run the limiter scenario's daemon with the limiter off too, to see the noise floor of the on/off ratios")
	if err := fs.Parse(args); err != nil {
		return runOptions{}, err
	}
	o := runOptions{Bin: *bin, Work: *work, Backend: *backend, Warmup: *warm, Duration: *dur, Repeat: *repeat,
		MaxAge: *maxAge, Out: *out, Extra: *extra, Commit: *commit, LimiterControl: *control, Stdout: stdout}
	if o.Backend != "builtin" && o.Backend != "example" {
		return o, fmt.Errorf("--backend must be builtin or example")
	}
	var err error
	if o.Protocols, err = protocolList(*protos); err != nil {
		return o, err
	}
	if o.Conns, err = connList("conns", *conns, 4096); err != nil {
		return o, err
	}
	if *repeatAt != "" {
		if o.RepeatAt, err = connList("repeat-at", *repeatAt, 0); err != nil {
			return o, err
		}
	}
	if o.Repeat < 1 || o.Repeat > 20 {
		return o, fmt.Errorf("--repeat must be in 1..20")
	}
	return o, nil
}

// protocolList parses --protocols: known names, each kept once, in the
// order given.
func protocolList(s string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if !slices.Contains(allProtocols, p) {
			return nil, fmt.Errorf("--protocols: unknown protocol %q (known: %s)", p, strings.Join(allProtocols, ", "))
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// connList parses a comma-separated list of connection counts for
// --<flag>, each at least 1 and at most hi (0: no bound).
func connList(flag, s string, hi int) ([]int, error) {
	var out []int
	for _, c := range strings.Split(s, ",") {
		n, err := strconv.Atoi(c)
		switch {
		case hi > 0 && (err != nil || n < 1 || n > hi):
			return nil, fmt.Errorf("--%s: %q is not a number of connections in 1..%d", flag, c, hi)
		case err != nil || n < 1:
			return nil, fmt.Errorf("--%s: %q is not a number of connections", flag, c)
		}
		out = append(out, n)
	}
	return out, nil
}
