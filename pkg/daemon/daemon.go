// Package daemon is the plumbing the three shitenno daemons share: the
// command line, configuration loading, listeners (systemd socket
// activation, unix sockets, TCP), privilege drop, signals, graceful
// shutdown and service-manager notification. cmd/* only describe what is
// specific to their protocol.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/shitenno/shitenno/pkg/bridge"
	"github.com/shitenno/shitenno/pkg/bruteforce"
	"github.com/shitenno/shitenno/pkg/config"
	"github.com/shitenno/shitenno/pkg/connserver"
	"github.com/shitenno/shitenno/pkg/logging"
)

// Version is set at build time with -ldflags "-X …/pkg/daemon.Version=…".
var Version = "dev"

// Exit statuses.
const (
	ExitOK        = 0
	ExitFailure   = 1
	ExitConfig    = 2  // configuration or usage error: do not restart
	ExitTempFail  = 75 // EX_TEMPFAIL, for query
	ExitNotFound  = 1  // query: not found
	shutdownGrace = 10 * time.Second
)

// shutdownMargin: at SIGTERM, in-flight requests get shutdownGrace or
// Timeout + shutdownMargin, whichever is longer, so a lookup that started
// just before still gets its backend's answer (or its temporary failure)
// rather than a closed connection.
const shutdownMargin = 2 * time.Second

// Server is what every protocol server offers (net/http's shape).
type Server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// Env is what a protocol gets to build its server or answer a query.
type Env struct {
	Config  *config.Config
	Section *config.Service
	Logger  *slog.Logger
	Backend *Backend
	// ConnState counts open client connections (+1/-1).
	ConnState func(delta int)
	// Record is told the outcome of every lookup (metrics, debug log).
	Record bridge.Recorder
	// Limiter is the brute-force limiter of a serving daemon (state kept
	// across SIGHUP); nil for query and --check-config.
	Limiter *bruteforce.Limiter
	// Stdout and Stderr are where query prints.
	Stdout, Stderr io.Writer
	// Stdin is where query reads a password.
	Stdin io.Reader
}

// Hook gives a protocol Server's connserver part what the daemon gives
// every listener: its logger and its count of open connections. The
// protocol's defaults stand for the timeouts.
func (e *Env) Hook(s *connserver.Server) {
	s.Logger, s.ConnState = e.Logger, e.ConnState
}

// Program describes one daemon.
type Program struct {
	// Name is the protocol: "postfix", "dovecot" or "nginx"; the binary is
	// shitenno-<Name> and its section [<Name>].
	Name string
	// Build returns the protocol server.
	Build func(env *Env) (Server, error)
	// Query performs one lookup for the query subcommand and returns the
	// exit status; nil when unsupported.
	Query func(ctx context.Context, env *Env, args []string) int
	// QueryUsage documents the query arguments.
	QueryUsage string
	// Extra lists further listeners besides the main one (Socket and
	// Listen of the section, served by Build); those with neither a
	// socket, an address nor systemd sockets are left out.
	Extra func(cfg *config.Config) []Endpoint
	// Credentials marks protocols whose lookups carry passwords (dovecot,
	// nginx): their replies are cached only when the backend's
	// Cache-Control/Expires allow it, never by the configured default TTLs.
	Credentials bool
	// Stdin is where query reads a password (never from argv, which
	// other local users can see); nil means os.Stdin.
	Stdin io.Reader
	// Logins marks programs that check passwords (nginx, postfix's SMTP
	// AUTH): they run the brute-force limiter and its control socket.
	Logins bool
}

// Main runs the program and exits.
func Main(p Program) {
	os.Exit(p.Run(os.Args[1:], os.Stdout, os.Stderr))
}

// Run parses args and runs the daemon, returning the exit status.
func (p Program) Run(args []string, stdout, stderr io.Writer) int {
	return p.run(args, stdout, stderr, nil)
}

// flags is what the command line asked for.
type flags struct {
	cfgPath string
	check   bool
	version bool
	rest    []string
}

// newFlagSet declares the options every daemon shares and its usage text.
func (p Program) newFlagSet(bin string, stderr io.Writer) (*pflag.FlagSet, *flags) {
	f := &flags{}
	fs := pflag.NewFlagSet(bin, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVarP(&f.cfgPath, "config", "c", config.DefaultPath, "configuration file")
	fs.BoolVar(&f.check, "check-config", false, "load and validate the configuration, print what would be done, exit")
	fs.BoolVarP(&f.version, "version", "V", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [--config PATH] [--check-config] [--version] [--help]\n", bin)
		if p.Query != nil {
			fmt.Fprintf(stderr, "       %s [--config PATH] query %s\n", bin, p.QueryUsage)
		}
		if p.Logins {
			fmt.Fprintf(stderr, "       %s [--config PATH] blocked | unblock NETWORK\n", bin)
		}
		fmt.Fprintf(stderr, "\nServes the %s lookup protocol from the HTTP+JSON backend named by RemoteURL.\n\n", p.Name)
		fs.PrintDefaults()
	}
	fs.SetInterspersed(false)
	return fs, f
}

// parseFlags parses args; done reports that the program should exit with
// status code right away (help, version, usage error).
func (p Program) parseFlags(bin string, args []string, stdout, stderr io.Writer) (f *flags, code int, done bool) {
	fs, f := p.newFlagSet(bin, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, ExitOK, true
		}
		// With ContinueOnError pflag prints nothing itself.
		fmt.Fprintf(stderr, "%s: %v\n", bin, err)
		fs.Usage()
		return nil, ExitConfig, true
	}
	if f.version {
		fmt.Fprintf(stdout, "%s %s\n", bin, Version)
		return nil, ExitOK, true
	}
	f.rest = fs.Args()
	if f.isControl() && !p.Logins {
		fmt.Fprintf(stderr, "%s: %s: this daemon checks no logins and has no brute-force limiter\n", bin, f.rest[0])
		return nil, ExitConfig, true
	}
	if len(f.rest) > 0 && !f.isControl() && (f.rest[0] != "query" || p.Query == nil) {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", bin, f.rest[0])
		fs.Usage()
		return nil, ExitConfig, true
	}
	return f, ExitOK, false
}

