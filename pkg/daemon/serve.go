package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shitenno/shitenno/pkg/bridge"
	"github.com/shitenno/shitenno/pkg/config"
	"github.com/shitenno/shitenno/pkg/logging"
	"github.com/shitenno/shitenno/pkg/metrics"
	"github.com/shitenno/shitenno/pkg/remote"
)

// runtime is the state of a serving daemon that a reload may change.
type runtime struct {
	p       Program
	env     *Env
	out     *logging.Output
	cfgPath string
	// process: this daemon is the whole process (not a test's), so it
	// may change process-wide settings (MaxProcs).
	process bool

	cfg     *config.Config // the configuration in force
	met     *metrics.Metrics
	backend *Backend
	// probeBackend is backend for the health handler's goroutines.
	probeBackend atomic.Pointer[Backend]
	health       *metrics.Health
	healthSrv    *healthServer
	healthAddr   string
	live         *liveness

	eps     []Endpoint
	raw     [][]net.Listener // per endpoint, as opened
	limits  []*connLimit     // per endpoint: MaxConnections
	probes  [][]*probeListener
	servers []Server
	wg      sync.WaitGroup
	// ctl is the control socket systemd passed (shitenno-NAME-control.socket).
	ctl []net.Listener
}

// serve runs the daemon until a signal or a serving failure: the steps
// below, in the order privileges require (sockets and the health port
// are bound as root, the backend client is built as User).
func (p Program) serve(r *runtime, sigc <-chan os.Signal) int {
	log := r.env.Logger
	r.cfg = r.env.Config
	r.setMaxProcs(log)
	raiseFileLimit(log)
	r.startMetrics()
	if err := r.listen(); err != nil {
		r.fatal("cannot listen", err)
		if errors.As(err, new(*mismatchError)) || errors.As(err, new(*config.Error)) {
			return ExitConfig
		}
		return ExitFailure
	}
	if r.p.Logins {
		defer r.startControl()()
	}
	if err := r.startHealth(); err != nil {
		r.fatal("cannot listen for health checks", err)
		r.closeListeners()
		return ExitFailure
	}
	defer r.stopHealth()
	if err := dropPrivileges(r.env.Section.User); err != nil {
		r.fatal("cannot drop privileges", err, "user", r.env.Section.User)
		r.closeListeners()
		return ExitFailure
	}
	if code := r.buildServers(); code != ExitOK {
		r.closeListeners()
		return code
	}
	errc := r.startServing()
	status := r.signalLoop(sigc, errc)
	r.shutdown()
	return status
}

// fatal logs why the daemon exits and, when the log goes elsewhere,
// prints it on stderr too: a DevLog nobody listens on, or a syslog
// daemon that is down, must not hide why (the service manager keeps
// stderr).
func (r *runtime) fatal(msg string, err error, args ...any) {
	r.env.Logger.Error(msg, append([]any{"err", err}, args...)...)
	if r.cfg.DevLog == config.DefaultDevLog {
		return
	}
	for _, line := range strings.Split(msg+": "+err.Error(), "\n") {
		fmt.Fprintf(r.env.Stderr, "shitenno-%s: %s\n", r.p.Name, line)
	}
}

// startControl serves the brute-force control socket: systemd's (under
// systemd the daemon never runs as root and cannot create a root-owned
// socket itself), else one bound now, before the privilege drop. It
// returns the function that closes it.
func (r *runtime) startControl() func() {
	ls := r.ctl
	if len(ls) == 0 {
		l, err := listenControl(controlSocket(r.env.Config, r.p.Name))
		if err != nil {
			// Brute-force protection works without it; only the CLI
			// cannot reach the daemon.
			r.env.Logger.Warn("no brute-force control socket", "err", err)
			return func() {}
		}
		ls = []net.Listener{l}
	}
	for _, l := range ls {
		go r.serveControl(l)
	}
	return func() { closeListeners(ls) }
}

