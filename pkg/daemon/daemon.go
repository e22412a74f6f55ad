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
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/pflag"

	"github.com/shitenno/shitenno/pkg/bridge"
	"github.com/shitenno/shitenno/pkg/config"
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
	// Alive is a watchdog heartbeat to call from the serving path.
	Alive func()
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
}

// Main runs the program and exits.
func Main(p Program) {
	os.Exit(p.Run(os.Args[1:], os.Stdout, os.Stderr))
}

// Run parses args and runs the daemon, returning the exit status.
func (p Program) Run(args []string, stdout, stderr io.Writer) int {
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
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", bin, err)
		return ExitConfig
	}
	sec := cfg.Section(p.Name)
	if *check {
		p.describe(stdout, cfg, sec)
		if _, err := NewBackend(cfg, nil); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", bin, err)
			return ExitConfig
		}
		return ExitOK
	}
	logger, closeLog, err := NewLogger(cfg, bin, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", bin, err)
		return ExitConfig
	}
	defer closeLog()
	env := &Env{
		Config: cfg, Section: sec, Logger: logger, Stdout: stdout, Stderr: stderr,
		Alive: func() {}, ConnState: func(int) {}, Record: lookupLogger(logger),
	}
	if len(rest) > 0 {
		backend, err := NewBackend(cfg, nil)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", bin, err)
			return ExitConfig
		}
		env.Backend = backend
		return p.Query(context.Background(), env, rest[1:])
	}
	return p.serve(env)
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
	for _, u := range cfg.RemoteURL {
		fmt.Fprintf(w, "backend: POST %s<Verb> (timeout %s)\n", u, cfg.Timeout.Duration)
	}
}

// Backend is the backend client with the TLS setup it uses, kept so that
// a reload can re-read the client certificate.
type Backend struct {
	*remote.Client
	TLS *remote.TLSSetup
}

// NewBackend makes the backend client from the configuration: TLS (CA
// pool, client certificate, SNI, pins, OCSP), reply cache and failover.
func NewBackend(cfg *config.Config, obs remote.Observer) (*Backend, error) {
	ts, err := remote.NewTLS(remote.TLSOptions{
		CertPool:       cfg.CertPool,
		SystemCertPool: cfg.SystemCertPool,
		ClientCert:     cfg.ClientCert,
		ClientKey:      cfg.ClientKey,
		ServerName:     cfg.ServerName,
		HPKP:           cfg.HPKP,
		OCSP:           cfg.OCSP,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.File, err)
	}
	c, err := remote.New(remote.Options{
		URLs:            cfg.RemoteURL,
		Timeout:         cfg.Timeout.Duration,
		MaxReplySize:    cfg.MaxReplySize,
		FailoverBackoff: cfg.FailoverBackoff.Duration,
		TLS:             ts.Config(),
		Cache:           remote.NewCache(cfg.Cache.MaxEntries, cfg.Cache.DefaultTTL.Duration, cfg.Cache.NegativeTTL.Duration),
		Observer:        obs,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.File, err)
	}
	return &Backend{Client: c, TLS: ts}, nil
}

// NewLogger builds the process logger from DevLog and LogLevel.
func NewLogger(cfg *config.Config, app string, stderr io.Writer) (*slog.Logger, func(), error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, nil, err
	}
	h := slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})
	return slog.New(h).With("app", app), func() {}, nil
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

func (p Program) section() string {
	switch p.Name {
	case "postfix":
		return "Postfix"
	case "dovecot":
		return "Dovecot"
	}
	return "Nginx"
}

func (p Program) serve(env *Env) int {
	log := env.Logger
	raiseFileLimit(log)
	ls, err := p.listeners(env)
	if err != nil {
		log.Error("cannot listen", "err", err)
		return ExitFailure
	}
	if err := dropPrivileges(env.Section.User); err != nil {
		log.Error("cannot drop privileges", "user", env.Section.User, "err", err)
		for _, l := range ls {
			l.Close()
		}
		return ExitFailure
	}
	backend, err := NewBackend(env.Config, nil)
	if err != nil {
		log.Error("cannot build backend client", "err", err)
		return ExitConfig
	}
	env.Backend = backend
	srv, err := p.Build(env)
	if err != nil {
		log.Error("cannot build server", "err", err)
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
		log.Info("listening", "addr", Describe(l))
	}
	notify("READY=1\nSTATUS=serving")

	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigc)
	status := ExitOK
loop:
	for {
		select {
		case sig := <-sigc:
			if sig == syscall.SIGHUP {
				log.Info("SIGHUP: reload is not supported yet; ignoring")
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
	notify("STOPPING=1")
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("shutdown did not finish in time; closed remaining connections", "err", err)
	}
	// Listeners are closed by Shutdown; close again to be sure our socket
	// files are removed even if Serve never started on one.
	for _, l := range ls {
		l.Close()
	}
	wg.Wait()
	backend.CloseIdle()
	log.Info("stopped")
	return status
}

// lookupLogger logs one debug line per lookup and one warning per failure,
// with the verb and the failure's cause only: never the key's data, a
// password or the backend's reply.
func lookupLogger(log *slog.Logger) bridge.Recorder {
	return func(verb string, outcome bridge.Outcome, err error) {
		if err != nil {
			log.Warn("lookup failed", "verb", verb, "err", err)
			return
		}
		log.Debug("lookup", "verb", verb, "outcome", string(outcome))
	}
}

// notify tells systemd about state changes; a no-op without NOTIFY_SOCKET.
func notify(state string) {
	_, _ = daemon.SdNotify(false, state)
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
