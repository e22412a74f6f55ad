// Package testutil holds small helpers shared by shitenno's tests.
package testutil

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// SyncBuffer is a bytes.Buffer that one goroutine may write (a logger, a
// child process) while another reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// GrepLines keeps the lines of s that contain sub, for short failure
// messages about long outputs (logs, metrics).
func GrepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// BackendConf starts a fake backend serving h and writes a configuration
// file whose RemoteURL is that backend plus base (e.g. "/api/"); it
// returns the file's path. Both go away with the test.
func BackendConf(t testing.TB, base string, h http.HandlerFunc) string {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "shitenno.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("RemoteURL = %q\n", Backend(t, h)+base)), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf
}
