package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shitenno/shitenno/pkg/config"
	"github.com/shitenno/shitenno/pkg/daemon"
)

// unitKeys reads KEY=VALUE lines of one section of a unit file.
func unitKeys(t *testing.T, path, section string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kv := map[string]string{}
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			cur = strings.Trim(line, "[]")
		case cur == section:
			k, v, _ := strings.Cut(line, "=")
			kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return kv
}

// TestSocketUnitsMatchListeners: every shipped shitenno-postfix*.socket
// names (FileDescriptorName=) a listener the daemon recognises and is the
// unit the daemon names for it, passes its socket to shitenno-postfix's
// service, and every listener has a unit. A unit without the name would
// be called shitenno-postfix-x.socket by systemd, which the daemon would
// hand to the socketmap listener, or refuse.
func TestSocketUnitsMatchListeners(t *testing.T) {
	cfg, err := config.Parse("test.conf", []byte("RemoteURL = \"http://127.0.0.1:1/\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	eps := program.Endpoints(cfg)
	units, err := filepath.Glob("../../init/systemd/shitenno-postfix*.socket")
	if err != nil || len(units) < 2 {
		t.Fatalf("units: %v %v", units, err)
	}
	seen := map[string]bool{}
	for _, u := range units {
		name := filepath.Base(u)
		seen[name] = true
		sock := unitKeys(t, u, "Socket")
		fd := sock["FileDescriptorName"]
		if fd == "" {
			t.Errorf("%s: no FileDescriptorName=", name)
			continue
		}
		if fd == daemon.ControlFDName {
			// The brute-force control socket: no protocol listener.
			if name != "shitenno-postfix-control.socket" || sock["Service"] != "shitenno-postfix.service" || sock["SocketMode"] != "0600" {
				t.Errorf("%s: control socket unit %+v", name, sock)
			}
			continue
		}
		i := slices.IndexFunc(eps, func(e daemon.Endpoint) bool { return e.Name == fd || slices.Contains(e.Aliases, fd) })
		if i < 0 {
			t.Errorf("%s: FileDescriptorName=%s is not a listener of shitenno-postfix (%v)", name, fd, eps)
			continue
		}
		if eps[i].Name != fd {
			t.Errorf("%s: FileDescriptorName=%s is an old alias; use %s", name, fd, eps[i].Name)
		}
		if eps[i].Unit != name {
			t.Errorf("%s: the daemon names %s for listener %s", name, eps[i].Unit, fd)
		}
		if name != "shitenno-postfix.socket" && sock["Service"] != "shitenno-postfix.service" {
			t.Errorf("%s: Service=%q, want shitenno-postfix.service (one process serves every listener)", name, sock["Service"])
		}
		if unitKeys(t, u, "Install")["WantedBy"] != "sockets.target" {
			t.Errorf("%s: not WantedBy=sockets.target", name)
		}
	}
	for _, e := range eps {
		if !seen[e.Unit] {
			t.Errorf("listener %s: no init/systemd/%s", e.Name, e.Unit)
		}
	}
}

// TestCheckConfigListsEveryListener: --check-config prints one line per
// listener: where a configured one listens (and its unit), and for the
// others which key or socket unit turns them on.
func TestCheckConfigListsEveryListener(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "shitenno.conf")
	write := func(body string) string {
		t.Helper()
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		if code := program.Run([]string{"--config", conf, "--check-config"}, &out, &errb); code != daemon.ExitOK {
			t.Fatalf("--check-config: exit %d\n%s%s", code, out.String(), errb.String())
		}
		return out.String()
	}
	base := fmt.Sprintf("RemoteURL = \"http://127.0.0.1:1/\"\n[Postfix]\nSocket = %q\nUID = \"\"\nGID = \"\"\nUser = \"\"\n", filepath.Join(dir, "pf"))

	out := write(base)
	for _, want := range []string{
		"listen: unix:" + filepath.Join(dir, "pf") + " (socketmap, ",
		"; systemd: shitenno-postfix.socket)\n",
		"listen: policy off (set Postfix.PolicySocket, or under systemd enable shitenno-postfix-policy.socket)\n",
		"listen: tcptable off (set Postfix.TCPTable.Listen; under systemd also enable shitenno-postfix-tcptable@PORT.socket)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("defaults: output lacks %q:\n%s", want, out)
		}
	}

	out = write(base + fmt.Sprintf("Listen = \"127.0.0.1:10027\"\nPolicySocket = %q\nPolicyListen = \"127.0.0.1:10040\"\n", filepath.Join(dir, "policy")) +
		fmt.Sprintf("SASLSocket = %q\nSASLListen = \"127.0.0.1:10043\"\n", filepath.Join(dir, "auth")) +
		"[[Postfix.TCPTable]]\nListen = \"127.0.0.1:10041\"\nVerb = \"virtual\"\n" +
		"[[Postfix.TCPTable]]\nListen = \"127.0.0.1:10042\"\nVerb = \"transport\"\n")
	wants := []string{
		"listen: tcp:127.0.0.1:10027 (socketmap; systemd: shitenno-postfix.socket)\n",
		"listen: unix:" + filepath.Join(dir, "policy") + " (policy, ",
		"listen: tcp:127.0.0.1:10040 (policy; systemd: shitenno-postfix-policy.socket)\n",
		"listen: tcp:127.0.0.1:10041 (tcptable; systemd: shitenno-postfix-tcptable@10041.socket)\n",
		"listen: tcp:127.0.0.1:10042 (tcptable; systemd: shitenno-postfix-tcptable@10042.socket)\n",
	}
	wants = append(wants, "listen: unix:"+filepath.Join(dir, "auth")+" (sasl, ",
		"listen: tcp:127.0.0.1:10043 (sasl; systemd: shitenno-postfix-sasl.socket)\n")
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("every listener: output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, " off (") {
		t.Errorf("a configured listener reported off:\n%s", out)
	}
}
