package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func ev(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

func summarise(t *testing.T, input string, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(input), &out, &errb)
	if errb.Len() > 0 {
		t.Logf("stderr: %s", errb.String())
	}
	return out.String(), code
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return l[len(l)-1]
}

const (
	pkgA = "example.com/m/a"
	pkgE = "example.com/m/e2e"
)

var passing = ev(
	`{"Action":"start","Package":"example.com/m/a"}`,
	`{"Action":"run","Package":"example.com/m/a","Test":"TestOne"}`,
	`{"Action":"output","Package":"example.com/m/a","Test":"TestOne","Output":"=== RUN   TestOne\n"}`,
	`{"Action":"output","Package":"example.com/m/a","Test":"TestOne","Output":"--- PASS: TestOne (0.00s)\n"}`,
	`{"Action":"pass","Package":"example.com/m/a","Test":"TestOne"}`,
	`{"Action":"run","Package":"example.com/m/a","Test":"TestTwo"}`,
	`{"Action":"run","Package":"example.com/m/a","Test":"TestTwo/sub"}`,
	`{"Action":"pass","Package":"example.com/m/a","Test":"TestTwo/sub"}`,
	`{"Action":"pass","Package":"example.com/m/a","Test":"TestTwo"}`,
	`{"Action":"output","Package":"example.com/m/a","Output":"PASS\n"}`,
	`{"Action":"output","Package":"example.com/m/a","Output":"ok  \texample.com/m/a\t0.01s\n"}`,
	`{"Action":"pass","Package":"example.com/m/a"}`,
)

func TestPassCountsTopLevelTests(t *testing.T) {
	out, code := summarise(t, passing)
	if code != 0 {
		t.Errorf("exit %d, want 0\n%s", code, out)
	}
	if got, want := lastLine(out), "PASS: tests 2 passed, 0 failed, 0 skipped"; got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
	if strings.Contains(out, "=== RUN") || strings.Contains(out, "--- PASS") {
		t.Errorf("progress or pass lines printed:\n%s", out)
	}
	if !strings.Contains(out, "ok  \texample.com/m/a") {
		t.Errorf("package line missing:\n%s", out)
	}
}

func TestFailPrintsTheTestOutput(t *testing.T) {
	in := ev(
		`{"Action":"run","Package":"example.com/m/a","Test":"TestBad"}`,
		`{"Action":"output","Package":"example.com/m/a","Test":"TestBad","Output":"    a_test.go:9: got 1, want 2\n"}`,
		`{"Action":"output","Package":"example.com/m/a","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}`,
		`{"Action":"fail","Package":"example.com/m/a","Test":"TestBad"}`,
		`{"Action":"output","Package":"example.com/m/a","Output":"FAIL\texample.com/m/a\t0.01s\n"}`,
		`{"Action":"fail","Package":"example.com/m/a"}`,
	)
	out, code := summarise(t, passing+in)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(out, "a_test.go:9: got 1, want 2") {
		t.Errorf("failure output missing:\n%s", out)
	}
	if got, want := lastLine(out), "FAIL: tests 2 passed, 1 failed, 0 skipped"; got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
}

func TestPanicFailsTheRunningTests(t *testing.T) {
	in := ev(
		`{"Action":"run","Package":"example.com/m/a","Test":"TestPanics"}`,
		`{"Action":"output","Package":"example.com/m/a","Test":"TestPanics","Output":"panic: boom\n"}`,
		`{"Action":"output","Package":"example.com/m/a","Output":"FAIL\texample.com/m/a\t0.01s\n"}`,
		`{"Action":"fail","Package":"example.com/m/a"}`,
	)
	out, code := summarise(t, in)
	if code != 1 || !strings.Contains(out, "panic: boom") {
		t.Errorf("exit %d\n%s", code, out)
	}
	if got, want := lastLine(out), "FAIL: tests 0 passed, 1 failed, 0 skipped"; got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
}

func TestBuildFailure(t *testing.T) {
	in := ev(
		`{"ImportPath":"example.com/m/a [example.com/m/a.test]","Action":"build-output","Output":"a/a.go:3:1: syntax error\n"}`,
		`{"ImportPath":"example.com/m/a [example.com/m/a.test]","Action":"build-fail"}`,
		`{"Action":"start","Package":"example.com/m/a"}`,
		`{"Action":"output","Package":"example.com/m/a","Output":"FAIL\texample.com/m/a [build failed]\n"}`,
		`{"Action":"fail","Package":"example.com/m/a","FailedBuild":"example.com/m/a [example.com/m/a.test]"}`,
	)
	out, code := summarise(t, in)
	if code != 1 || !strings.Contains(out, "syntax error") {
		t.Errorf("exit %d\n%s", code, out)
	}
	if got := lastLine(out); !strings.HasPrefix(got, "FAIL: tests 0 passed, 0 failed, 0 skipped; 1 package(s) failed: example.com/m/a") {
		t.Errorf("last line %q", got)
	}
}

