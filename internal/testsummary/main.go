// Command testsummary reads `go test -json` output and prints what a person
// needs from it: the output of failed tests, one line per skipped test with
// its reason, the package result lines, and as its last line the number of
// tests that passed, failed and were skipped. Its exit status is the verdict:
// a failed test or package, no results at all, or a skipped test in a
// package named by -noskip (unless SHITENNO_ALLOW_SKIP=1) fail the run.
//
//	go test -json ./... 2>&1 | go run ./internal/testsummary [-o FILE] [-noskip PKG]...
//	go run ./internal/testsummary [-noskip PKG]... FILE...   # totals of saved runs
//
// With FILE arguments it only counts (the saved runs were printed when they
// ran) and prints the total. Lines that are not JSON test events (compiler
// errors of old toolchains, stray stderr) are passed through unchanged.
// `make test` uses it; it lives under internal/ because it is a build tool,
// not something shitenno installs.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json), build events included.
type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	ImportPath  string // build-output, build-fail
	FailedBuild string // package fail caused by a build failure
}

type testKey struct{ pkg, test string }

// summary accumulates the events of one or more runs.
type summary struct {
	out    io.Writer // nil: count only
	noskip []string  // package paths (or prefixes ending in "/...") where a skip fails

	passed, failed, skipped int // top-level tests
	subSkipped              int // skipped subtests (not in the counts above)
	failedPkgs              []string
	badSkips                []string // skipped tests in a -noskip package
	events                  int

	buf     map[testKey][]string // output of running tests
	running map[testKey]bool
	pkgFail map[string]bool
}

func newSummary(out io.Writer, noskip []string) *summary {
	return &summary{
		out: out, noskip: noskip,
		buf: map[testKey][]string{}, running: map[testKey]bool{}, pkgFail: map[string]bool{},
	}
}

func (s *summary) print(text string) {
	if s.out != nil {
		io.WriteString(s.out, text)
	}
}

// strict reports whether a skipped test in pkg fails the run.
func (s *summary) strict(pkg string) bool {
	for _, p := range s.noskip {
		if p == pkg || (strings.HasSuffix(p, "/...") && (pkg == strings.TrimSuffix(p, "/...") || strings.HasPrefix(pkg, strings.TrimSuffix(p, "...")))) {
			return true
		}
	}
	return false
}

// line handles one input line.
func (s *summary) line(l string) {
	var e event
	if !strings.HasPrefix(l, "{") || json.Unmarshal([]byte(l), &e) != nil || e.Action == "" {
		s.print(l + "\n")
		return
	}
	s.events++
	s.handle(e)
}

func (s *summary) handle(e event) {
	k := testKey{e.Package, e.Test}
	switch {
	case e.Action == "build-output":
		s.print(e.Output)
	case e.Action == "build-fail":
		// The package's own fail event follows and is counted there.
	case e.Test == "":
		s.pkgEvent(e)
	case e.Action == "run":
		s.running[k] = true
	case e.Action == "output":
		// Progress lines say nothing a summary needs.
		if !strings.HasPrefix(strings.TrimLeft(e.Output, " "), "=== ") {
			s.buf[k] = append(s.buf[k], e.Output)
		}
	case e.Action == "pass" || e.Action == "fail" || e.Action == "skip":
		s.testDone(k, e.Action)
	}
}

func (s *summary) testDone(k testKey, action string) {
	top := !strings.Contains(k.test, "/")
	out := s.buf[k]
	delete(s.buf, k)
	delete(s.running, k)
	switch action {
	case "pass":
		if top {
			s.passed++
		}
	case "fail":
		if top {
			s.failed++
		}
		s.print(strings.Join(out, ""))
	case "skip":
		if top {
			s.skipped++
		} else {
			s.subSkipped++
		}
		// "--- SKIP: TestX (0.00s)" followed by the indented reason.
		s.print(strings.Join(out, ""))
		if s.strict(k.pkg) {
			s.badSkips = append(s.badSkips, k.pkg+"."+k.test)
		}
	}
}

func (s *summary) pkgEvent(e event) {
	switch e.Action {
	case "output":
		if e.Output != "PASS\n" && e.Output != "FAIL\n" && !strings.HasPrefix(e.Output, "=== ") {
			s.print(e.Output)
		}
	case "fail":
		s.pkgFail[e.Package] = true
		s.failedPkgs = append(s.failedPkgs, e.Package)
		// Tests still running when the package failed (a panic, a
		// timeout) never get an event of their own: they failed too.
		var left []testKey
		for k := range s.running {
			if k.pkg == e.Package {
				left = append(left, k)
			}
		}
		sort.Slice(left, func(i, j int) bool { return left[i].test < left[j].test })
		for _, k := range left {
			s.testDone(k, "fail")
		}
	}
}

// verdict returns the last line and whether the run passed.
func (s *summary) verdict(allowSkip bool) (string, bool) {
	counts := fmt.Sprintf("%d passed, %d failed, %d skipped", s.passed, s.failed, s.skipped)
	if s.subSkipped > 0 {
		counts += fmt.Sprintf(" (+%d skipped subtests)", s.subSkipped)
	}
	var why []string
	if s.events == 0 {
		why = append(why, "no test results (did go test run?)")
	}
	if n := len(s.failedPkgs); n > 0 && s.failed == 0 {
		why = append(why, fmt.Sprintf("%d package(s) failed: %s", n, strings.Join(s.failedPkgs, " ")))
	}
	if len(s.badSkips) > 0 && !allowSkip {
		why = append(why, fmt.Sprintf("%d e2e test(s) skipped, which tests nothing against the real peers (SHITENNO_ALLOW_SKIP=1 accepts that)", len(s.badSkips)))
	}
	ok := s.failed == 0 && len(why) == 0
	if ok {
		return "PASS: tests " + counts, true
	}
	l := "FAIL: tests " + counts
	if len(why) > 0 {
		l += "; " + strings.Join(why, "; ")
	}
	return l, false
}

func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		s.line(sc.Text())
	}
	return sc.Err()
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("testsummary", flag.ContinueOnError)
	fs.SetOutput(stderr)
	save := fs.String("o", "", "also write the raw input to `FILE` (for a later total)")
	var noskip listFlag
	fs.Var(&noskip, "noskip", "a skipped test in `PKG` (or PKG/...) fails the run unless SHITENNO_ALLOW_SKIP=1; repeatable")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	allowSkip := os.Getenv("SHITENNO_ALLOW_SKIP") == "1"
	var s *summary
	if fs.NArg() > 0 {
		if *save != "" {
			fmt.Fprintln(stderr, "testsummary: -o only applies to standard input")
			return 2
		}
		s = newSummary(nil, noskip)
		for _, name := range fs.Args() {
			f, err := os.Open(name)
			if err != nil {
				fmt.Fprintln(stderr, "testsummary:", err)
				return 1
			}
			err = s.read(f)
			f.Close()
			if err != nil {
				fmt.Fprintf(stderr, "testsummary: %s: %v\n", name, err)
				return 1
			}
		}
	} else {
		s = newSummary(stdout, noskip)
		in := stdin
		if *save != "" {
			f, err := os.Create(*save)
			if err != nil {
				fmt.Fprintln(stderr, "testsummary:", err)
				return 1
			}
			defer f.Close()
			in = io.TeeReader(stdin, f)
		}
		if err := s.read(in); err != nil {
			fmt.Fprintln(stderr, "testsummary:", err)
			return 1
		}
	}
	last, ok := s.verdict(allowSkip)
	fmt.Fprintln(stdout, last)
	if !ok {
		return 1
	}
	return 0
}
