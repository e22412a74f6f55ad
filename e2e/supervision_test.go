package e2e

// Supervision: the systemd units verified by systemd itself, each daemon
// socket-activated with named fds, the three daemons under runit with
// crash isolation shown, the upstart jobs' syntax, and make install.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shitenno/shitenno/pkg/config"
)

// supUnitCopies copies the units of the given protocols into a temporary
// directory with ExecStart pointing at the built binaries (systemd-analyze
// verify checks that ExecStart is executable) and returns their paths.
func supUnitCopies(t *testing.T, protos []string, sbin func(proto string) string) []string {
	t.Helper()
	dir := t.TempDir()
	var files []string
	for _, p := range protos {
		for _, name := range supUnitNames(p) {
			b, err := os.ReadFile(filepath.Join(repoRoot(t), "init/systemd", name))
			if err != nil {
				t.Fatal(err)
			}
			text := string(b)
			if strings.HasSuffix(name, ".service") {
				text = supRewrite(t, name, text, "/usr/local/sbin/shitenno-"+p+" ", sbin(p)+" ")
			}
			// systemd-analyze verify cannot load a template itself: check
			// the instance an administrator would enable.
			name = strings.Replace(name, "@.socket", "@10041.socket", 1)
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			files = append(files, path)
		}
	}
	return files
}

// supVerify runs systemd-analyze verify and fails on any output at all:
// systemd reports unknown keys and bad values as warnings with exit 0.
func supVerify(t *testing.T, files []string) {
	t.Helper()
	analyze := requireTool(t, "systemd-analyze")
	stdout, stderr, code := run(t, time.Minute, analyze, append([]string{"verify"}, files...)...)
	if code != 0 || strings.TrimSpace(stdout+stderr) != "" {
		t.Errorf("systemd-analyze verify: exit %d\n%s%s", code, stdout, stderr)
	}
}

