package testutil

// A tiny test PKI: keys, CAs, server and client certificates and OCSP
// responses, generated per test (no network, no fixtures).

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// CA is a test certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

var certSerial atomic.Int64

// NewKey makes a P-256 key.
func NewKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Sign issues tmpl (for pub) from ca; with ca nil it is self-signed with
// key. A template without a serial number gets a fresh one, one without
// NotBefore is valid from an hour ago for a day.
func Sign(t testing.TB, tmpl *x509.Certificate, pub any, ca *CA, key crypto.Signer) *x509.Certificate {
	t.Helper()
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(1000 + certSerial.Add(1))
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	if ca != nil {
		return SignCert(t, tmpl, ca.Cert, pub, ca.Key)
	}
	return SignCert(t, tmpl, tmpl, pub, key)
}

// NewCA makes a CA named name, signed by parent (nil: a root).
func NewCA(t testing.TB, name string, parent *CA) *CA {
	t.Helper()
	k := NewKey(t)
	c := Sign(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, &k.PublicKey, parent, k)
	return &CA{Cert: c, Key: k}
}

// leafTemplate is an end-entity certificate for cn; a server's also names
// cn and 127.0.0.1.
func leafTemplate(cn string, usage x509.ExtKeyUsage) *x509.Certificate {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.DNSNames = []string{cn}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	return tmpl
}

// Leaf issues an end-entity certificate for cn and usage, with a new key;
// tweak (if not nil) may adjust the template first.
func (ca *CA) Leaf(t testing.TB, cn string, usage x509.ExtKeyUsage, tweak func(*x509.Certificate)) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k := NewKey(t)
	tmpl := leafTemplate(cn, usage)
	if tweak != nil {
		tweak(tmpl)
	}
	return Sign(t, tmpl, &k.PublicKey, ca, nil), k
}

// Server is Leaf for a TLS server named cn (and 127.0.0.1).
func (ca *CA) Server(t testing.TB, cn string, tweak func(*x509.Certificate)) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	return ca.Leaf(t, cn, x509.ExtKeyUsageServerAuth, tweak)
}

// OCSP signs an OCSP response (tmpl) about a certificate ca issued, with
// ca's key or, when responder is set, with a delegated responder's.
// Without ThisUpdate it is valid from an hour ago for two hours.
func (ca *CA) OCSP(t testing.TB, tmpl ocsp.Response, responder *x509.Certificate, responderKey crypto.Signer) []byte {
	t.Helper()
	if tmpl.ThisUpdate.IsZero() {
		tmpl.ThisUpdate = time.Now().Add(-time.Hour)
		tmpl.NextUpdate = time.Now().Add(time.Hour)
	}
	rc, rk := ca.Cert, ca.Key
	if responder != nil {
		rc, rk = responder, responderKey
	}
	der, err := ocsp.CreateResponse(ca.Cert, rc, tmpl, rk)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// SelfSigned makes a self-signed TLS server certificate for cn (and
// 127.0.0.1) and its key.
func SelfSigned(t testing.TB, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k := NewKey(t)
	return Sign(t, leafTemplate(cn, x509.ExtKeyUsageServerAuth), &k.PublicKey, nil, k), k
}

// PEMCert encodes c as a PEM CERTIFICATE block.
func PEMCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// PEMKey encodes k as a PEM PRIVATE KEY block (PKCS #8).
func PEMKey(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// TLSChain makes a tls.Certificate of a leaf, its key and intermediates.
func TLSChain(leaf *x509.Certificate, key crypto.Signer, rest ...*x509.Certificate) tls.Certificate {
	tc := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	for _, c := range rest {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc
}
