package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
	"github.com/shitenno/shitenno/pkg/config"
	"github.com/shitenno/shitenno/pkg/daemon"
	"github.com/shitenno/shitenno/pkg/mailauth"
)

// TestReloadAppliesTimeout: after a reload that raises Timeout, the
// handler's own bound follows (it used to keep the start-up value and cut
// a slower backend's answer into a temporary failure).
func TestReloadAppliesTimeout(t *testing.T) {
	url := testutil.Backend(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(1500 * time.Millisecond)
		fmt.Fprint(w, `{"Status":"KO"}`)
	})
	parse := func(timeout string) *config.Config {
		c, err := config.Parse("x.conf", []byte(fmt.Sprintf("RemoteURL = %q\nTimeout = %q\n", url+"/api/", timeout)))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cfg := parse("100ms")
	backend, err := daemon.NewBackend(cfg, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	env := &daemon.Env{Config: cfg, Section: &cfg.Nginx, Backend: backend, ConnState: func(int) {}}
	h := handler(env)
	if err := backend.Reload(parse("3s")); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/auth", nil)
	for k, v := range map[string]string{"Auth-Method": "plain", "Auth-User": "bob", "Auth-Pass": "x", "Auth-Protocol": "imap", "Client-IP": "127.0.0.1"} {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if s := rec.Header().Get("Auth-Status"); s == mailauth.StatusTempFail || s == "" {
		t.Fatalf("Auth-Status %q: the start-up Timeout still applies", s)
	}
}
