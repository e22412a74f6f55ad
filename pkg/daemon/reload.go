package daemon

import (
	"fmt"
	"slices"
	"strings"

	"github.com/shitenno/shitenno/pkg/bruteforce"
	"github.com/shitenno/shitenno/pkg/config"
)

// reload re-reads the configuration on SIGHUP and applies what can change
// while serving: backend URLs, timeouts, TLS files and pins, cache, log
// level and target, health address, MaxProcs. The sockets and
// connections stay as they are. A bad configuration changes nothing: it
// is logged, counted, and the old one stays in force.
func (r *runtime) reload() {
	log := r.env.Logger
	notify(log, reloadingState(), "STATUS=reloading")
	defer notify(log, "READY=1", "STATUS=serving")
	log.Info("reloading configuration", "msgid", "reload", "file", r.cfgPath)
	restart, err := r.applyReload()
	r.met.Reload(err)
	if err != nil {
		log.Error("reload failed; keeping the previous configuration", "msgid", "reload", "err", err)
		return
	}
	if len(restart) > 0 {
		log.Warn("changed settings take effect only after a restart", "msgid", "reload", "keys", strings.Join(restart, ","))
	}
	log.Info("configuration reloaded", "msgid", "reload")
}

// applyReload does every step that can fail before changing anything,
// then switches. It returns the changed keys that need a restart.
func (r *runtime) applyReload() ([]string, error) {
	// With the daemon's name, as at start: its section's accounts (UID,
	// GID, User) must exist.
	cfg, err := config.Load(r.cfgPath, r.p.Name)
	if err != nil {
		return nil, err
	}
	name := r.p.Name
	oldSec, sec := r.cfg.Section(name), cfg.Section(name)
	restart := restartKeys(r.p.section(), r.cfg, cfg, oldSec, sec)

	st, err := r.backend.prepare(cfg)
	if err != nil {
		return nil, err
	}
	var newHealth *healthServer
	if sec.HealthListen != r.healthAddr && sec.HealthListen != "" {
		newHealth, err = listenHealth(sec.HealthListen, r.health.Handler(), r.env.Logger)
		if err != nil {
			return nil, fmt.Errorf("%s: [%s] HealthListen: %w", cfg.File, r.p.section(), err)
		}
	}
	if cfg.DevLog != r.out.Target() {
		if err := r.out.Reopen(cfg.DevLog); err != nil {
			newHealth.shutdown()
			return nil, fmt.Errorf("%s: DevLog: %w", cfg.File, err)
		}
	}

	// Nothing can fail from here on.
	_ = r.out.SetLevel(cfg.LogLevel) // validated by config.Load
	r.backend.commit(st)
	if r.env.Limiter != nil {
		r.env.Limiter.SetLimits(bruteforce.FromConfig(cfg.BruteForce)) // counts and blocks stay
	}
	for _, l := range r.limits {
		l.max.Store(int64(sec.MaxConnections))
	}
	if sec.HealthListen != r.healthAddr {
		r.stopHealth()
		r.healthSrv, r.healthAddr = newHealth, sec.HealthListen
		if newHealth != nil {
			r.env.Logger.Info("health endpoint listening", "addr", "http://"+newHealth.addr.String())
		}
	}
	r.cfg = cfg
	r.setMaxProcs(r.env.Logger)
	return restart, nil
}

// restartKeys lists the settings whose change needs a restart: everything
// about the listening sockets and the process's identity.
func restartKeys(section string, old, cfg *config.Config, o, s *config.Service) []string {
	var keys []string
	if old.SocketPath(o) != cfg.SocketPath(s) {
		keys = append(keys, section+".Socket")
	}
	if o.UID != s.UID {
		keys = append(keys, section+".UID")
	}
	if o.GID != s.GID {
		keys = append(keys, section+".GID")
	}
	if o.Mode != s.Mode {
		keys = append(keys, section+".Mode")
	}
	if o.Listen != s.Listen {
		keys = append(keys, section+".Listen")
	}
	if o.User != s.User {
		keys = append(keys, section+".User")
	}
	if section == config.SectionKey("postfix") {
		keys = append(keys, postfixRestartKeys(old, cfg)...)
	}
	return keys
}

// postfixRestartKeys lists the changed settings of shitenno-postfix's
// SMTP AUTH, policy and tcp_table servers, which are built once, at
// start, with their sockets, verbs and replies.
func postfixRestartKeys(old, cfg *config.Config) []string {
	o, n := &old.Postfix, &cfg.Postfix
	var keys []string
	add := func(changed bool, key string) {
		if changed {
			keys = append(keys, "Postfix."+key)
		}
	}
	add(old.ResolveSocket(o.SASLSocket) != cfg.ResolveSocket(n.SASLSocket), "SASLSocket")
	add(o.SASLListen != n.SASLListen, "SASLListen")
	add(!slices.Equal(o.SASLMechanisms, n.SASLMechanisms), "SASLMechanisms")
	add(o.SASLVerb != n.SASLVerb, "SASLVerb")
	add(old.ResolveSocket(o.PolicySocket) != cfg.ResolveSocket(n.PolicySocket), "PolicySocket")
	add(o.PolicyListen != n.PolicyListen, "PolicyListen")
	add(o.PolicyVerb != n.PolicyVerb, "PolicyVerb")
	add(o.PolicyFailAction != n.PolicyFailAction, "PolicyFailAction")
	add(!slices.Equal(o.TCPTable, n.TCPTable), "TCPTable")
	return keys
}
