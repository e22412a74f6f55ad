package testutil

import (
	"os"
	"testing"
)

// ShortTempDir returns a new directory, removed when the test ends, whose
// name is short enough for the paths of sockets in it to fit sun_path
// (108 bytes), which t.TempDir's long names may not. prefix starts the
// name.
func ShortTempDir(t testing.TB, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}