// startMetrics creates the metrics and the per-lookup recorder.
func (r *runtime) startMetrics() {
	r.met = metrics.New(r.p.Name, Version)
	_ = r.met.RegisterCounterFunc("log_records_dropped_total",
		"Log records lost because the log receiver was slow or unreachable.",
		func() float64 { return float64(r.out.Stats().Dropped) })
	r.env.ConnState = r.met.ConnDelta
	r.env.Record = recorder(r.env.Logger, r.met, primaryKinds[r.p.Name])
	if r.p.Logins {
		r.startLimiter()
	}
}

// listen opens every endpoint's sockets and wraps them for the watchdog.
func (r *runtime) listen() error {
	act, err := takeActivated()
	if err != nil {
		return err
	}
	act, r.ctl = act.takeControl()
	eps, raw, err := r.p.listenAll(r.env.Config, act)
	if err != nil {
		return err
	}
	r.eps, r.raw = eps, raw
	var all []*probeListener
	r.probes = make([][]*probeListener, len(raw))
	r.limits = make([]*connLimit, len(raw))
	for i, ls := range raw {
		r.limits[i] = newConnLimit(eps[i].Name, r.env.Section.MaxConnections, r.met.ConnRefused, r.env.Logger)
		for _, l := range ls {
			pl := newProbeListener(limitListener{Listener: l, lim: r.limits[i]}, time.Now)
			r.probes[i] = append(r.probes[i], pl)
			all = append(all, pl)
		}
	}
	r.live = newLiveness(all, watchdogInterval(r.env.Logger), r.env.Logger)
	return nil
}

func (r *runtime) closeListeners() {
	for _, ls := range r.raw {
		closeListeners(ls)
	}
}

// startHealth binds the health port (before the privilege drop, like the
// sockets); /healthz follows the listeners' liveness and the backend.
func (r *runtime) startHealth() error {
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
		Logger: r.env.Logger,
	})
	addr := r.env.Section.HealthListen
	if addr == "" {
		return nil
	}
	srv, err := listenHealth(addr, r.health.Handler(), r.env.Logger)
	if err != nil {
		return err
	}
	r.healthSrv, r.healthAddr = srv, addr
	r.env.Logger.Info("health endpoint listening", "addr", "http://"+srv.addr.String())
	return nil
}

// buildServers makes the backend client and one server per endpoint.
func (r *runtime) buildServers() int {
	env, log := r.env, r.env.Logger
	backend, err := NewBackend(env.Config, r.met, r.p.Credentials)
	if err != nil {
		r.fatal("cannot build backend client", err)
		return ExitConfig
	}
	r.backend = backend
	r.probeBackend.Store(backend)
	env.Backend = backend
	for _, e := range r.eps {
		// Each listener's lookups are counted under its kind.
		eenv := *env
		eenv.Record = recorder(log, r.met, e.Name)
		eenv.Backend = backend.forListener(r.met.LookupDuration(e.Name))
		srv, err := e.Build(&eenv)
		if err != nil {
			r.fatal("cannot build server", err, "listener", e.Name)
			return ExitFailure
		}
		r.servers = append(r.servers, srv)
	}
	return ExitOK
}

// startServing serves every listener in its own goroutine; the channel
// receives the error of a serve loop that ended on its own.
func (r *runtime) startServing() <-chan error {
	log := r.env.Logger
	n := 0
	for _, ps := range r.probes {
		n += len(ps)
	}
	errc := make(chan error, n)
	for i, ps := range r.probes {
		for _, l := range ps {
			srv := r.servers[i]
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				errc <- srv.Serve(l)
			}()
			log.Info("listening", "listener", r.eps[i].Name, "addr", describeListener(l.Listener))
		}
	}
	go r.live.run()
	notify(log, "READY=1", "STATUS=serving")
	if r.live.watchdog > 0 {
		log.Debug("systemd watchdog enabled", "interval", r.live.watchdog)
	}
	return errc
}

