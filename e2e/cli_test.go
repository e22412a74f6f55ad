package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCommandLine: the CLI contract of the three binaries — config errors
// name file, line and key and exit 2 (so systemd does not restart in a
// loop); --check-config says what would be done.
func TestCommandLine(t *testing.T) {
	dir := testDir(t)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.conf", "RemoteURL = \"http://127.0.0.1:8080/api/\"\nSocketPrefix = \""+dir+"/s\"\n[Nginx]\nListen = \"127.0.0.1:10029\"\n")
	for _, proto := range []string{"postfix", "dovecot", "nginx"} {
		t.Run(proto, func(t *testing.T) {
			bin := binary(t, "shitenno-"+proto)
			for _, tc := range []struct {
				name    string
				args    []string
				code    int
				out     string // substring of stdout+stderr
				notFile bool
			}{
				{"missing file", []string{"--config", filepath.Join(dir, "nope.conf")}, 2,
					filepath.Join(dir, "nope.conf") + ": cannot read configuration: no such file or directory", false},
				{"bad TOML", []string{"--config", write("bad-"+proto+".conf", "RemoteURL = \"http://a/\"\nTimeout = 5s\n")}, 2,
					"bad-" + proto + ".conf:2: Timeout:", false},
				{"unknown key", []string{"--config", write("unk-"+proto+".conf", "RemoteURL = \"http://a/\"\n\n[Postfix]\nSokcet = \"x\"\n")}, 2,
					"unk-" + proto + ".conf:4: Postfix.Sokcet: unknown key", false},
				{"wrong type", []string{"--config", write("type-"+proto+".conf", "RemoteURL = 42\n")}, 2,
					"type-" + proto + ".conf:1: RemoteURL:", false},
				{"missing RemoteURL", []string{"--config", write("norem-"+proto+".conf", "Timeout = \"1s\"\n")}, 2,
					"norem-" + proto + ".conf: RemoteURL: required key is missing", false},
				{"bad URL", []string{"--config", write("url-"+proto+".conf", "RemoteURL = \"ftp://x/\"\n")}, 2,
					"url-" + proto + ".conf:1: RemoteURL: invalid URL", false},
				{"check-config", []string{"--config", good, "--check-config"}, 0,
					"listen: unix:" + dir + "/s-" + proto, false},
				{"version", []string{"--version"}, 0, "shitenno-" + proto + " ", false},
				{"help", []string{"--help"}, 0, "--check-config", false},
				{"bad flag", []string{"--bogus"}, 2, "unknown flag", false},
			} {
				out, errOut, code := run(t, 10*time.Second, bin, tc.args...)
				all := out + errOut
				if code != tc.code || !strings.Contains(all, tc.out) {
					t.Errorf("%s: exit %d, output %q; want exit %d and %q", tc.name, code, all, tc.code, tc.out)
				}
			}
			out, _, _ := run(t, 10*time.Second, bin, "--config", good, "--check-config")
			if !strings.Contains(out, "backend: POST http://127.0.0.1:8080/api/<Verb>") {
				t.Errorf("check-config does not name the backend: %q", out)
			}
			if proto == "nginx" && !strings.Contains(out, "listen: tcp:127.0.0.1:10029") {
				t.Errorf("check-config does not name the TCP listener: %q", out)
			}
			// --check-config creates nothing.
			if _, err := os.Lstat(filepath.Join(dir, "s-"+proto)); !os.IsNotExist(err) {
				t.Errorf("--check-config created the socket: %v", err)
			}
		})
	}
}

// TestMaxProcs: each daemon process runs its Go code on MaxProcs CPUs:
// its start-up debug line reports the GOMAXPROCS in force.
func TestMaxProcs(t *testing.T) {
	t.Setenv("GOMAXPROCS", "") // one set here would win over MaxProcs
	for _, tc := range []struct {
		proto, top, want string
	}{
		{"postfix", "MaxProcs = 1", "max_procs=1"},
		{"dovecot", "MaxProcs = 3", "max_procs=3"},
		{"nginx", "MaxProcs = 2", "max_procs=2"},
	} {
		t.Run(tc.proto, func(t *testing.T) {
			d := startDaemonWith(t, testDir(t), tc.proto, "http://127.0.0.1:9/", "LogLevel = \"debug\"\n"+tc.top, "")
			waitFor(t, 5*time.Second, tc.want+" in the log", func() bool {
				return strings.Contains(d.Output.String(), tc.want)
			})
		})
	}
}