func TestSystemdUnitsVerify(t *testing.T) {
	protos := supAvailable(t)
	files := supUnitCopies(t, protos, func(p string) string { return binary(t, "shitenno-"+p) })
	supVerify(t, files)

	// The hardening must keep systemd's own exposure score "OK" (≤ 2.0).
	analyze := requireTool(t, "systemd-analyze")
	for _, f := range files {
		if !strings.HasSuffix(f, ".service") {
			continue
		}
		out, errOut, code := run(t, time.Minute, analyze, "security", "--offline=true", "--threshold=20", "--no-pager", f)
		if code != 0 {
			t.Errorf("systemd-analyze security %s: exit %d (exposure above 2.0?)\n%s%s", filepath.Base(f), code, out, errOut)
		}
	}

	// Verification proves the test can fail: a misspelt key is only a
	// warning to systemd, and the test must still see it.
	broken := filepath.Join(t.TempDir(), "shitenno-broken.service")
	if err := os.WriteFile(broken, []byte("[Service]\nType=notify\nExecStart=/bin/true\nWatchdogSecs=30s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, _ := run(t, time.Minute, analyze, "verify", broken)
	if !strings.Contains(out+errOut, "WatchdogSecs") {
		t.Errorf("systemd-analyze verify did not report an unknown key: %q", out+errOut)
	}
}

// TestSystemdUnitsContent checks what systemd cannot: the units agree with
// the default configuration and with who connects to each socket.
func TestSystemdUnitsContent(t *testing.T) {
	cfg, err := config.Load(filepath.Join(repoRoot(t), "conf/shitenno.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range supProtocols {
		sock := supParseUnit(t, filepath.Join(repoRoot(t), "init/systemd/shitenno-"+p+".socket"))
		svc := supParseUnit(t, filepath.Join(repoRoot(t), "init/systemd/shitenno-"+p+".service"))
		want := map[string]map[string]string{
			"Socket": {
				"ListenStream":       cfg.SocketPath(cfg.Section(p)),
				"FileDescriptorName": supFDNames[p],
				"SocketUser":         supOwners[p][0],
				"SocketGroup":        supOwners[p][1],
				"SocketMode":         "0660",
				"RemoveOnStop":       "yes",
			},
		}
		wantSvc := map[string]map[string]string{
			"Unit": {
				"Requires": "shitenno-" + p + ".socket",
			},
			"Service": {
				"Type":                     "notify",
				"ExecStart":                "/usr/local/sbin/shitenno-" + p + " --config " + config.DefaultPath,
				"ExecReload":               "/bin/kill -HUP $MAINPID",
				"Restart":                  "on-failure",
				"RestartPreventExitStatus": "2",
				"WatchdogSec":              "30s",
				"User":                     "shitenno",
				"NoNewPrivileges":          "yes",
				"ProtectSystem":            "strict",
				"ProtectHome":              "yes",
				"PrivateTmp":               "yes",
				"PrivateDevices":           "yes",
				"RestrictAddressFamilies":  "AF_UNIX AF_INET AF_INET6",
				"CapabilityBoundingSet":    "",
				"AmbientCapabilities":      "",
			},
			"Install": {
				"Also": "shitenno-" + p + ".socket",
			},
		}
		check := func(name string, u supUnit, want map[string]map[string]string) {
			for sec, kv := range want {
				for k, v := range kv {
					got, ok := u.Get(sec, k)
					if !ok || got != v {
						t.Errorf("%s [%s] %s = %q (set %v), want %q", name, sec, k, got, ok, v)
					}
				}
			}
		}
		check("shitenno-"+p+".socket", sock, want)
		check("shitenno-"+p+".service", svc, wantSvc)
		if f, _ := svc.Get("Service", "SystemCallFilter"); !strings.Contains(strings.Join(svc["Service"]["SystemCallFilter"], " "), "@system-service") {
			t.Errorf("shitenno-%s.service: SystemCallFilter %q lacks @system-service", p, f)
		}
		// A RuntimeDirectory would be removed, socket and all, whenever
		// the service stops, breaking activation until the socket unit
		// is restarted: the socket unit alone owns the node.
		if _, ok := svc.Get("Service", "RuntimeDirectory"); ok {
			t.Errorf("shitenno-%s.service sets RuntimeDirectory", p)
		}
	}
}

// TestSystemdOptionalPostfixUnits: the SASL, policy and tcp_table socket
// units put their sockets where postfix's chrooted smtpd (and tcp_table
// clients) look, owned as smtpd needs, and hand them to the one
// shitenno-postfix service.
func TestSystemdOptionalPostfixUnits(t *testing.T) {
	want := map[string]map[string]string{
		"shitenno-postfix-sasl.socket": {
			"ListenStream":       "/var/spool/postfix/private/shitenno-auth",
			"FileDescriptorName": "sasl",
			"SocketUser":         "postfix",
			"SocketGroup":        "postfix",
			"SocketMode":         "0660",
		},
		"shitenno-postfix-policy.socket": {
			"ListenStream":       "/var/spool/postfix/private/shitenno-policy",
			"FileDescriptorName": "policy",
			"SocketUser":         "postfix",
			"SocketGroup":        "postfix",
			"SocketMode":         "0660",
		},
		"shitenno-postfix-tcptable@.socket": {
			"ListenStream":       "127.0.0.1:%i",
			"FileDescriptorName": "tcptable",
		},
	}
	if len(want) != len(supPostfixExtraUnits) {
		t.Fatalf("supPostfixExtraUnits %v and this test disagree", supPostfixExtraUnits)
	}
	for _, name := range supPostfixExtraUnits {
		u := supParseUnit(t, filepath.Join(repoRoot(t), "init/systemd", name))
		kv := want[name]
		kv["Service"] = "shitenno-postfix.service"
		kv["Backlog"] = "1024"
		for k, v := range kv {
			if got, ok := u.Get("Socket", k); !ok || got != v {
				t.Errorf("%s [Socket] %s = %q (set %v), want %q", name, k, got, ok, v)
			}
		}
		if got, _ := u.Get("Install", "WantedBy"); got != "sockets.target" {
			t.Errorf("%s [Install] WantedBy = %q", name, got)
		}
		// postfix's private directory must never be created by systemd
		// (it would be root's, mode 0755).
		if strings.HasPrefix(kv["ListenStream"], "/var/spool/postfix/private/") {
			if got, _ := u.Get("Unit", "AssertPathIsDirectory"); got != "/var/spool/postfix/private" {
				t.Errorf("%s: AssertPathIsDirectory = %q", name, got)
			}
			if _, ok := u.Get("Socket", "DirectoryMode"); ok {
				t.Errorf("%s sets DirectoryMode", name)
			}
		}
	}
}

// TestSocketActivation starts each daemon as systemd would, with the
// listening socket passed as fd 3 and named by LISTEN_FDNAMES, and does a
// real lookup through it. The daemon must leave the node alone (no
// unlink, chmod or chown, even at exit or on reload), ignore its
// configured Socket, and speak Type=notify: READY=1, WATCHDOG=1 pings when
// WATCHDOG_USEC is set, RELOADING=1 then READY=1 on SIGHUP (ExecReload).
func TestSocketActivation(t *testing.T) {
	activate := requireTool(t, "systemd-socket-activate")
	protos := supAvailable(t)
	backend := exampleBackend(t, "--quiet")
	type tc struct{ proto, fdname string }
	var cases []tc
	for _, p := range protos {
		cases = append(cases, tc{p, supFDNames[p]})
		if supFDNames[p] != p {
			// The name the first units used.
			cases = append(cases, tc{p, p})
		}
		// systemd's default name when FileDescriptorName= is not set.
		cases = append(cases, tc{p, "shitenno-" + p + ".socket"})
	}
	for _, c := range cases {
		t.Run(c.proto+"/"+c.fdname, func(t *testing.T) {
			dir := testDir(t)
			// The configured socket has another path and mode: neither may
			// be used under activation.
			conf := daemonConfig(t, dir, c.proto, backend, "", "")
			ownSock := filepath.Join(dir, "shitenno-"+c.proto)
			sock := filepath.Join(dir, "activated.sock")
			notify := supNotifyListener(t, filepath.Join(dir, "notify"))
			// systemd-socket-activate execs the daemon on the first
			// connection (one pid throughout, so LISTEN_PID matches) with
			// a minimal environment: -E passes NOTIFY_SOCKET.
			p := start(t, activate, "-l", sock, "--fdname="+c.fdname,
				"-E", "NOTIFY_SOCKET="+filepath.Join(dir, "notify"),
				// WatchdogSec=30s in the unit; 1 s here to see pings.
				"-E", "WATCHDOG_USEC=1000000",
				binary(t, "shitenno-"+c.proto), "--config", conf)
			waitActivation(t, p, sock)
			// A mode nobody would choose, so that any chmod shows.
			if err := os.Chmod(sock, 0o604); err != nil {
				t.Fatal(err)
			}
			before := supStat(sock)

			for i := 0; i < 3; i++ {
				if err := supLookup(c.proto, sock); err != nil {
					t.Fatalf("lookup %d through the activated socket: %v\noutput:\n%s", i, err, p.Output.String())
				}
			}
			notify.waitFor(t, "READY=1")
			// Type=notify + WatchdogSec: pings at half the interval.
			notify.waitFor(t, "WATCHDOG=1")
			notify.waitFor(t, "WATCHDOG=1")
			// ExecReload=/bin/kill -HUP $MAINPID: RELOADING=1, then
			// READY=1 again, on the same socket.
			if err := p.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			notify.waitFor(t, "RELOADING=1")
			notify.waitFor(t, "READY=1")
			if err := supLookup(c.proto, sock); err != nil {
				t.Errorf("lookup after SIGHUP: %v", err)
			}
			if got := supStat(sock); got != before {
				t.Errorf("activated socket changed while serving: %+v, was %+v", got, before)
			}
			if st := supStat(ownSock); st.Exists {
				t.Errorf("configured socket %s was created under activation", ownSock)
			}
			if err := p.Stop(syscall.SIGTERM, 15*time.Second); err != nil {
				t.Errorf("exit after SIGTERM: %v\noutput:\n%s", err, p.Output.String())
			}
			if got := supStat(sock); got != before {
				t.Errorf("activated socket changed by the daemon's exit (unlinked or chmod-ed): %+v, was %+v", got, before)
			}
			if !strings.Contains(p.Output.String(), "Execing") {
				t.Errorf("systemd-socket-activate did not exec the daemon:\n%s", p.Output.String())
			}
		})
	}
}

// supRunitDirs copies init/runit/shitenno-<proto> into svc with the
// installed paths replaced by the test's: binary, configuration, log
// directory, and the log user (nobody: the shitenno account does not exist
// on a test machine). Everything else runs unchanged.
func supRunitDirs(t *testing.T, svc, logs, conf string, protos []string) {
	t.Helper()
	for _, p := range protos {
		src := filepath.Join(repoRoot(t), "init/runit/shitenno-"+p)
		dst := filepath.Join(svc, "shitenno-"+p)
		if err := os.MkdirAll(filepath.Join(dst, "log"), 0o755); err != nil {
			t.Fatal(err)
		}
		rewrites := map[string][]string{
			"run": {"/usr/local/sbin/shitenno-" + p + " ", binary(t, "shitenno-"+p) + " ",
				config.DefaultPath, conf},
			"log/run": {"/var/log/shitenno-" + p, filepath.Join(logs, "shitenno-"+p),
				"chown shitenno ", "chown nobody ", "chpst -u shitenno ", "chpst -u nobody "},
			"finish": nil,
		}
		for f, rw := range rewrites {
			b, err := os.ReadFile(filepath.Join(src, f))
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(filepath.Join(src, f))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm()&0o111 != 0o111 {
				t.Errorf("%s/%s is not executable (mode %v)", src, f, fi.Mode())
			}
			text := supRewrite(t, src+"/"+f, string(b), rw...)
			for _, installed := range []string{"/usr/local/", "/etc/shitenno", "/var/log", " shitenno "} {
				if strings.Contains(text, installed) {
					t.Fatalf("%s/%s: %q left after the test's rewrites", src, f, installed)
				}
			}
			if err := os.WriteFile(filepath.Join(dst, f), []byte(text), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// supRunsvdir starts runsvdir on svc and, at cleanup, stops every runsv
// and service it started: SIGHUP makes runsvdir send TERM to each runsv,
// which stops its service and log service and exits.
func supRunsvdir(t *testing.T, svc string) {
	t.Helper()
	p := start(t, requireTool(t, "runsvdir"), svc)
	t.Cleanup(func() {
		var pids []int
		entries, _ := os.ReadDir(svc)
		for _, e := range entries {
			for _, d := range []string{filepath.Join(svc, e.Name()), filepath.Join(svc, e.Name(), "log")} {
				if pid := supPidFile(d); pid > 0 {
					pids = append(pids, pid)
				}
			}
		}
		_ = p.Cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(20 * time.Second)
		for _, pid := range pids {
			for supAlive(pid) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if supAlive(pid) {
				t.Errorf("pid %d still running after runsv was stopped; killing it", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

// TestRunitCrashIsolation runs the three daemons under runsvdir with the
// shipped service directories, then SIGKILLs each daemon in turn: the
// other two answer every lookup while it is down, runsv restarts it, and
// it answers again.
func TestRunitCrashIsolation(t *testing.T) {
	protos := supAvailable(t)
	requireTool(t, "runsv")
	requireTool(t, "svlogd")
	requireTool(t, "chpst")
	requireTool(t, "sv")
	backend := exampleBackend(t, "--quiet")
	dir := testDir(t)
	runDir := filepath.Join(dir, "run")
	svc := filepath.Join(dir, "service")
	logs := filepath.Join(dir, "log")
	for _, d := range []string{runDir, svc, logs} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// The shipped run scripts start the daemon as root: it creates its
	// socket with the owner its peer needs, then drops to User.
	var conf strings.Builder
	fmt.Fprintf(&conf, "RemoteURL = %q\nSocketPrefix = %q\nTimeout = \"2s\"\n", backend, filepath.Join(runDir, "shitenno"))
	type owner struct {
		uid, gid uint32
		checked  bool
	}
	owners := map[string]owner{}
	for _, p := range protos {
		o := supOwners[p]
		uid, gid, ok := supIDs(o[0], o[1])
		if !ok {
			if inCI() {
				t.Fatalf("user %s or group %s missing: CI installs postfix, dovecot and nginx", o[0], o[1])
			}
			t.Logf("%s: %s:%s missing here; socket owner not checked", p, o[0], o[1])
			o = [2]string{"root", "root"}
		}
		owners[p] = owner{uid, gid, ok}
		fmt.Fprintf(&conf, "[%s]\nUID = %q\nGID = %q\nMode = \"0660\"\nUser = \"nobody\"\n", supSection(p), o[0], o[1])
	}
	confPath := filepath.Join(dir, "shitenno.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	supRunitDirs(t, svc, logs, confPath, protos)
	supRunsvdir(t, svc)

	sock := func(p string) string { return filepath.Join(runDir, "shitenno-"+p) }
	svdir := func(p string) string { return filepath.Join(svc, "shitenno-"+p) }
	for _, p := range protos {
		waitFor(t, 15*time.Second, p+" answering under runsv", func() bool { return supLookup(p, sock(p)) == nil })
		pid := supPidFile(svdir(p))
		if uid, err := supProcUID(pid); err != nil || uid != 65534 {
			t.Errorf("%s (pid %d) runs as uid %d (%v), want nobody after the drop", p, pid, uid, err)
		}
		st := supStat(sock(p))
		if o := owners[p]; o.checked && (st.UID != o.uid || st.GID != o.gid || st.Mode != 0o660) {
			t.Errorf("%s socket owner %d:%d mode %o, want %d:%d 0660", p, st.UID, st.GID, st.Mode, o.uid, o.gid)
		}
	}

	for _, victim := range protos {
		t.Run("kill-"+victim, func(t *testing.T) {
			pids := map[string]int{}
			for _, p := range protos {
				pids[p] = supPidFile(svdir(p))
				if pids[p] <= 0 {
					t.Fatalf("no pid for %s", p)
				}
			}
			var (
				stop     atomic.Bool
				killedAt atomic.Int64 // unix nanos; 0 before the kill
				backAt   atomic.Int64 // unix nanos the victim answered again
				wg       sync.WaitGroup
				mu       sync.Mutex
				ok       = map[string]int{} // lookups that succeeded
				inWindow = map[string]int{} // of which started while the victim was down
				failures = map[string][]string{}
			)
			for _, p := range protos {
				if p == victim {
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for !stop.Load() {
						began := time.Now().UnixNano()
						err := supLookup(p, sock(p))
						k, b := killedAt.Load(), backAt.Load()
						mu.Lock()
						if err != nil {
							failures[p] = append(failures[p], err.Error())
						} else {
							ok[p]++
							if k != 0 && began >= k && (b == 0 || began <= b) {
								inWindow[p]++
							}
						}
						mu.Unlock()
					}
				}()
			}
			// Let the others run before the kill, too.
			time.Sleep(200 * time.Millisecond)
			killedAt.Store(time.Now().UnixNano())
			if err := syscall.Kill(pids[victim], syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			var victimFailures int
			deadline := time.Now().Add(20 * time.Second)
			for {
				if np := supPidFile(svdir(victim)); np > 0 && np != pids[victim] {
					if supLookup(victim, sock(victim)) == nil {
						backAt.Store(time.Now().UnixNano())
						break
					}
				}
				victimFailures++
				if time.Now().After(deadline) {
					stop.Store(true)
					wg.Wait()
					t.Fatalf("%s was not restarted by runsv within 20 s", victim)
				}
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond)
			stop.Store(true)
			wg.Wait()
			down := time.Duration(backAt.Load() - killedAt.Load())
			t.Logf("%s down for %v (%d polls before it answered again); others: ok %v, during the outage %v",
				victim, down.Round(time.Millisecond), victimFailures, ok, inWindow)
			for _, p := range protos {
				if p == victim {
					continue
				}
				if len(failures[p]) > 0 {
					t.Errorf("%s failed %d lookups while %s was killed: %v", p, len(failures[p]), victim, failures[p][0])
				}
				if ok[p] < 10 || inWindow[p] == 0 {
					t.Errorf("%s: only %d lookups (%d during the outage): the window was not exercised", p, ok[p], inWindow[p])
				}
				if np := supPidFile(svdir(p)); np != pids[p] {
					t.Errorf("%s was restarted too (pid %d → %d)", p, pids[p], np)
				}
			}
			// finish logged the kill through log/run and svlogd.
			current := filepath.Join(logs, "shitenno-"+victim, "current")
			waitFor(t, 5*time.Second, "finish's line in "+current, func() bool {
				b, _ := os.ReadFile(current)
				return strings.Contains(string(b), "shitenno-"+victim+": killed by signal 9; restarting")
			})
		})
	}
	// Every daemon's own log reached svlogd with timestamps.
	for _, p := range protos {
		b, err := os.ReadFile(filepath.Join(logs, "shitenno-"+p, "current"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "msg=listening") {
			t.Errorf("%s log has no listening line:\n%s", p, b)
		}
	}
}

// TestRunitConfigErrorStaysDown: a configuration error (exit 2) must not
// become a restart loop; finish takes the service down and says why.
func TestRunitConfigErrorStaysDown(t *testing.T) {
	protos := supAvailable(t)
	requireTool(t, "runsv")
	sv := requireTool(t, "sv")
	dir := testDir(t)
	svc := filepath.Join(dir, "service")
	logs := filepath.Join(dir, "log")
	for _, d := range []string{svc, logs} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := protos[0]
	supRunitDirs(t, svc, logs, filepath.Join(dir, "missing.conf"), []string{p})
	supRunsvdir(t, svc)
	svdir := filepath.Join(svc, "shitenno-"+p)
	current := filepath.Join(logs, "shitenno-"+p, "current")
	msg := "shitenno-" + p + ": configuration error (exit 2); not restarting"
	waitFor(t, 15*time.Second, "finish's message in "+current, func() bool {
		b, _ := os.ReadFile(current)
		return strings.Contains(string(b), msg)
	})
	// Long enough for several restarts, had runsv been allowed to.
	time.Sleep(2500 * time.Millisecond)
	out, _, _ := run(t, 10*time.Second, sv, "status", svdir)
	if !strings.HasPrefix(out, "down: ") {
		t.Errorf("sv status: %q, want down", out)
	}
	b, _ := os.ReadFile(current)
	if n := strings.Count(string(b), msg); n != 1 {
		t.Errorf("service started %d times, want once:\n%s", n, b)
	}
}

func TestUpstartJobs(t *testing.T) {
	// Debian 12 has no upstart, so the jobs cannot run here: check their
	// syntax and the stanzas a foreground daemon needs.
	for _, p := range supProtocols {
		path := filepath.Join(repoRoot(t), "init/upstart/shitenno-"+p+".conf")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, problem := range supCheckUpstartJob(p, string(b)) {
			t.Errorf("%s: %s", path, problem)
		}
	}
}

// TestUpstartCheckerFindsMistakes proves the checker above can fail.
func TestUpstartCheckerFindsMistakes(t *testing.T) {
	bad := `description "x"
start on (runlevel [2345]))
stop on runlevel [!2345]
expect fork
respawn
respawnlimit 10 5
setuid shitenno
script
  exec /usr/local/sbin/shitenno-postfix
end script
`
	problems := strings.Join(supCheckUpstartJob("postfix", bad), "\n")
	for _, want := range []string{"unbalanced parentheses", "expect stanza", `unknown stanza "respawnlimit"`,
		"respawn limit missing", "main process is a script", "exec missing", "normal exit", "kill timeout",
		"console log", "setuid"} {
		if !strings.Contains(problems, want) {
			t.Errorf("checker missed %q; reported:\n%s", want, problems)
		}
	}
	good := `# comment
description "shitenno" # trailing comment
start on (local-filesystems
          and net-device-up IFACE!=lo)
stop on runlevel [!2345]
respawn
respawn limit 10 60
normal exit 0 2 TERM
kill timeout 35
console log
pre-start script
  mkdir -p /run/x
end script
exec /usr/local/sbin/shitenno-postfix --config /etc/shitenno/shitenno.conf
`
	if problems := supCheckUpstartJob("postfix", good); len(problems) > 0 {
		t.Errorf("checker rejects a valid job: %v", problems)
	}
}

// TestInitScriptsSyntax checks every shell script shipped for runit and
// make install with sh -n (dash on Debian: no bashisms).
func TestInitScriptsSyntax(t *testing.T) {
	sh := requireTool(t, "sh")
	scripts := []string{filepath.Join(repoRoot(t), "scripts/install.sh")}
	for _, p := range supProtocols {
		for _, f := range []string{"run", "finish", "log/run"} {
			scripts = append(scripts, filepath.Join(repoRoot(t), "init/runit/shitenno-"+p, f))
		}
	}
	for _, s := range scripts {
		if _, errOut, code := run(t, 10*time.Second, sh, "-n", s); code != 0 {
			t.Errorf("sh -n %s: %s", s, errOut)
		}
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), "#!/bin/sh\n") {
			t.Errorf("%s does not start with #!/bin/sh", s)
		}
	}
	for _, p := range supProtocols {
		b, _ := os.ReadFile(filepath.Join(repoRoot(t), "init/runit/shitenno-"+p, "run"))
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		last := lines[len(lines)-1]
		want := "exec /usr/local/sbin/shitenno-" + p + " --config " + config.DefaultPath
		if last != want {
			t.Errorf("runit %s run ends with %q, want %q (runsv must supervise the daemon itself)", p, last, want)
		}
		if !strings.Contains(string(b), "exec 2>&1") {
			t.Errorf("runit %s run does not send stderr to the log service", p)
		}
	}
}

// TestInstallScript runs make install's script into a DESTDIR with
// PREFIX=/usr and checks what lands where; the installed units pass
// systemd-analyze verify; a second run keeps the operator's files.
func TestInstallScript(t *testing.T) {
	protos := supAll(t)
	bins := t.TempDir()
	for _, p := range protos {
		if err := os.Symlink(binary(t, "shitenno-"+p), filepath.Join(bins, "shitenno-"+p)); err != nil {
			t.Fatal(err)
		}
	}
	dest := t.TempDir()
	install := func() string {
		cmd := exec.Command(filepath.Join(repoRoot(t), "scripts/install.sh"), dest, "/usr")
		cmd.Env = cleanEnv("BINDIR=" + bins)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("install.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	install()
	mode := func(rel string, want os.FileMode) {
		t.Helper()
		fi, err := os.Stat(filepath.Join(dest, rel))
		if err != nil {
			t.Error(err)
			return
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", rel, fi.Mode().Perm(), want)
		}
	}
	for _, p := range protos {
		mode("usr/sbin/shitenno-"+p, 0o755)
		mode("usr/lib/systemd/system/shitenno-"+p+".socket", 0o644)
		mode("usr/lib/systemd/system/shitenno-"+p+".service", 0o644)
		mode("etc/sv/shitenno-"+p+"/run", 0o755)
		mode("etc/sv/shitenno-"+p+"/finish", 0o755)
		mode("etc/sv/shitenno-"+p+"/log/run", 0o755)
		mode("usr/share/shitenno/init/upstart/shitenno-"+p+".conf", 0o644)
		for _, rel := range []string{"usr/lib/systemd/system/shitenno-" + p + ".service", "etc/sv/shitenno-" + p + "/run",
			"usr/share/shitenno/init/upstart/shitenno-" + p + ".conf"} {
			b, _ := os.ReadFile(filepath.Join(dest, rel))
			if !strings.Contains(string(b), "/usr/sbin/shitenno-"+p+" ") || strings.Contains(string(b), "/usr/local") {
				t.Errorf("%s does not name /usr/sbin/shitenno-%s:\n%s", rel, p, b)
			}
		}
	}
	for _, u := range supPostfixExtraUnits {
		mode("usr/lib/systemd/system/"+u, 0o644)
		mode("usr/share/shitenno/init/systemd/"+u, 0o644)
	}
	mode("usr/lib/sysusers.d/shitenno.conf", 0o644)
	mode("usr/share/shitenno/shitenno.conf", 0o644)
	if _, err := os.Stat(filepath.Join(repoRoot(t), "conf/dovecot/shitenno.lua")); err == nil {
		mode("usr/share/shitenno/dovecot/shitenno.lua", 0o644)
	}
	shipped, _ := os.ReadFile(filepath.Join(repoRoot(t), "conf/shitenno.conf"))
	if got, _ := os.ReadFile(filepath.Join(dest, "etc/shitenno/shitenno.conf")); string(got) != string(shipped) {
		t.Errorf("etc/shitenno/shitenno.conf differs from conf/shitenno.conf")
	}

	// The installed units, with /usr/sbin mapped into DESTDIR.
	var units []string
	udir := t.TempDir()
	for _, p := range protos {
		for _, name := range supUnitNames(p) {
			b, err := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/"+name))
			if err != nil {
				t.Fatal(err)
			}
			text := strings.ReplaceAll(string(b), "/usr/sbin/", filepath.Join(dest, "usr/sbin")+"/")
			u := filepath.Join(udir, strings.Replace(name, "@.socket", "@10041.socket", 1))
			if err := os.WriteFile(u, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			units = append(units, u)
		}
	}
	supVerify(t, units)

	// An operator's edits survive a reinstall.
	edited := []string{"etc/shitenno/shitenno.conf", "etc/sv/shitenno-" + protos[0] + "/run"}
	for _, rel := range edited {
		if err := os.WriteFile(filepath.Join(dest, rel), []byte("# edited\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out := install()
	for _, rel := range edited {
		if b, _ := os.ReadFile(filepath.Join(dest, rel)); string(b) != "# edited\n" {
			t.Errorf("reinstall replaced %s", rel)
		}
		if !strings.Contains(out, "kept existing "+filepath.Join(dest, rel)) {
			t.Errorf("reinstall did not say it kept %s:\n%s", rel, out)
		}
	}
}

// TestSocketActivationPostfixListeners passes shitenno-postfix the sockets
// of all its units at once, as systemd does when the optional units are
// enabled (FileDescriptorName socketmap, policy, tcptable): each reaches
// its own listener and answers. The policy socket comes without
// PolicySocket in the configuration and is served with the defaults; the
// tcp_table one needs its [[Postfix.TCPTable]], and without it the daemon
// refuses to start, naming the key and the unit.
func TestSocketActivationPostfixListeners(t *testing.T) {
	activate := requireTool(t, "systemd-socket-activate")
	backend := exampleBackend(t, "--quiet")
	dir := testDir(t)
	sm, pol := filepath.Join(dir, "socketmap.sock"), filepath.Join(dir, "policy.sock")
	port := freePort(t)
	tcp := fmt.Sprintf("127.0.0.1:%d", port)
	conf := daemonConfig(t, dir, "postfix", backend, "", fmt.Sprintf("[[Postfix.TCPTable]]\nListen = %q\nVerb = \"virtual\"\n", tcp))
	// The SMTP AUTH listener too, once the daemon has it (it lists every
	// listener it has).
	auth := filepath.Join(dir, "auth.sock")
	out, _, _ := run(t, time.Minute, binary(t, "shitenno-postfix"), "--config", conf, "--check-config")
	withSASL := strings.Contains(out, "listen: sasl ")
	// The brute-force control socket as its unit makes it, at the path
	// the commands use.
	ctl := filepath.Join(dir, "shitenno-postfix-control")
	args := func(conf string) []string {
		a := []string{"-l", sm, "-l", pol, "-l", tcp, "-l", ctl}
		names := "socketmap:policy:tcptable:control"
		if withSASL {
			a, names = append(a, "-l", auth), names+":sasl"
		}
		return append(a, "--fdname="+names, binary(t, "shitenno-postfix"), "--config", conf)
	}
	p := start(t, activate, args(conf)...)
	waitActivation(t, p, sm, pol)
	if err := supLookup("postfix", sm); err != nil {
		t.Fatalf("socketmap through the activated socket: %v\noutput:\n%s", err, p.Output.String())
	}
	exchange := func(network, addr, req string) string {
		t.Helper()
		c, err := net.DialTimeout(network, addr, supLookupTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(supLookupTimeout))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("%s %s: %v (got %q)\noutput:\n%s", network, addr, err, line, p.Output.String())
		}
		return line
	}
	if got := exchange("unix", pol, "request=smtpd_access_policy\nrecipient=blocked@example.net\n\n"); got != "action=REJECT 5.7.1 this recipient is blocked by policy\n" {
		t.Errorf("policy through the activated socket: %q", got)
	}
	if got := exchange("tcp", tcp, "get postmaster@example.org\n"); got != "200 alice@example.org\n" {
		t.Errorf("tcp_table through the activated socket: %q", got)
	}
	if withSASL {
		// The first handshake line (PROTOCOLS.md §8.2), no SASLSocket set.
		if got := exchange("unix", auth, "VERSION\t1\t0\nCPID\t4242\n"); got != "VERSION\t1\t2\n" {
			t.Errorf("SMTP AUTH through the activated socket: %q", got)
		}
	} else {
		t.Log("shitenno-postfix has no SMTP AUTH listener yet: its socket not tested")
	}
	if st := supStat(filepath.Join(dir, "shitenno-postfix")); st.Exists {
		t.Error("the configured socketmap socket was created under activation")
	}
	// The control socket systemd passed is served (a daemon binding its
	// own would find the path taken and leave this one unanswered).
	if out, errOut, code := run(t, 20*time.Second, binary(t, "shitenno-postfix"), "--config", conf, "blocked"); code != 0 || out != "" {
		t.Errorf("blocked through the activated control socket: exit %d %q %q\noutput:\n%s", code, out, errOut, p.Output.String())
	}
	if err := p.Stop(syscall.SIGTERM, 15*time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v\noutput:\n%s", err, p.Output.String())
	}

	// The same sockets, no table configured: exit 2, with what to do.
	conf = daemonConfig(t, dir, "postfix", backend, "", "")
	sm, pol, auth = filepath.Join(dir, "socketmap2.sock"), filepath.Join(dir, "policy2.sock"), filepath.Join(dir, "auth2.sock")
	ctl = filepath.Join(dir, "control2.sock")
	p = start(t, activate, args(conf)...)
	// systemd-socket-activate execs the daemon on the first connection.
	waitFor(t, 10*time.Second, "activation socket "+sm, func() bool {
		c, err := net.DialTimeout("unix", sm, supLookupTimeout)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	waitFor(t, 10*time.Second, "the daemon to refuse", p.Exited)
	out = p.Output.String()
	if code := p.Cmd.ProcessState.ExitCode(); code != 2 {
		t.Errorf("tcptable socket without a table: exit %d, want 2\n%s", code, out)
	}
	for _, want := range []string{"Postfix.TCPTable.Listen", fmt.Sprintf("shitenno-postfix-tcptable@%d.socket", port)} {
		if !strings.Contains(out, want) {
			t.Errorf("the error does not name %s:\n%s", want, out)
		}
	}
}
