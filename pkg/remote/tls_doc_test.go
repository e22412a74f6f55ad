package remote_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shitenno/shitenno/internal/testutil"
	"github.com/shitenno/shitenno/pkg/config"
	"github.com/shitenno/shitenno/pkg/daemon"
	"github.com/shitenno/shitenno/pkg/remote"
)

// docBlock returns the fenced code block that follows marker in doc.
func docBlock(t *testing.T, doc, marker string) string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "<!-- "+marker+" -->")
	if !ok {
		t.Fatalf("docs/tls.md has no %q marker", marker)
	}
	_, rest, ok = strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("no code block after %q", marker)
	}
	_, rest, _ = strings.Cut(rest, "\n") // the info string (toml, sh)
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("unterminated code block after %q", marker)
	}
	return block
}

func replaceAll(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("the documented example no longer contains %q", old)
	}
	return strings.ReplaceAll(s, old, new)
}

// TestDocsExample follows docs/tls.md ("Securing the backend link"): the
// openssl pin command gives the pin shitenno computes, and the example
// configuration, with its files and pins filled in, looks a key up over
// HTTPS against a backend that requires the client certificate.
func TestDocsExample(t *testing.T) {
	raw, err := os.ReadFile("../../docs/tls.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	dir := t.TempDir()

	ca := testutil.NewCA(t, "Backend CA", nil)
	leaf, leafKey := ca.Server(t, "backend.example.net", nil)
	backup, _ := ca.Server(t, "backend.example.net", nil)
	clientCA := testutil.NewCA(t, "Client CA", nil)
	client, clientKey := clientCA.Leaf(t, "mx1", x509.ExtKeyUsageClientAuth, nil)
	remote.WriteTestFile(t, dir, "backend-ca.pem", testutil.PEMCert(ca.Cert))
	remote.WriteTestFile(t, dir, "client.pem", testutil.PEMCert(client))
	remote.WriteTestFile(t, dir, "client.key", testutil.PEMKey(t, clientKey))
	remote.WriteTestFile(t, dir, "backend.pem", testutil.PEMCert(leaf))

	pin := remote.SPKIPin(leaf)
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is needed to check the documented pin command")
		}
		t.Log("openssl not installed: the documented pin command is not checked")
	} else {
		cmd := exec.Command("sh", "-ec", docBlock(t, doc, "example:pin"))
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("documented pin command: %v", err)
		}
		if got := strings.TrimSpace(string(out)); got != pin {
			t.Fatalf("documented pin command gives %q, shitenno computes %q", got, pin)
		}
	}

	pool := x509.NewCertPool()
	pool.AddCert(clientCA.Cert)
	b := remote.NewTLSBackend(t, testutil.TLSChain(leaf, leafKey), func(c *tls.Config) {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = pool
	})
	_, port := remote.HostPort(t, b.URL)

	conf := docBlock(t, doc, "example:config")
	conf = replaceAll(t, conf, "/etc/shitenno/", dir+string(filepath.Separator))
	conf = replaceAll(t, conf, "PIN-OF-THE-BACKEND-KEY", pin)
	conf = replaceAll(t, conf, "PIN-OF-THE-BACKUP-KEY", remote.SPKIPin(backup))
	conf = replaceAll(t, conf, "https://backend.example.net/", "https://backend.example.net:"+port+"/")
	cfg, err := config.Parse("docs/tls.md", []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	// The TLS setup the daemons build from this configuration: the
	// mapping under test is theirs, not a copy of it.
	be, err := daemon.NewBackend(cfg, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := remote.NewTLSClient(t, cfg.RemoteURL[0], be.TLS(), b.Listener.Addr().String())
	remote.LookupOK(t, c)
	if cn, _ := b.Last(); cn != "mx1" {
		t.Errorf("backend saw client %q, want mx1", cn)
	}
}
