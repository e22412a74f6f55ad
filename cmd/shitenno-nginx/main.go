// Command shitenno-nginx answers nginx mail auth_http requests
// (ngx_mail_auth_http_module) from shitenno's HTTP+JSON backend.
package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/shitenno/shitenno/internal/redact"
	"github.com/shitenno/shitenno/pkg/bridge"
	"github.com/shitenno/shitenno/pkg/daemon"
	"github.com/shitenno/shitenno/pkg/mailauth"
)

func main() {
	daemon.Main(daemon.Program{
		Name:        "nginx",
		Build:       build,
		Query:       query,
		QueryUsage:  "USER PASSWORD [PROTOCOL]",
		Credentials: true,
		Logins:      true,
	})
}

func handler(env *daemon.Env) *mailauth.HTTPHandler {
	n := &bridge.Nginx{Backend: env.Backend, Record: env.Record}
	if env.Limiter != nil { // query has none: a nil pointer must not become a non-nil Guard
		n.Limiter = env.Limiter
	}
	return &mailauth.HTTPHandler{
		Handler: n,
		// A backstop only: the backend client enforces Timeout itself.
		// Read per request from the configuration in force, so SIGHUP
		// applies it.
		TimeoutFunc: func() time.Duration { return env.Backend.Config().Timeout.Duration + time.Second },
		Logger:      env.Logger,
	}
}

func build(env *daemon.Env) (daemon.Server, error) {
	h := handler(env)
	srv := mailauth.NewServer(h, env.Config.Timeout.Duration, env.Logger)
	srv.ConnState = env.ConnState
	return srv, nil
}

// query sends one login attempt through the same path nginx's requests
// take and prints the Auth-* headers nginx would get (Auth-Pass redacted).
func query(ctx context.Context, env *daemon.Env, args []string) int {
	// The documented order is USER PASSWORD [PROTOCOL] (imap by default);
	// PROTOCOL USER PASSWORD, with a protocol nginx knows first, is
	// accepted too.
	if len(args) < 2 || len(args) > 3 {
		fmt.Fprintln(env.Stderr, "usage: shitenno-nginx query USER PASSWORD [PROTOCOL]")
		return daemon.ExitConfig
	}
	user, pass, proto := args[0], args[1], "imap"
	switch {
	case len(args) == 3 && (args[0] == "imap" || args[0] == "pop3" || args[0] == "smtp"):
		proto, user, pass = args[0], args[1], args[2]
	case len(args) == 3:
		proto = args[2]
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://localhost/auth", nil)
	if err != nil {
		fmt.Fprintf(env.Stderr, "shitenno-nginx: query: %v\n", err)
		return daemon.ExitConfig
	}
	hr.RemoteAddr = "127.0.0.1:0"
	for k, v := range map[string]string{
		"Auth-Method": "plain", "Auth-Protocol": proto, "Auth-Login-Attempt": "1", "Client-IP": "127.0.0.1",
		"Auth-User": mailauth.Escape(user), "Auth-Pass": mailauth.Escape(pass),
	} {
		hr.Header.Set(k, v)
	}
	rec := headerRecorder{h: http.Header{}}
	handler(env).ServeHTTP(rec, hr)
	h := rec.h
	for _, k := range []string{"Auth-Status", "Auth-Server", "Auth-Port", "Auth-User", "Auth-Pass", "Auth-Wait", "Auth-Error-Code"} {
		if v, ok := h[k]; ok {
			if redact.Key(k) {
				v = []string{redact.Mask}
			}
			fmt.Fprintf(env.Stdout, "%s: %s\n", k, v[0])
		}
	}
	// Any other Auth-Status is a refusal: the backend said no.
	st := h.Get("Auth-Status")
	return daemon.QueryExit(st == mailauth.StatusOK, st != mailauth.StatusTempFail)
}

// headerRecorder keeps the headers of the handler's answer, all query
// prints (nginx reads nothing else).
type headerRecorder struct{ h http.Header }

func (r headerRecorder) Header() http.Header         { return r.h }
func (r headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r headerRecorder) WriteHeader(int)             {}
