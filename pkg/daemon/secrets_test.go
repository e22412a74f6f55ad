package daemon

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
	"github.com/shitenno/shitenno/pkg/bridge"
	"github.com/shitenno/shitenno/pkg/connserver"
	"github.com/shitenno/shitenno/pkg/dict"
	"github.com/shitenno/shitenno/pkg/mailauth"
)

// Markers that may appear on the wire but never in a log line.
const (
	clientPass = "CLIENTPASS7f3a"
	dataMark   = "BACKENDDATA9c1e"
	backendPW  = "BACKENDPW2d8b"
)

// secretBackend answers every protocol with replies full of secrets, some
// well-formed, some broken in ways that make the daemons log failures.
func secretBackend(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		body := string(b)
		switch {
		case strings.Contains(body, "bad-statusword"):
			fmt.Fprintf(w, `{"Status":"%s","Data":"%s"}`, dataMark, backendPW)
		case strings.Contains(body, "bad-status"):
			http.Error(w, dataMark+" "+backendPW, http.StatusInternalServerError)
		case strings.Contains(body, "bad-json"):
			fmt.Fprintf(w, `{"Status":"OK","Data":"%s`, dataMark)
		case strings.Contains(body, "bad-shape"):
			fmt.Fprintf(w, `{"Status":"OK","Data":{"nested":{"password":"%s","x":"%s"}}}`, backendPW, dataMark)
		case strings.Contains(body, `"Verb":"nginx"`) && strings.Contains(body, "wrong"):
			fmt.Fprintf(w, `{"Status":"KO","Data":{"Auth-Status":"Invalid login %s"}}`, dataMark)
		case strings.Contains(body, `"Verb":"nginx"`):
			fmt.Fprintf(w, `{"Status":"OK","Data":{"Auth-Server":"127.0.0.1","Auth-Port":143,"Auth-Pass":"%s","x":"%s"}}`, backendPW, dataMark)
		case strings.Contains(body, `"Verb":"passdb"`):
			fmt.Fprintf(w, `{"Status":"OK","Data":{"password":"{PLAIN}%s","note":"%s"}}`, backendPW, dataMark)
		default:
			fmt.Fprintf(w, `{"Status":"OK","Data":"%s"}`, dataMark)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// TestSecretsNeverLogged runs the three protocols at LogLevel debug
// through successes and every kind of backend failure, then greps the
// whole captured log for passwords and backend Data.
func TestSecretsNeverLogged(t *testing.T) {
	be := secretBackend(t)
	progs := map[string]Program{
		"postfix": postfixProgram(),
		"dovecot": {Name: "dovecot", Build: func(env *Env) (Server, error) {
			return &dict.Server{Handler: &bridge.Dovecot{Backend: env.Backend, Record: env.Record},
				Server: connserver.Server{Logger: env.Logger, ConnState: env.ConnState}}, nil
		}},
		"nginx": {Name: "nginx", Build: func(env *Env) (Server, error) {
			h := &mailauth.HTTPHandler{Handler: &bridge.Nginx{Backend: env.Backend, Record: env.Record},
				Timeout: 5 * time.Second, Logger: env.Logger}
			return mailauth.NewServer(h, 5*time.Second, env.Logger), nil
		}},
	}
	for name, p := range progs {
		t.Run(name, func(t *testing.T) {
			dir := shortDir(t)
			sock := filepath.Join(dir, name+".sock")
			cfg := filepath.Join(dir, "shitenno.conf")
			writeConfig(t, cfg, fmt.Sprintf("RemoteURL = %q\nLogLevel = \"debug\"\n[%s]\nSocket = %q\n",
				be.URL+"/api/", map[string]string{"postfix": "Postfix", "dovecot": "Dovecot", "nginx": "Nginx"}[name], sock))
			r := startProgram(t, p, cfg)
			waitLog(t, r.stderr, `msg=listening`)
			keys := []string{"ok-key", "bad-status", "bad-json", "bad-shape", "bad-statusword"}
			switch name {
			case "postfix":
				c := dialSocketmap(t, sock)
				for _, k := range keys {
					c.query(t, "virtual", k+"-"+clientPass)
				}
			case "dovecot":
				for _, k := range keys {
					dictLookup(t, sock, "shared/passdb/"+k+"-"+clientPass)
				}
			case "nginx":
				for _, k := range append(keys, "wrong") {
					nginxAuth(t, sock, k, clientPass)
				}
			}
			if code := r.stop(t); code != 0 {
				t.Errorf("exit %d", code)
			}
			logs := r.stderr.String()
			if !strings.Contains(logs, "lookup failed") || !strings.Contains(logs, "level=DEBUG") {
				t.Fatalf("expected debug and failure lines, got:\n%s", logs)
			}
			for _, secret := range []string{clientPass, dataMark, backendPW} {
				if strings.Contains(logs, secret) {
					t.Errorf("%s leaked into the log:\n%s", secret, testutil.GrepLines(logs, secret))
				}
			}
		})
	}
}

func dictLookup(t *testing.T, sock, key string) string {
	t.Helper()
	c := testutil.Dial(t, "unix", sock)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "H2\t0\t0\tuser\tshitenno\nL%s\t\n", key)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return line
}

func nginxAuth(t *testing.T, sock, user, pass string) http.Header {
	t.Helper()
	cl := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}, Timeout: 10 * time.Second}
	req, _ := http.NewRequest(http.MethodGet, "http://localhost/auth", nil)
	for k, v := range map[string]string{"Auth-Method": "plain", "Auth-Protocol": "imap", "Auth-Login-Attempt": "1",
		"Client-IP": "127.0.0.1", "Auth-User": user, "Auth-Pass": pass} {
		req.Header.Set(k, v)
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cl.CloseIdleConnections()
	return resp.Header
}
