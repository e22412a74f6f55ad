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
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/shitenno/shitenno/pkg/bridge"
	"github.com/shitenno/shitenno/pkg/config"
	"github.com/shitenno/shitenno/pkg/logging"
	"github.com/shitenno/shitenno/pkg/metrics"
	"github.com/shitenno/shitenno/pkg/remote"
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
	// Stdout and Stderr are where query prints.
	Stdout, Stderr io.Writer
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
	// Credentials marks protocols whose lookups carry passwords (dovecot,
	// nginx): their replies are cached only when the backend's
	// Cache-Control/Expires allow it, never by the configured default TTLs.
	Credentials bool
}

// Main runs the program and exits.
func Main(p Program) {
	os.Exit(p.Run(os.Args[1:], os.Stdout, os.Stderr))
}

// Run parses args and runs the daemon, returning the exit status.
func (p Program) Run(args []string, stdout, stderr io.Writer) int {
	return p.run(args, stdout, stderr, nil)
}

// run is Run with the signals coming from sigc instead of the process
// (tests); nil means the process's SIGTERM, SIGINT and SIGHUP.
func (p Program) run(args []string, stdout, stderr io.Writer, sigc <-chan os.Signal) int {
	bin := "shitenno-" + p.Name
	fs := pflag.NewFlagSet(bin, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.StringP("config", "c", config.DefaultPath, "configuration file")
	check := fs.Bool("check-config", false, "load and validate the configuration, print what would be done, exit")
	version := fs.BoolP("version", "V", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [--config PATH] [--check-config] [--version] [--help]\n", bin)
		if p.Query != nil {
			fmt.Fprintf(stderr, "       %s [--config PATH] query %s\n", bin, p.QueryUsage)
		}
		fmt.Fprintf(stderr, "\nServes the %s lookup protocol from the HTTP+JSON backend named by RemoteURL.\n\n", p.Name)
		fs.PrintDefaults()
	}
	fs.SetInterspersed(false)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return ExitOK
		}
		// With ContinueOnError pflag prints nothing itself.
		fmt.Fprintf(stderr, "%s: %v\n", bin, err)
		fs.Usage()
		return ExitConfig
	}
	if *version {
		fmt.Fprintf(stdout, "%s %s\n", bin, Version)
		return ExitOK
	}
	rest := fs.Args()
	if len(rest) > 0 && (rest[0] != "query" || p.Query == nil) {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", bin, rest[0])
		fs.Usage()
		return ExitConfig
	}
	// Loading for p.Name checks this daemon's accounts too: --check-config
	// and start-up refuse the same files, with the same status.
	cfg, err := config.Load(*cfgPath, p.Name)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "%s: %s\n", bin, line)
		}
		return ExitConfig
	}
	sec := cfg.Section(p.Name)
	if *check {
		p.describe(stdout, cfg, sec)
		for _, w := range cfg.Warnings() {
			fmt.Fprintf(stderr, "%s: warning: %s\n", bin, w)
		}
		if _, err := NewBackend(cfg, nil, p.Credentials); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", bin, err)
			return ExitConfig
		}
		return ExitOK
	}
	if len(rest) > 0 {
		return p.query(cfg, sec, rest[1:], stdout, stderr)
	}
	logger, out, err := NewLogger(cfg, bin, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", bin, err)
		return ExitConfig
	}
	defer out.Close()
	for _, w := range cfg.Warnings() {
		logger.Warn("secret readable by every local user", "msgid", "config", "warning", w)
	}
	env := &Env{
		Config: cfg, Section: sec, Logger: logger, Stdout: stdout, Stderr: stderr,
		ConnState: func(int) {},
	}
	if sigc == nil {
		c := make(chan os.Signal, 4)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
		defer signal.Stop(c)
		sigc = c
	}
	return p.serve(&runtime{p: p, env: env, out: out, cfgPath: *cfgPath}, sigc)
}

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
		ConnState: func(int) {}, Record: recorder(logger, nil),
	}
	// Bound the whole query even if the protocol code forgets to.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout.Duration+5*time.Second)
	defer cancel()
	return p.Query(ctx, env, args)
}

