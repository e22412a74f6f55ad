package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestReadmeUpToDate: README.md is generated from docs/*.md, whose
// configuration examples the other tests run; a hand edit of README.md or
// a forgotten `make readme` would let the two drift apart.
func TestReadmeUpToDate(t *testing.T) {
	root := repoRoot(t)
	out := filepath.Join(t.TempDir(), "README.md")
	cmd := exec.Command(filepath.Join(root, "scripts/readme.sh"), out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/readme.sh: %v\n%s", err, b)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatal("README.md is not what scripts/readme.sh makes from docs/*.md: run make readme")
	}
}
