package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Debian 13 (trixie) peers, dovecot 2.4.1, postfix 3.10 and nginx 1.26,
// run from one Debian 13 root built by scripts/trixie-chroot.sh: their
// binaries need trixie's glibc, so they run chrooted (PROTOCOLS.md §3.10,
// §7.3). shitenno's daemons run on the host with their sockets inside that
// root, where a peer sees them at the same path minus the root (trixieIn).
// Every test in the binary shares one build (sync.Once); the root itself is
// reused across runs.

var trixie struct {
	once sync.Once
	root string
	err  error
	log  string
}

// trixieBuildTimeout bounds debootstrap plus the package installation
// (about 2.5 minutes on a cold cache, instant on reuse).
const trixieBuildTimeout = 15 * time.Minute

// trixieRoot builds the root once per test binary (reused across runs from
// /var/tmp/shitenno-trixie, or $SHITENNO_TRIXIE_DIR) and returns its path.
// Without root privileges or debootstrap the test fails in CI and is
// skipped elsewhere.
func trixieRoot(t *testing.T) string {
	t.Helper()
	needRoot(t, "Debian 13 tests (debootstrap, chroot)")
	requireTool(t, "debootstrap")
	requireTool(t, "chroot")
	trixie.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), trixieBuildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "scripts", "trixie-chroot.sh"))
		// Keep proxy variables here: debootstrap and apt may need them.
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		trixie.err = cmd.Run()
		trixie.log = errOut.String()
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		trixie.root = lines[len(lines)-1]
		if trixie.err == nil && !filepath.IsAbs(trixie.root) {
			trixie.err = fmt.Errorf("unexpected output %q", out.String())
		}
	})
	if trixie.err != nil {
		msg := fmt.Sprintf("scripts/trixie-chroot.sh: %v\n%s", trixie.err, trixieTail(trixie.log, 4000))
		if inCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return trixie.root
}

// trixieTail returns at most the last n bytes of s.
func trixieTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// trixieDir makes a private directory inside the root (/tmp there) that
// the peers' unprivileged processes (dovecot, postfix, nginx workers) can
// traverse; it returns the host path.
func trixieDir(t *testing.T, root string) string {
	t.Helper()
	return peerDir(t, filepath.Join(root, "tmp"))
}

// trixieIn turns a host path inside root into the path a chrooted peer
// sees.
func trixieIn(root, hostPath string) string {
	return "/" + strings.TrimPrefix(strings.TrimPrefix(hostPath, root), "/")
}

// trixieWrite writes a file under dir (a host path inside root), dated an
// hour ago, and returns the path a chrooted peer sees.
func trixieWrite(t *testing.T, root, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// Postfix programs reading a main.cf changed within the last second or
	// two sleep until it is older (about 2 s per test otherwise).
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	return trixieIn(root, p)
}

// trixieRun runs a program inside root to completion (see run).
func trixieRun(t *testing.T, root string, d time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return run(t, d, "chroot", append([]string{root}, args...)...)
}

// trixiePostmapDir writes the minimal main.cf postmap needs (as on the
// host: TESTING.md) and returns the directory as the root sees it.
func trixiePostmapDir(t *testing.T, root, dir string) string {
	t.Helper()
	return filepath.Dir(trixieWrite(t, root, dir, "postmap/main.cf", "compatibility_level = 3.6\n"))
}

// trixiePostmap runs the root's postmap -f -q KEY
// socketmap:unix:SOCK:TABLE, SOCK being a host path inside the root.
func trixiePostmap(t *testing.T, root, confDir, sock, table, key string) (string, string, int) {
	t.Helper()
	return trixieRun(t, root, 30*time.Second, "postmap", "-c", confDir, "-f", "-q", key,
		"socketmap:unix:"+trixieIn(root, sock)+":"+table)
}

