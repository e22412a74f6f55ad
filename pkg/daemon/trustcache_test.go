package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shitenno/shitenno/internal/testutil"
	"github.com/shitenno/shitenno/pkg/config"
)

// writeCA writes a fresh self-signed CA certificate (PEM) to path.
func writeCA(t *testing.T, path, name string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der := testutil.SignCert(t, tmpl, tmpl, &key.PublicKey, key).Raw
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReloadTrustChangeDropsCache: replies cached under one set of TLS
// trust settings are not served after a reload changes them (a CA file's
// contents included); a reload that changes nothing about trust keeps
// the cache.
func TestReloadTrustChangeDropsCache(t *testing.T) {
	url, hits := testutil.CountingBackend(t, `{"Status":"OK","Data":"v"}`)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	writeCA(t, ca, "first CA")
	const pin = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	parse := func(extra string) *config.Config {
		t.Helper()
		c, err := config.Parse("t.conf", []byte("RemoteURL = \""+url+"/\"\nCertPool = \""+ca+"\"\n"+extra+"[Cache]\nDefaultTTL = \"1h\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name   string
		before string
		after  string
		change func()
		drop   bool
	}{
		{"log level only", "", "LogLevel = \"debug\"\n", nil, false},
		{"ServerName", "", "ServerName = \"other.example\"\n", nil, true},
		{"HPKP", "", "HPKP = [\"" + pin + "\"]\n", nil, true},
		{"OCSP", "", "OCSP = \"require-stapled\"\n", nil, true},
		{"SystemCertPool", "", "SystemCertPool = true\n", nil, true},
		{"CA file contents", "", "", func() { writeCA(t, ca, "second CA") }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeCA(t, ca, "first CA")
			b, err := NewBackend(parse(tc.before), nil, false)
			if err != nil {
				t.Fatal(err)
			}
			hits.Store(0)
			for range 2 {
				if _, err := b.Lookup(context.Background(), "virtual", "k"); err != nil {
					t.Fatal(err)
				}
			}
			if tc.change != nil {
				tc.change()
			}
			if err := b.Reload(parse(tc.after)); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Lookup(context.Background(), "virtual", "k"); err != nil {
				t.Fatal(err)
			}
			want := int64(1)
			if tc.drop {
				want = 2
			}
			if got := hits.Load(); got != want {
				t.Fatalf("%d backend requests, want %d (cache dropped: %v)", got, want, tc.drop)
			}
		})
	}
}