func (p Program) describe(w io.Writer, cfg *config.Config, sec *config.Service) {
	fmt.Fprintf(w, "configuration %s is valid\n", cfg.File)
	if os.Getenv("LISTEN_FDS") != "" {
		fmt.Fprintf(w, "listen: sockets passed by systemd (LISTEN_FDS=%s)\n", os.Getenv("LISTEN_FDS"))
	} else {
		fmt.Fprintf(w, "listen: unix:%s (owner %s:%s, mode %04o)\n", cfg.SocketPath(sec), sec.UID, sec.GID, uint32(sec.Mode))
	}
	if sec.Listen != "" {
		fmt.Fprintf(w, "listen: tcp:%s\n", sec.Listen)
	}
	if sec.HealthListen != "" {
		fmt.Fprintf(w, "health: http://%s/healthz\n", sec.HealthListen)
	}
	for _, u := range cfg.RedactedURLs() {
		fmt.Fprintf(w, "backend: POST %s<Verb> (timeout %s)\n", u, cfg.Timeout.Duration)
	}
}

// NewLogger builds the process logger from DevLog and LogLevel (see
// pkg/logging); stderr is the stream used for DevLog = "stderr". Close
// the Output last, at exit: it flushes what is queued.
func NewLogger(cfg *config.Config, app string, stderr io.Writer) (*slog.Logger, *logging.Output, error) {
	l, out, err := logging.NewWithOptions(logging.Options{DevLog: cfg.DevLog, Level: cfg.LogLevel, App: app, Stderr: stderr})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cfg.File, err)
	}
	return l, out, nil
}

// listeners opens what the section asks for, or takes systemd's sockets.
func (p Program) listeners(env *Env) ([]net.Listener, error) {
	act, err := TakeActivated()
	if err != nil {
		return nil, err
	}
	if act != nil {
		ls := act.For(p.Name)
		if len(ls) == 0 {
			return nil, errors.New("socket activated but no usable stream socket was passed")
		}
		return ls, nil
	}
	cfg, sec := env.Config, env.Section
	var ls []net.Listener
	closeAll := func() {
		for _, l := range ls {
			l.Close()
		}
	}
	if path := cfg.SocketPath(sec); path != "" {
		uid, err := sec.UID.UserID()
		if err != nil {
			return nil, fmt.Errorf("%s: [%s] UID: %w", cfg.File, p.section(), err)
		}
		gid, err := sec.GID.GroupID()
		if err != nil {
			return nil, fmt.Errorf("%s: [%s] GID: %w", cfg.File, p.section(), err)
		}
		l, err := ListenUnix(UnixSocket{Path: path, UID: uid, GID: gid, Mode: os.FileMode(sec.Mode)})
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
	}
	if sec.Listen != "" {
		l, err := ListenTCP(sec.Listen)
		if err != nil {
			closeAll()
			return nil, err
		}
		ls = append(ls, l)
	}
	return ls, nil
}

func (p Program) section() string { return config.SectionKey(p.Name) }

// runtime is the state of a serving daemon that a reload may change.
type runtime struct {
	p       Program
	env     *Env
	out     *logging.Output
	cfgPath string

	cfg     *config.Config // the configuration in force
	met     *metrics.Metrics
	backend *Backend
	// probeBackend is backend for the health handler's goroutines.
	probeBackend atomic.Pointer[Backend]
	health       *metrics.Health
	healthSrv    *metrics.Server
	healthAddr   string
	live         *liveness
}

