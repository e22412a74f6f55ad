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
	if os.Geteuid() != 0 {
		if inCI() {
			t.Fatal("Debian 13 tests need root (debootstrap, chroot)")
		}
		t.Skip("Debian 13 tests need root (debootstrap, chroot)")
	}
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
	d, err := os.MkdirTemp(filepath.Join(root, "tmp"), "shitenno-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// trixieIn turns a host path inside root into the path a chrooted peer
// sees.
func trixieIn(root, hostPath string) string {
	return "/" + strings.TrimPrefix(strings.TrimPrefix(hostPath, root), "/")
}