// signalLoop reloads on SIGHUP and returns the exit status on SIGTERM or
// SIGINT, or when a serve loop fails.
func (r *runtime) signalLoop(sigc <-chan os.Signal, errc <-chan error) int {
	log := r.env.Logger
	for {
		select {
		case sig := <-sigc:
			if sig == syscall.SIGHUP {
				r.reload()
				continue
			}
			log.Info("shutting down", "signal", sig.String())
			return ExitOK
		case err := <-errc:
			// Serve returns on its own only on failure: Shutdown has not
			// been called yet.
			r.fatal("serving failed", err)
			return ExitFailure
		}
	}
}

// shutdown lets every server finish what is in flight within the grace
// period, then removes the socket files.
func (r *runtime) shutdown() {
	log := r.env.Logger
	r.live.stopping.Store(true)
	notify(log, "STOPPING=1", "STATUS=stopping")
	ctx, cancel := context.WithTimeout(context.Background(), max(shutdownGrace, r.cfg.Timeout.Duration+shutdownMargin))
	defer cancel()
	var sw sync.WaitGroup
	for i, srv := range r.servers {
		sw.Add(1)
		go func() {
			defer sw.Done()
			if err := srv.Shutdown(ctx); err != nil {
				log.Warn("shutdown did not finish in time; closed remaining connections", "listener", r.eps[i].Name, "err", err)
			}
		}()
	}
	sw.Wait()
	// Listeners are closed by Shutdown; close again to be sure our socket
	// files are removed even if Serve never started on one.
	for _, ps := range r.probes {
		for _, l := range ps {
			l.Close()
		}
	}
	for _, ls := range r.raw {
		for _, l := range ls {
			if o, ok := l.(*ownedListener); ok {
				if _, err := os.Lstat(o.path); !errors.Is(err, os.ErrNotExist) {
					// Typically: the daemon dropped to User and may not
					// write the socket's directory, or not even look
					// into it (postfix's private/, mode 0700). Harmless
					// (the next start replaces a stale socket), but say so.
					log.Warn("socket file left behind: no permission to remove it after dropping privileges; the next start replaces it", "path", o.path)
				}
			}
		}
	}
	r.wg.Wait()
	r.live.stop()
	r.backend.CloseIdle()
	log.Info("stopped")
}

func (r *runtime) stopHealth() {
	r.healthSrv.shutdown()
	r.healthSrv = nil
}

// healthServer is the health endpoint serving on its own port.
type healthServer struct {
	srv  *metrics.Server
	addr net.Addr
	done chan struct{} // closed when Serve has returned
}

// listenHealth binds addr before returning, so that a taken port is a
// start-up (or reload) error, and serves h on it in the background.
func listenHealth(addr string, h http.Handler, log *slog.Logger) (*healthServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen %s: %w", addr, err)
	}
	hs := &healthServer{srv: metrics.NewServer(h), addr: ln.Addr(), done: make(chan struct{})}
	go func() {
		defer close(hs.done)
		if err := hs.srv.Serve(ln); !errors.Is(err, metrics.ErrServerClosed) {
			log.Error("health endpoint stopped", "err", err)
		}
	}()
	return hs, nil
}

// shutdown lets the requests in flight finish (for 2 s at most) and waits
// for Serve to return; a nil h does nothing.
func (h *healthServer) shutdown() {
	if h == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = h.srv.Shutdown(ctx)
	<-h.done
}

// recorder counts every lookup in m (when set) and logs one debug line
// per lookup and one warning per failure, with the verb and the cause
// only: never the key's data, a password or the backend's reply.
func recorder(log *slog.Logger, m *metrics.Metrics, listener string) bridge.Recorder {
	return func(verb string, outcome bridge.Outcome, err error) {
		if m != nil {
			m.Lookup(listener, verb, string(outcome))
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
		// Asked first: the arguments would be boxed on every lookup even
		// when debug records are dropped.
		if log.Enabled(context.Background(), slog.LevelDebug) {
			log.Debug("lookup", "msgid", "lookup", "verb", verb, "outcome", string(outcome))
		}
	}
}
