package testutil

import (
	"crypto/rand"
	"crypto/x509"
	"testing"
)

// SignCert makes the certificate tmpl describes for the public key pub,
// signed by parent's key priv (tmpl itself and pub's own key for a
// self-signed one).
func SignCert(t testing.TB, tmpl, parent *x509.Certificate, pub, priv any) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
