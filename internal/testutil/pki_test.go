package testutil

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
)

// TestPKI: a server certificate from an intermediate verifies against the
// root for its name and 127.0.0.1; a self-signed one against itself; the
// PEM encodings load as a key pair.
func TestPKI(t *testing.T) {
	root := NewCA(t, "root", nil)
	sub := NewCA(t, "sub", root)
	srv, key := sub.Server(t, "srv.test", nil)
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root.Cert)
	inter.AddCert(sub.Cert)
	for _, name := range []string{"srv.test", "127.0.0.1"} {
		if _, err := srv.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if srv.SerialNumber.Cmp(sub.Cert.SerialNumber) == 0 {
		t.Error("two certificates with one serial number")
	}
	if _, err := tls.X509KeyPair(PEMCert(srv), PEMKey(t, key)); err != nil {
		t.Error(err)
	}
	if c := TLSChain(srv, key, sub.Cert); len(c.Certificate) != 2 || c.Leaf != srv {
		t.Errorf("TLSChain: %d certificates", len(c.Certificate))
	}
	self, _ := SelfSigned(t, "self.test")
	pool := x509.NewCertPool()
	pool.AddCert(self)
	if _, err := self.Verify(x509.VerifyOptions{DNSName: "self.test", Roots: pool}); err != nil {
		t.Error(err)
	}
}
