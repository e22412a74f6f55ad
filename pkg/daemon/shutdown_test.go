package daemon

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/shitenno/shitenno/pkg/socketmap"
)

// TestShutdownWaitsForTimeout: a lookup in flight at SIGTERM still gets
// its answer when the backend takes nearly the whole Timeout, even past
// the fixed 10 s grace shutdown used to allow. (It takes 11 s.)
func TestShutdownWaitsForTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 11 s")
	}
	got := make(chan struct{}, 1)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- struct{}{}
		time.Sleep(11 * time.Second)
		fmt.Fprint(w, `{"Status":"OK","Data":"late"}`)
	}))
	t.Cleanup(be.Close)
	dir := shortDir(t)
	sock := filepath.Join(dir, "pf.sock")
	cfg := filepath.Join(dir, "c.conf")
	writeConfig(t, cfg, fmt.Sprintf("RemoteURL = %q\nTimeout = \"12s\"\n[Postfix]\nSocket = %q\nMode = \"0600\"\n", be.URL+"/api/", sock))
	r := startProgram(t, postfixProgram(), cfg)
	c := dialSocketmap(t, sock)
	answer := make(chan string, 1)
	go func() {
		_ = c.c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c.c, "%d:%s,", len("virtual k"), "virtual k")
		b, err := socketmap.ReadNetstring(c.br, nil, 100000)
		if err != nil {
			answer <- "error: " + err.Error()
			return
		}
		answer <- string(b)
	}()
	<-got
	r.sigc <- syscall.SIGTERM
	if a := <-answer; a != "OK late" {
		t.Fatalf("in-flight lookup got %q at shutdown", a)
	}
	if code := r.stop(t); code != ExitOK {
		t.Fatalf("exit %d", code)
	}
}
