package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const doc = "## Intro\n\nfirst\n\n## Postfix\n\nUse `proxy:` and **bold** and *em* and [the README](https://x/y).\n\n" +
	"```\n# main.cf\n.dot line\nback\\slash\n```\n\n### Replies\n\n- one\n  continued\n- two\n\n" +
	"| key | meaning |\n|---|---|\n| `a|b` | -x- |\n\n## Later\n\nnot wanted\n"

func gen(t *testing.T, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	md := filepath.Join(dir, "d.md")
	if err := os.WriteFile(md, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	help := filepath.Join(dir, "help")
	os.WriteFile(help, []byte("Usage: prog [--x]\n       prog query K\n\nDoes things.\n\n  -c, --config string   configuration file\n"), 0o644)
	var b strings.Builder
	for i, a := range args {
		args[i] = strings.ReplaceAll(strings.ReplaceAll(a, "DOC", md), "HELP", help)
	}
	if err := run(args, &b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestSection(t *testing.T) {
	out := gen(t, "-name", "prog", "-section", "8", "-summary", "does things", "-usage", "HELP",
		"-seealso", "postfix(1),shitenno.conf(5)", "DOC#Postfix")
	for _, want := range []string{
		`.TH "PROG" "8"`,
		".SH NAME\nprog \\- does things\n",
		".SH SYNOPSIS\nprog [\\-\\-x]\n.br\nprog query K\n",
		".SH DESCRIPTION\nDoes things.\n",
		".TP\n\\fB\\-c, \\-\\-config string\\fR\nconfiguration file\n",
		`.SH "POSTFIX"`,
		`Use \fBproxy:\fR and \fBbold\fR and \fIem\fR and the README <https://x/y>.`,
		".nf\n# main.cf\n\\&.dot line\nback\\eslash\n.fi\n",
		`.SS "Replies"`,
		".IP \\(bu 4\none continued\n",
		".TP\n\\fBa|b\\fR\n\\fBmeaning:\\fR \\-x\\-\n",
		".SH SEE ALSO\n.BR postfix (1) ,\n.BR shitenno.conf (5)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "not wanted") || strings.Contains(out, "first") {
		t.Errorf("other sections included:\n%s", out)
	}
}

func TestMissingHeading(t *testing.T) {
	var b strings.Builder
	md := filepath.Join(t.TempDir(), "d.md")
	os.WriteFile(md, []byte(doc), 0o644)
	if err := run([]string{"-name", "p", "-summary", "s", md + "#Nope"}, &b); err == nil {
		t.Fatal("a missing heading must be an error (docs renamed under the man page)")
	}
}

// TestManAcceptsIt: man(1) formats the page without warnings, when it is
// installed (the Debian package build runs this generator anyway).
func TestManAcceptsIt(t *testing.T) {
	man, err := exec.LookPath("man")
	if err != nil {
		t.Skip("man is not installed")
	}
	out := gen(t, "-name", "prog", "-summary", "does things", "-usage", "HELP", "DOC")
	page := filepath.Join(t.TempDir(), "prog.8")
	os.WriteFile(page, []byte(out), 0o644)
	cmd := exec.Command(man, "--warnings", "-l", page)
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "LC_ALL=C.UTF-8")
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("man: %v\n%s", err, res)
	}
	if strings.Contains(string(res), "warning") {
		t.Errorf("man warns:\n%s", res)
	}
}