// isControl tells whether the command talks to the limiter's control socket.
func (f *flags) isControl() bool {
	return len(f.rest) > 0 && (f.rest[0] == "blocked" || f.rest[0] == "unblock")
}

// run is Run with the signals coming from sigc instead of the process
// (tests); nil means the process's SIGTERM, SIGINT and SIGHUP.
func (p Program) run(args []string, stdout, stderr io.Writer, sigc <-chan os.Signal) int {
	bin := "shitenno-" + p.Name
	f, code, done := p.parseFlags(bin, args, stdout, stderr)
	if done {
		return code
	}
	// Loading for p.Name checks this daemon's accounts too: --check-config
	// and start-up refuse the same files, with the same status.
	cfg, err := config.Load(f.cfgPath, p.Name)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "%s: %s\n", bin, line)
		}
		return ExitConfig
	}
	switch {
	case f.check:
		return p.checkConfig(bin, cfg, stdout, stderr)
	case f.isControl():
		return p.control(cfg, f.rest, stdout, stderr)
	case len(f.rest) > 0:
		return p.query(cfg, cfg.Section(p.Name), f.rest[1:], stdout, stderr)
	}
	return p.start(bin, cfg, f.cfgPath, stdout, stderr, sigc)
}

// checkConfig is --check-config: check what start-up checks beyond the
// file (socket directories, the backend client, which reads the TLS
// files), opening nothing; print the warnings, then every problem, or
// the plan when there is none.
func (p Program) checkConfig(bin string, cfg *config.Config, stdout, stderr io.Writer) int {
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "%s: warning: %s\n", bin, w)
	}
	if w := devLogWarning(cfg); w != "" {
		fmt.Fprintf(stderr, "%s: warning: %s\n", bin, w)
	}
	var errs []error
	if dirs := p.socketDirProblems(cfg, p.endpoints(cfg, nil), false); len(dirs) > 0 {
		errs = append(errs, dirs)
	}
	if _, err := NewBackend(cfg, nil, p.Credentials); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		for _, line := range strings.Split(errors.Join(errs...).Error(), "\n") {
			fmt.Fprintf(stderr, "%s: %s\n", bin, line)
		}
		return ExitConfig
	}
	p.describe(stdout, cfg)
	return ExitOK
}

// start builds the logger and the signal channel, then serves until a
// stop signal.
func (p Program) start(bin string, cfg *config.Config, cfgPath string, stdout, stderr io.Writer, sigc <-chan os.Signal) int {
	if w := devLogWarning(cfg); w != "" {
		// Not to the log: it is what goes nowhere.
		fmt.Fprintf(stderr, "%s: warning: %s\n", bin, w)
	}
	logger, out, err := newLogger(cfg, bin, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", bin, err)
		return ExitConfig
	}
	defer out.Close()
	for _, w := range cfg.Warnings() {
		logger.Warn("secret readable by every local user", "msgid", "config", "warning", w)
	}
	env := &Env{
		Config: cfg, Section: cfg.Section(p.Name), Logger: logger, Stdout: stdout, Stderr: stderr,
		ConnState: func(int) {},
	}
	process := sigc == nil
	if process {
		c := make(chan os.Signal, 4)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
		defer signal.Stop(c)
		sigc = c
	}
	return p.serve(&runtime{p: p, env: env, out: out, cfgPath: cfgPath, process: process}, sigc)
}

// newLogger builds the process logger from DevLog and LogLevel (see
// pkg/logging); stderr is the stream used for DevLog = "stderr". Close
// the Output last, at exit: it flushes what is queued.
func newLogger(cfg *config.Config, app string, stderr io.Writer) (*slog.Logger, *logging.Output, error) {
	l, out, err := logging.NewWithOptions(logging.Options{DevLog: cfg.DevLog, Level: cfg.LogLevel, App: app, Stderr: stderr})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cfg.File, err)
	}
	return l, out, nil
}

// devLogWarning says when DevLog is a socket path with no socket there:
// a warning, not an error, since the syslog daemon may start after
// shitenno (records are dropped until it listens, then sent); or "".
func devLogWarning(cfg *config.Config) string {
	if !filepath.IsAbs(cfg.DevLog) {
		return ""
	}
	const lost = "log records are dropped until a syslog daemon listens there"
	fi, err := os.Stat(cfg.DevLog)
	switch {
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return cfg.KeyError("DevLog", "%s: %v: %s", cfg.DevLog, err, lost).Error()
	case fi.Mode()&os.ModeSocket == 0:
		return cfg.KeyError("DevLog", "%s: not a socket: %s", cfg.DevLog, lost).Error()
	}
	return ""
}

func (p Program) section() string { return config.SectionKey(p.Name) }

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit: every
// postfix/dovecot/nginx client is a descriptor, and each lookup may hold
// a backend connection too.
func raiseFileLimit(log *slog.Logger) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	if rl.Cur < rl.Max {
		old := rl.Cur
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			log.Warn("cannot raise the file descriptor limit", "err", err)
			return
		}
		log.Debug("raised file descriptor limit", "from", old, "to", strconv.FormatUint(rl.Cur, 10))
	}
}
