package testutil

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// Runner is a command's entry point, as daemon.Program has it.
type Runner interface {
	Run(args []string, stdout, stderr io.Writer) int
}

// Run runs r with args and returns its exit code, stdout and stderr.
func Run(r Runner, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = r.Run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// Request is what a fake backend was sent.
type Request struct {
	Path string
	Body string
	// Object is the request envelope's Object when it is a JSON object.
	Object map[string]any
}

// AnswerConf is BackendConf with a backend that answers each request as
// answer says: with status 200, reply is the JSON body; with any other
// status, the request gets that HTTP error with reply as its text.
func AnswerConf(t testing.TB, base string, answer func(Request) (status int, reply string)) string {
	t.Helper()
	return BackendConf(t, base, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var env struct{ Object map[string]any }
		_ = json.Unmarshal(b, &env)
		status, reply := answer(Request{Path: r.URL.Path, Body: string(b), Object: env.Object})
		if status != http.StatusOK {
			http.Error(w, reply, status)
			return
		}
		_, _ = io.WriteString(w, reply)
	})
}

// Answer is one reply a fake backend knows: the JSON Reply to a request
// whose path or body contains Match.
type Answer struct{ Match, Reply string }

// AnswersConf is AnswerConf with a backend that gives each request the
// Reply of the first of answers that matches it, and the HTTP error
// status (with text "no") to a request none matches.
func AnswersConf(t testing.TB, base string, status int, answers ...Answer) string {
	t.Helper()
	return AnswerConf(t, base, func(r Request) (int, string) {
		for _, a := range answers {
			if strings.Contains(r.Path, a.Match) || strings.Contains(r.Body, a.Match) {
				return http.StatusOK, a.Reply
			}
		}
		return status, "no"
	})
}

// CountingBackend starts a fake backend that answers every request with
// the JSON body reply and counts the requests in hits. It returns the
// backend's URL; the backend stops when the test ends.
func CountingBackend(t testing.TB, reply string) (url string, hits *atomic.Int64) {
	t.Helper()
	hits = new(atomic.Int64)
	url = Backend(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, reply)
	})
	return url, hits
}

// Backend starts a fake backend serving h on a loopback port and returns
// its URL (no trailing slash); it stops when the test ends.
func Backend(t testing.TB, h http.HandlerFunc) string {
	t.Helper()
	be := httptest.NewServer(h)
	t.Cleanup(be.Close)
	return be.URL
}