// startTrixiePostfix starts a private postfix 3.10 (master, smtpd,
// proxymap...) whose virtual alias table is shitenno: the root's master in
// the foreground with its own configuration directory (the root's
// /etc/postfix stays untouched, so tests can run side by side), set up as
// startPostfix does on the host (TESTING.md) with paths as the root sees
// them. The master is stopped by PID at cleanup (SIGTERM, which ends its
// children; then SIGKILL of its process group).
func startTrixiePostfix(t *testing.T, root, dir, sock string, extra ...string) *postfixInstance {
	t.Helper()
	pf := &postfixInstance{dir: filepath.Join(dir, "pf"), port: freePort(t)}
	for _, sub := range []string{"queue", "data", "log"} {
		if err := os.MkdirAll(filepath.Join(pf.dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	in := trixieIn(root, pf.dir)
	mainExtra, masterExtra := splitCF(extra)
	trixieWrite(t, root, pf.dir, "main.cf", postfixMainCF(in, trixieIn(root, sock))+mainExtra)
	// Every service unchrooted ("n"): the whole instance is already in
	// the root, and the queue has no copies of /etc files.
	trixieWrite(t, root, pf.dir, "master.cf", postfixMasterCF(pf.port)+masterExtra)
	// The data directory belongs to mail_owner: the root's postfix user,
	// whose uid need not match the host's.
	if out, errOut, code := trixieRun(t, root, 10*time.Second, "chown", "postfix", in+"/data"); code != 0 {
		t.Fatalf("chown postfix data: %s %s", out, errOut)
	}
	if out, errOut, code := trixieRun(t, root, time.Minute, "postfix", "-c", in, "check"); code != 0 {
		t.Fatalf("postfix check: %s %s", out, errOut)
	}
	out, errOut, code := trixieRun(t, root, 10*time.Second, "postconf", "-c", in, "-h", "daemon_directory")
	if code != 0 {
		t.Fatalf("postconf -h daemon_directory: %s", errOut)
	}
	p := start(t, "chroot", root, strings.TrimSpace(out)+"/master", "-c", in, "-d")
	logOnFailure(t, "postfix 3.10 log", filepath.Join(pf.dir, "log", "postfix.log"), 20000)
	waitFor(t, 30*time.Second, "postfix 3.10 smtpd", func() bool {
		if p.Exited() {
			t.Fatalf("postfix master exited: %s", p.Output.String())
		}
		return dialable("tcp", fmt.Sprintf("127.0.0.1:%d", pf.port))
	})
	return pf
}

// startTrixieNginx runs the root's nginx 1.26 in the foreground with a
// private configuration (own prefix, pid, error_log) around mailBody and
// waits until every port in waitPorts accepts connections. It is
// stopped by PID at cleanup.
func startTrixieNginx(t *testing.T, root, dir, mailBody string, waitPorts ...int) {
	t.Helper()
	nd := filepath.Join(dir, "nginx")
	for _, sub := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(nd, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	in := trixieIn(root, nd)
	errorLog := filepath.Join(nd, "logs", "error.log")
	// Debian's modules-enabled/50-mod-mail.conf names the module relative
	// to the compiled-in prefix (modules/ngx_mail_module.so), which -p
	// changes: load it by its absolute path, as on the host.
	conf := fmt.Sprintf(`load_module %[3]s;
daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log info;
events { worker_connections 128; }
mail {
%[2]s
}
`, in, mailBody, nginxMailModule)
	confIn := trixieWrite(t, root, nd, "nginx.conf", conf)
	args := []string{"nginx", "-p", in + "/", "-c", confIn, "-e", in + "/logs/error.log"}
	if out, errOut, code := trixieRun(t, root, 30*time.Second, append(args, "-t")...); code != 0 {
		t.Fatalf("nginx -t failed (%d):\n%s%s\n%s", code, out, errOut, conf)
	}
	p := start(t, "chroot", append([]string{root}, args...)...)
	logOnFailure(t, "nginx 1.26 error log", errorLog, 20000)
	for _, port := range waitPorts {
		waitFor(t, 10*time.Second, fmt.Sprintf("nginx 1.26 on port %d", port), func() bool {
			if p.Exited() {
				t.Fatalf("nginx exited: %s", p.Output.String())
			}
			return dialable("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		})
	}
}
