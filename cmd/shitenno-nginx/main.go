// Command shitenno-nginx answers nginx mail auth_http requests
// (ngx_mail_auth_http_module) from shitenno's HTTP+JSON backend.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/shitenno/shitenno/pkg/bridge"
	"github.com/shitenno/shitenno/pkg/daemon"
	"github.com/shitenno/shitenno/pkg/mailauth"
)

func main() {
	daemon.Main(daemon.Program{
		Name:       "nginx",
		Build:      build,
		Query:      query,
		QueryUsage: "PROTOCOL USER PASSWORD",
	})
}

func handler(env *daemon.Env) *mailauth.HTTPHandler {
	return &mailauth.HTTPHandler{
		Handler: &bridge.Nginx{Backend: env.Backend, Record: env.Record},
		// A backstop only: the backend client enforces Timeout itself.
		Timeout: env.Config.Timeout.Duration + time.Second,
		Logger:  env.Logger,
	}
}

func build(env *daemon.Env) (daemon.Server, error) {
	h := handler(env)
	srv := mailauth.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		env.Alive()
		h.ServeHTTP(w, r)
	}), env.Config.Timeout.Duration, env.Logger)
	srv.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			env.ConnState(1)
		case http.StateClosed, http.StateHijacked:
			env.ConnState(-1)
		}
	}
	return srv, nil
}

// query sends one login attempt through the same path nginx's requests
// take and prints the Auth-* headers nginx would get (Auth-Pass redacted).
func query(ctx context.Context, env *daemon.Env, args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(env.Stderr, "usage: shitenno-nginx query PROTOCOL USER PASSWORD")
		return daemon.ExitConfig
	}
	hr := httptest.NewRequestWithContext(ctx, http.MethodGet, "/auth", nil)
	for k, v := range map[string]string{
		"Auth-Method": "plain", "Auth-Protocol": args[0], "Auth-Login-Attempt": "1", "Client-IP": "127.0.0.1",
		"Auth-User": mailauth.Escape(args[1]), "Auth-Pass": mailauth.Escape(args[2]),
	} {
		hr.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	handler(env).ServeHTTP(rec, hr)
	h := rec.Result().Header
	for _, k := range []string{"Auth-Status", "Auth-Server", "Auth-Port", "Auth-User", "Auth-Pass", "Auth-Wait", "Auth-Error-Code"} {
		if v, ok := h[k]; ok {
			if k == "Auth-Pass" {
				v = []string{"***"}
			}
			fmt.Fprintf(env.Stdout, "%s: %s\n", k, v[0])
		}
	}
	switch h.Get("Auth-Status") {
	case mailauth.StatusOK:
		return daemon.ExitOK
	case mailauth.StatusTempFail:
		return daemon.ExitTempFail
	}
	return daemon.ExitNotFound
}
