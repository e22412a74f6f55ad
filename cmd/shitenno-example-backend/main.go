// Command shitenno-example-backend is a small backend speaking shitenno's
// HTTP+JSON contract from a TOML data file. It is what `make run`, the
// end-to-end tests and the benchmarks talk to, and a readable reference for
// anyone writing their own backend.
//
// It deliberately does not import shitenno's packages: it implements the
// contract from its description, so a mistake on either side shows up.
package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/spf13/pflag"
)

// Data is the example data file.
type Data struct {
	Tables map[string]map[string]string
	Users  map[string]User
	Nginx  map[string]string
	Policy PolicyData
}

// User is one mailbox.
type User struct {
	Password string
	Uid      int
	Gid      int
	Home     string
	Quota    string
}

type request struct {
	Verb   string
	Object json.RawMessage
}

type reply struct {
	Verb   string          `json:"Verb"`
	Object json.RawMessage `json:"Object"`
	Status string          `json:"Status"`
	Data   any             `json:"Data"`
}

type server struct {
	data   Data
	maxAge int
	quiet  bool
	quota  quota
}

func main() {
	listen := pflag.String("listen", "127.0.0.1:8080", "address to listen on")
	file := pflag.String("data", "conf/example-backend.toml", "data file")
	maxAge := pflag.Int("max-age", 0, "Cache-Control max-age (seconds) on answers; 0 sends none")
	quiet := pflag.Bool("quiet", false, "do not log requests")
	pflag.Parse()

	var d Data
	if _, err := toml.DecodeFile(*file, &d); err != nil {
		fmt.Fprintf(os.Stderr, "shitenno-example-backend: %v\n", err)
		os.Exit(2)
	}
	s := &server{data: d, maxAge: *maxAge, quiet: *quiet, quota: quota{now: time.Now}}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "shitenno-example-backend: %v\n", err)
		os.Exit(1)
	}
	log.Printf("serving %s on http://%s/", *file, l.Addr())
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(hs.Serve(l))
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	var req request
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil {
		http.Error(w, "bad JSON", http.StatusBadRequest)
		return
	}
	verb := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	if verb != req.Verb {
		http.Error(w, "verb in path and body differ", http.StatusBadRequest)
		return
	}
	data, found, err := s.answer(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rep := reply{Verb: req.Verb, Object: req.Object, Status: "KO", Data: data}
	if found {
		rep.Status = "OK"
	}
	if !s.quiet {
		// The example logs verb and outcome only: never the object, which
		// may hold a password.
		log.Printf("%s %s", req.Verb, rep.Status)
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case req.Verb == "policy" || req.Verb == "sasl":
		// Each policy request counts (the quota), and a login must be
		// checked against the current password: never to be reused.
		w.Header().Set("Cache-Control", "no-store")
	case s.maxAge > 0:
		w.Header().Set("Cache-Control", fmt.Sprintf("max-age=%d", s.maxAge))
	}
	_ = json.NewEncoder(w).Encode(rep)
}

func (s *server) answer(req request) (any, bool, error) {
	switch req.Verb {
	case "passdb", "userdb":
		var o struct{ Context, Object string }
		if err := json.Unmarshal(req.Object, &o); err != nil {
			return nil, false, fmt.Errorf("%s wants {Context, Object}", req.Verb)
		}
		u, ok := s.data.Users[strings.ToLower(o.Object)]
		if !ok {
			return nil, false, nil
		}
		if req.Verb == "passdb" {
			return map[string]any{"password": u.Password}, true, nil
		}
		m := map[string]any{"uid": u.Uid, "gid": u.Gid, "home": u.Home}
		if u.Quota != "" {
			m["quota_rule"] = u.Quota
		}
		return m, true, nil
	case "nginx":
		return s.nginx(req.Object)
	case "policy":
		return s.policy(req.Object)
	case "sasl":
		return s.sasl(req.Object)
	}
	var key string
	if err := json.Unmarshal(req.Object, &key); err != nil {
		return nil, false, fmt.Errorf("table %s wants a string key", req.Verb)
	}
	v, ok := s.data.Tables[req.Verb][strings.ToLower(key)]
	if !ok {
		return nil, false, nil
	}
	return v, true, nil
}

func (s *server) nginx(obj json.RawMessage) (any, bool, error) {
	var h map[string]string
	if err := json.Unmarshal(obj, &h); err != nil {
		return nil, false, fmt.Errorf("nginx wants an object of strings")
	}
	u, ok := s.data.Users[strings.ToLower(h["Auth-User"])]
	if h["Auth-Method"] != "plain" || !ok || !checkPassword(u.Password, h["Auth-Pass"]) {
		return nil, false, nil
	}
	up, ok := s.data.Nginx[h["Auth-Protocol"]]
	if !ok {
		return map[string]string{"Auth-Status": "No upstream for this protocol"}, false, nil
	}
	host, port, err := net.SplitHostPort(up)
	if err != nil {
		return nil, false, fmt.Errorf("bad upstream %q", up)
	}
	return map[string]string{"Auth-Server": host, "Auth-Port": port}, true, nil
}

// sasl checks an SMTP AUTH login (shitenno-postfix's SASL listener)
// against the same users as dovecot and nginx; the canonical name goes
// back as Data.User, which postfix logs and uses as sasl_username.
func (s *server) sasl(obj json.RawMessage) (any, bool, error) {
	var o struct{ User, Password, Authzid string }
	if err := json.Unmarshal(obj, &o); err != nil {
		return nil, false, fmt.Errorf("sasl wants {User, Password}")
	}
	name := strings.ToLower(o.User)
	u, ok := s.data.Users[name]
	if !ok || !checkPassword(u.Password, o.Password) {
		return nil, false, nil
	}
	if o.Authzid != "" && strings.ToLower(o.Authzid) != name {
		// Nobody may act as another user here.
		return nil, false, nil
	}
	return map[string]string{"User": name}, true, nil
}

// checkPassword verifies pw against a dovecot-style {SCHEME} string.
func checkPassword(stored, pw string) bool {
	scheme, val, ok := strings.Cut(strings.TrimPrefix(stored, "{"), "}")
	if !ok {
		return false
	}
	switch strings.ToUpper(scheme) {
	case "PLAIN":
		return subtle.ConstantTimeCompare([]byte(val), []byte(pw)) == 1
	case "SHA256", "SSHA256":
		raw, err := base64.StdEncoding.DecodeString(val)
		if err != nil || len(raw) < sha256.Size {
			return false
		}
		sum := sha256.Sum256(append([]byte(pw), raw[sha256.Size:]...))
		return subtle.ConstantTimeCompare(sum[:], raw[:sha256.Size]) == 1
	}
	return false
}
