package daemon

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestControlSocketNoChmodThroughSymlink: the control socket is bound as
// root, in a directory others may write (the daemon's own user's, or a
// sticky one). Replacing the fresh socket with a symlink between bind and
// chmod must not make root chmod the symlink's target: the socket gets its
// mode where no one else can reach it, then moves into place.
func TestControlSocketNoChmodThroughSymlink(t *testing.T) {
	dir := shortDir(t)
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ctl")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the attacker
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = os.Symlink(victim, path+".l")
			_ = os.Rename(path+".l", path)
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for i := range 3000 {
		_ = os.Remove(path)
		if l, err := listenControl(path); err == nil {
			l.Close()
		}
		fi, err := os.Stat(victim)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Fatalf("round %d: the symlink's target was made %04o", i, fi.Mode().Perm())
		}
	}
}