func (p Program) serve(r *runtime, sigc <-chan os.Signal) int {
	env := r.env
	log := env.Logger
	r.cfg = env.Config
	raiseFileLimit(log)

	r.met = metrics.New(p.Name, Version)
	_ = r.met.RegisterCounterFunc("log_records_dropped_total",
		"Log records lost because the log receiver was slow or unreachable.",
		func() float64 { return float64(r.out.Stats().Dropped) })
	env.ConnState = r.met.ConnDelta
	env.Record = recorder(log, r.met)

	raw, err := p.listeners(env)
	if err != nil {
		log.Error("cannot listen", "err", err)
		return ExitFailure
	}
	ls := make([]*probeListener, len(raw))
	closeAll := func() {
		for _, l := range raw {
			l.Close()
		}
	}
	for i, l := range raw {
		ls[i] = newProbeListener(l, time.Now)
	}
	r.live = newLiveness(ls, watchdogInterval(log), log)
	// The health endpoint stays served by the process's Alive and the
	// listeners' liveness; the handler-path Alive is not needed for it.
	r.health = r.met.NewHealth(metrics.HealthOptions{
		Alive: r.live.Alive,
		Probe: func(ctx context.Context) error {
			// The health port opens before the backend client exists.
			b := r.probeBackend.Load()
			if b == nil {
				return errors.New("starting")
			}
			return b.Probe(ctx)
		},
		Logger: log,
	})
	// Bind the health port before dropping privileges, like the sockets.
	if addr := env.Section.HealthListen; addr != "" {
		srv, err := metrics.Listen(addr, r.health.Handler())
		if err != nil {
			log.Error("cannot listen for health checks", "err", err)
			closeAll()
			return ExitFailure
		}
		r.healthSrv, r.healthAddr = srv, addr
		log.Info("health endpoint listening", "addr", "http://"+srv.Addr().String())
	}
	defer r.stopHealth()
	if err := dropPrivileges(env.Section.User); err != nil {
		log.Error("cannot drop privileges", "user", env.Section.User, "err", err)
		closeAll()
		return ExitFailure
	}
	backend, err := NewBackend(env.Config, r.met, p.Credentials)
	if err != nil {
		log.Error("cannot build backend client", "err", err)
		closeAll()
		return ExitConfig
	}
	r.backend = backend
	r.probeBackend.Store(backend)
	env.Backend = backend
	srv, err := p.Build(env)
	if err != nil {
		log.Error("cannot build server", "err", err)
		closeAll()
		return ExitFailure
	}

	errc := make(chan error, len(ls))
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- srv.Serve(l)
		}()
		log.Info("listening", "addr", Describe(l.Listener))
	}
	go r.live.run()
	notify(log, "READY=1", "STATUS=serving")
	if r.live.watchdog > 0 {
		log.Debug("systemd watchdog enabled", "interval", r.live.watchdog)
	}

	status := ExitOK
loop:
	for {
		select {
		case sig := <-sigc:
			if sig == syscall.SIGHUP {
				r.reload()
				continue
			}
			log.Info("shutting down", "signal", sig.String())
			break loop
		case err := <-errc:
			// Serve returns on its own only on failure: Shutdown has not
			// been called yet.
			log.Error("serving failed", "err", err)
			status = ExitFailure
			break loop
		}
	}
	r.live.stopping.Store(true)
	notify(log, "STOPPING=1", "STATUS=stopping")
	ctx, cancel := context.WithTimeout(context.Background(), max(shutdownGrace, r.cfg.Timeout.Duration+shutdownMargin))
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("shutdown did not finish in time; closed remaining connections", "err", err)
	}
	// Listeners are closed by Shutdown; close again to be sure our socket
	// files are removed even if Serve never started on one.
	for _, l := range ls {
		l.Close()
	}
	for _, l := range raw {
		if o, ok := l.(*ownedListener); ok {
			if _, err := os.Lstat(o.path); err == nil {
				// Typically: the daemon dropped to User and may not write
				// the socket's directory. Harmless (the next start replaces
				// a stale socket), but say so.
				log.Warn("socket file left behind: no permission to remove it after dropping privileges; the next start replaces it", "path", o.path)
			}
		}
	}
	wg.Wait()
	r.live.stop()
	r.backend.CloseIdle()
	log.Info("stopped")
	return status
}

func (r *runtime) stopHealth() {
	shutdownHealth(r.healthSrv)
	r.healthSrv = nil
}

func shutdownHealth(s *metrics.Server) {
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.Shutdown(ctx)
}

// recorder counts every lookup in m (when set) and logs one debug line
// per lookup and one warning per failure, with the verb and the cause
// only: never the key's data, a password or the backend's reply.
func recorder(log *slog.Logger, m *metrics.Metrics) bridge.Recorder {
	return func(verb string, outcome bridge.Outcome, err error) {
		if m != nil {
			m.Lookup(verb, string(outcome))
		}
		if err != nil {
			args := []any{"msgid", "lookup", "verb", verb, "err", err}
			var re *remote.Error
			if errors.As(err, &re) {
				args = append(args, "kind", string(re.Kind))
				if re.Err != nil {
					// The underlying cause (connection refused, x509
					// error…) is what the operator needs; net/http
					// strips URL passwords from it.
					args = append(args, "cause", re.Err.Error())
				}
			}
			log.Warn("lookup failed", args...)
			return
		}
		log.Debug("lookup", "msgid", "lookup", "verb", verb, "outcome", string(outcome))
	}
}

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