func TestNoInputFails(t *testing.T) {
	out, code := summarise(t, "go: cannot find main module\n")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(out, "go: cannot find main module") {
		t.Errorf("stray line not passed through:\n%s", out)
	}
	if got := lastLine(out); !strings.Contains(got, "no test results") {
		t.Errorf("last line %q", got)
	}
}

var e2eSkip = ev(
	`{"Action":"run","Package":"example.com/m/e2e","Test":"TestPostfix"}`,
	`{"Action":"output","Package":"example.com/m/e2e","Test":"TestPostfix","Output":"    helpers_test.go:102: postmap is not installed\n"}`,
	`{"Action":"output","Package":"example.com/m/e2e","Test":"TestPostfix","Output":"--- SKIP: TestPostfix (0.00s)\n"}`,
	`{"Action":"skip","Package":"example.com/m/e2e","Test":"TestPostfix"}`,
	`{"Action":"pass","Package":"example.com/m/e2e"}`,
)

func TestSkipInStrictPackageFails(t *testing.T) {
	t.Setenv("SHITENNO_ALLOW_SKIP", "")
	out, code := summarise(t, passing+e2eSkip, "-noskip", pkgE)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(out, "postmap is not installed") {
		t.Errorf("skip reason missing:\n%s", out)
	}
	if got := lastLine(out); !strings.HasPrefix(got, "FAIL: tests 2 passed, 0 failed, 1 skipped; 1 e2e test(s) skipped") ||
		!strings.Contains(got, "SHITENNO_ALLOW_SKIP=1") {
		t.Errorf("last line %q", got)
	}
	// The prefix form names the package too.
	if _, code := summarise(t, e2eSkip, "-noskip", "example.com/m/..."); code != 1 {
		t.Errorf("-noskip example.com/m/...: exit %d, want 1", code)
	}
	// A skip elsewhere is only counted.
	if _, code := summarise(t, e2eSkip, "-noskip", pkgA); code != 0 {
		t.Errorf("-noskip %s: exit %d, want 0", pkgA, code)
	}
}

func TestAllowSkip(t *testing.T) {
	t.Setenv("SHITENNO_ALLOW_SKIP", "1")
	out, code := summarise(t, passing+e2eSkip, "-noskip", pkgE)
	if code != 0 {
		t.Errorf("exit %d, want 0\n%s", code, out)
	}
	if got, want := lastLine(out), "PASS: tests 2 passed, 0 failed, 1 skipped"; got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
}

func TestSaveAndTotal(t *testing.T) {
	t.Setenv("SHITENNO_ALLOW_SKIP", "")
	dir := t.TempDir()
	a, b := filepath.Join(dir, "unit.json"), filepath.Join(dir, "e2e.json")
	if _, code := summarise(t, passing, "-o", a); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if _, code := summarise(t, e2eSkip, "-o", b); code != 0 {
		t.Fatalf("exit %d", code)
	}
	out, code := summarise(t, "", "-noskip", pkgE, a, b)
	if code != 1 {
		t.Errorf("total: exit %d, want 1", code)
	}
	if strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "FAIL: tests 2 passed, 0 failed, 1 skipped;") {
		t.Errorf("total mode prints one line, got:\n%s", out)
	}
	if _, code := summarise(t, "", a); code != 0 {
		t.Errorf("total of passing run: exit %d", code)
	}
}

// TestRealGoTest runs `go test -json` on a throwaway module, so that a
// change in the toolchain's event stream shows up here.
func TestRealGoTest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module")
	}
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/m\n\ngo 1.22\n")
	write("m_test.go", `package m

import "testing"

func TestPass(t *testing.T) {}
func TestFail(t *testing.T) { t.Error("wrong answer") }
func TestSkip(t *testing.T) { t.Skip("no peer") }
func TestSubs(t *testing.T) {
	t.Run("a", func(t *testing.T) {})
	t.Run("b", func(t *testing.T) { t.Skip("later") })
}
`)
	cmd := exec.Command("go", "test", "-json", "-count=1", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	raw, _ := cmd.CombinedOutput()
	t.Setenv("SHITENNO_ALLOW_SKIP", "")
	out, code := summarise(t, string(raw), "-noskip", "example.com/m")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{"wrong answer", "no peer", "FAIL\texample.com/m"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if got, want := lastLine(out), "FAIL: tests 2 passed, 1 failed, 1 skipped (+1 skipped subtests); 2 e2e test(s) skipped"; !strings.HasPrefix(got, want) {
		t.Errorf("last line %q, want prefix %q", got, want)
	}
}
