package remote

// TLS for the backend link: CA pool, client certificate, SNI, SPKI pins and
// stapled OCSP. Every check runs inside the handshake (tls.Config
// VerifyConnection), so a request — and the password it may carry — is only
// ever written to a server that passed all of them.

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"
)

// OCSP modes (TLSOptions.OCSP).
const (
	OCSPOff            = "off"             // ignore stapled responses
	OCSPIfStapled      = "if-stapled"      // check a staple when there is one (default)
	OCSPRequireStapled = "require-stapled" // refuse a server that staples nothing
)

// ocspSkew tolerates clock differences between us and the OCSP responder
// when judging ThisUpdate/NextUpdate.
const ocspSkew = 5 * time.Minute

// ocspMaxAgeNoNext bounds the age of a response that has no NextUpdate
// (RFC 6960 §4.2.2.1 allows that: "newer information is always
// available"); without a bound such a staple would be fresh forever.
const ocspMaxAgeNoNext = 7 * 24 * time.Hour

// maxPEMFile bounds a CertPool/ClientCert/ClientKey file: these are
// operator files, but a wrong path (a log, a device) must not be read whole.
const maxPEMFile = 4 << 20

// TLSOptions are the TLS settings of the backend link, as in the
// configuration file.
type TLSOptions struct {
	// CertPool lists PEM files of CAs trusted for the backend. When set,
	// the system roots are not used unless SystemCertPool is true.
	CertPool []string
	// SystemCertPool adds the system roots to CertPool.
	SystemCertPool bool
	// ClientCert and ClientKey are the client certificate and its key
	// (PEM). ClientKey may be empty when ClientCert holds both.
	ClientCert, ClientKey string
	// ServerName is verified in the backend certificate and sent as SNI;
	// empty means the host of the backend URL.
	ServerName string
	// HPKP lists pins: base64 SHA-256 of a DER SubjectPublicKeyInfo. When
	// set, a certificate of the verified chain must match one of them.
	HPKP []string
	// OCSP is OCSPOff, OCSPIfStapled or OCSPRequireStapled; empty means
	// OCSPIfStapled.
	OCSP string
}

// TLSSetup is a built TLS configuration for the backend link. Its client
// certificate can be replaced at run time with Reload.
type TLSSetup struct {
	opts TLSOptions
	conf *tls.Config
	pins map[[sha256.Size]byte]bool
	ocsp string
	// pinList keeps the configured order for error details.
	pinList []string

	cert     atomic.Pointer[tls.Certificate]
	sessions sessionCache
	now      func() time.Time // tests move the clock
}

// NewTLS reads the files named in o and builds the TLS setup. Errors name
// the file or key that failed.
func NewTLS(o TLSOptions) (*TLSSetup, error) {
	s := &TLSSetup{opts: o, ocsp: o.OCSP, now: time.Now}
	if s.ocsp == "" {
		s.ocsp = OCSPIfStapled
	}
	switch s.ocsp {
	case OCSPOff, OCSPIfStapled, OCSPRequireStapled:
	default:
		return nil, optionErr("OCSP", " must be %s, %s or %s, not %q", OCSPOff, OCSPIfStapled, OCSPRequireStapled, o.OCSP)
	}

	roots, err := rootPool(o)
	if err != nil {
		return nil, err
	}
	if s.pins, s.pinList, err = parsePins(o.HPKP); err != nil {
		return nil, err
	}

	if o.ClientKey != "" && o.ClientCert == "" {
		return nil, optionErr("ClientKey", " set without ClientCert")
	}
	if o.ClientCert != "" {
		c, err := loadKeyPair(o.ClientCert, o.ClientKey)
		if err != nil {
			return nil, err
		}
		s.cert.Store(c)
	}
	s.sessions.now = func() time.Time { return s.now() }
	s.sessions.reset()

	s.conf = &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    roots,
		ServerName: o.ServerName,
		// Resumed handshakes skip the certificate exchange; VerifyConnection
		// still runs on them with the chains and staple saved in the
		// session (Go ≥ 1.21), so pins and OCSP hold per handshake.
		ClientSessionCache: &s.sessions,
		VerifyConnection:   s.verifyConnection,
	}
	if o.ClientCert != "" {
		// A callback rather than Certificates, so that Reload takes effect
		// without rebuilding the transport.
		s.conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.cert.Load(), nil
		}
	}
	return s, nil
}

// rootPool builds the pool the backend's chain must lead to: nil (the
// system roots) without CertPool, else CertPool's certificates, added to
// the system roots when SystemCertPool is set.
func rootPool(o TLSOptions) (*x509.CertPool, error) {
	if len(o.CertPool) == 0 {
		return nil, nil
	}
	roots := x509.NewCertPool()
	if o.SystemCertPool {
		sys, err := x509.SystemCertPool()
		if err != nil {
			return nil, optionErr("SystemCertPool", ": %w", err)
		}
		roots = sys
	}
	for _, f := range o.CertPool {
		if err := addPEMCerts(roots, f); err != nil {
			return nil, err
		}
	}
	return roots, nil
}

// parsePins decodes the HPKP pins (base64 SHA-256 of a SubjectPublicKeyInfo)
// into a set and their canonical spelling; no pins gives a nil set.
func parsePins(hpkp []string) (map[[sha256.Size]byte]bool, []string, error) {
	if len(hpkp) == 0 {
		return nil, nil, nil
	}
	pins := make(map[[sha256.Size]byte]bool, len(hpkp))
	var list []string
	for i, p := range hpkp {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(p))
		if err != nil || len(b) != sha256.Size {
			return nil, nil, optionErr("HPKP", "[%d] %q: not the base64 of a SHA-256 digest (44 characters ending in '=')", i, p)
		}
		pins[[sha256.Size]byte(b)] = true
		list = append(list, base64.StdEncoding.EncodeToString(b))
	}
	return pins, list, nil
}

// Config returns the client tls.Config for remote.Options.TLS. Every call
// returns a fresh copy sharing the session cache and client certificate.
func (s *TLSSetup) Config() *tls.Config { return s.conf.Clone() }

// Reload re-reads the client certificate and key (on SIGHUP). On error the
// previous certificate stays in use. Cached TLS sessions are dropped, since
// a resumed session would still present the old identity to the backend;
// idle keep-alive connections keep theirs until closed (Client.CloseIdle).
func (s *TLSSetup) Reload() error {
	if s.opts.ClientCert == "" {
		return nil
	}
	c, err := loadKeyPair(s.opts.ClientCert, s.opts.ClientKey)
	if err != nil {
		return err
	}
	s.cert.Store(c)
	s.sessions.reset()
	return nil
}

// SameTrust reports whether o trusts exactly what s trusts and presents
// the same identity: the same CA pool (by contents, not file names), pins,
// ServerName, OCSP mode and client certificate files. Replies obtained
// under s may be served under o only then: a reply cached from a backend
// that the new settings would refuse must not outlive the change.
func (s *TLSSetup) SameTrust(o *TLSSetup) bool {
	if s == nil || o == nil {
		return s == o
	}
	sr, or := s.conf.RootCAs, o.conf.RootCAs
	if (sr == nil) != (or == nil) || (sr != nil && !sr.Equal(or)) {
		return false
	}
	if len(s.pins) != len(o.pins) {
		return false
	}
	for p := range s.pins {
		if !o.pins[p] {
			return false
		}
	}
	return s.conf.ServerName == o.conf.ServerName && s.ocsp == o.ocsp &&
		s.opts.ClientCert == o.opts.ClientCert && s.opts.ClientKey == o.opts.ClientKey
}

// ClientCertificate returns the client certificate in use (nil when none
// is configured), for status output and expiry checks.
func (s *TLSSetup) ClientCertificate() *x509.Certificate {
	if c := s.cert.Load(); c != nil {
		return c.Leaf
	}
	return nil
}

// OptionError is a TLSOptions field NewTLS or Reload cannot use. Option
// names the field, as the configuration key of the same name does, so
// that a caller can point at the line that sets it.
type OptionError struct {
	Option string // "CertPool", "ClientCert", "ClientKey", "HPKP", "SystemCertPool", "OCSP"
	// Detail follows the field's name in the message, with its
	// separator: ` /etc/ca.pem: open …`, `[1] "AAAA": not …`.
	Detail string
	Err    error // the cause, or nil
}

// Error gives "remote: " + Option + Detail.
func (e *OptionError) Error() string { return "remote: " + e.Option + e.Detail }

// Unwrap returns the cause.
func (e *OptionError) Unwrap() error { return e.Err }

// optionErr builds an *OptionError; a %w in format is its cause.
func optionErr(option, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &OptionError{Option: option, Detail: err.Error(), Err: errors.Unwrap(err)}
}

// readPEMFile reads a PEM file with a size bound.
func readPEMFile(key, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, optionErr(key, " %s: %w", path, err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxPEMFile+1)); err != nil {
		return nil, optionErr(key, " %s: %w", path, err)
	}
	if buf.Len() > maxPEMFile {
		return nil, optionErr(key, " %s: larger than %d bytes", path, maxPEMFile)
	}
	return buf.Bytes(), nil
}

// addPEMCerts adds every certificate of a PEM file to pool. A file without
// any certificate is an error: it is almost always a wrong path or a key.
func addPEMCerts(pool *x509.CertPool, path string) error {
	data, err := readPEMFile("CertPool", path)
	if err != nil {
		return err
	}
	n := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return optionErr("CertPool", " %s: certificate %d: %w", path, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return optionErr("CertPool", " %s: no PEM CERTIFICATE block", path)
	}
	return nil
}

// loadKeyPair reads a client certificate and its key; an empty keyPath
// means certPath holds both (a "combined PEM").
func loadKeyPair(certPath, keyPath string) (*tls.Certificate, error) {
	certPEM, err := readPEMFile("ClientCert", certPath)
	if err != nil {
		return nil, err
	}
	// A pair that does not match is blamed on the key, the file that
	// usually is wrong; a combined PEM on ClientCert.
	keyPEM, option, where := certPEM, "ClientCert", " "+certPath
	if keyPath != "" {
		if keyPEM, err = readPEMFile("ClientKey", keyPath); err != nil {
			return nil, err
		}
		option, where = "ClientKey", " "+keyPath+" (with ClientCert "+certPath+")"
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, optionErr(option, "%s: %w", where, err)
	}
	if c.Leaf == nil { // X509KeyPair fills Leaf since Go 1.23; keep it explicit
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, optionErr("ClientCert", " %s: %w", certPath, err)
		}
	}
	return &c, nil
}

// verifyConnection enforces pins and OCSP on every handshake, full or
// resumed. It only ever looks at the verified chains: the server may send
// any extra certificate it likes, so PeerCertificates proves nothing.
func (s *TLSSetup) verifyConnection(cs tls.ConnectionState) error {
	chains := cs.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		// Only possible with InsecureSkipVerify, which we never set.
		return &TLSError{Cause: "unverified", Detail: "no verified certificate chain"}
	}
	if s.pins != nil {
		if err := s.checkPins(chains); err != nil {
			return err
		}
	}
	if s.ocsp != OCSPOff {
		return s.checkOCSP(chains, cs.OCSPResponse)
	}
	return nil
}

// SPKIPin returns the HPKP pin-sha256 of a certificate: the base64 SHA-256
// of its DER SubjectPublicKeyInfo.
func SPKIPin(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func (s *TLSSetup) checkPins(chains [][]*x509.Certificate) error {
	var seen []string
	dup := map[string]bool{}
	for _, chain := range chains {
		for _, c := range chain {
			sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
			if s.pins[sum] {
				return nil
			}
			p := base64.StdEncoding.EncodeToString(sum[:])
			if !dup[p] {
				dup[p] = true
				seen = append(seen, p+" ("+c.Subject.String()+")")
			}
		}
	}
	// Both lists are in a stable order (configuration order; chain order,
	// leaf first), so the same misconfiguration gives the same text and
	// can be logged once.
	return &TLSError{
		Cause:  "pin",
		Detail: "no certificate of the verified chain matches HPKP: expected one of [" + strings.Join(s.pinList, ", ") + "], chain has [" + strings.Join(seen, ", ") + "]",
	}
}

// oidTLSFeature is the TLS Feature extension (RFC 7633), "must-staple"
// when it lists status_request (5).
var oidTLSFeature = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 24}

func mustStaple(c *x509.Certificate) bool {
	for _, e := range c.Extensions {
		if !e.Id.Equal(oidTLSFeature) {
			continue
		}
		var features []int
		if _, err := asn1.Unmarshal(e.Value, &features); err != nil {
			// Unparsable: be strict, the CA meant something.
			return true
		}
		for _, f := range features {
			if f == 5 {
				return true
			}
		}
	}
	return false
}

// checkOCSP verifies a stapled OCSP response for the leaf: signed by its
// issuer (or a responder the issuer delegated to), for the leaf's serial,
// fresh, and Good.
//
// Complexity: each branch is one RFC 6960 check, in the order they must
// run.
func (s *TLSSetup) checkOCSP(chains [][]*x509.Certificate, staple []byte) error {
	leaf := chains[0][0]
	serial := leaf.SerialNumber.Text(16)
	if len(staple) == 0 {
		switch {
		case s.ocsp == OCSPRequireStapled:
			return &TLSError{Cause: "ocsp-missing", Detail: "no stapled OCSP response (OCSP = require-stapled) for serial " + serial}
		case mustStaple(leaf):
			return &TLSError{Cause: "ocsp-missing", Detail: "no stapled OCSP response although the certificate is must-staple, serial " + serial}
		}
		return nil
	}
	// Several verified chains may give different issuer certificates for
	// the leaf (cross-signing); the response need only verify against one.
	var resp *ocsp.Response
	var firstErr error
	tried := map[*x509.Certificate]bool{}
	for _, chain := range chains {
		issuer := chain[0] // the leaf itself is the trust anchor
		if len(chain) > 1 {
			issuer = chain[1]
		}
		if tried[issuer] {
			continue
		}
		tried[issuer] = true
		r, err := ocsp.ParseResponseForCert(staple, leaf, issuer)
		if err == nil {
			err = checkResponder(r, s.now())
		}
		if err == nil {
			resp = r
			break
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if resp == nil {
		return &TLSError{Cause: "ocsp-invalid", Detail: "stapled OCSP response for serial " + serial + ": " + ocspErrText(firstErr)}
	}
	now := s.now()
	switch {
	case resp.ThisUpdate.After(now.Add(ocspSkew)):
		return &TLSError{Cause: "ocsp-invalid", Detail: "stapled OCSP response for serial " + serial + " is not yet valid (ThisUpdate " + utc(resp.ThisUpdate) + ")"}
	case !resp.NextUpdate.IsZero() && now.After(resp.NextUpdate.Add(ocspSkew)):
		return &TLSError{Cause: "ocsp-invalid", Detail: "stapled OCSP response for serial " + serial + " expired (NextUpdate " + utc(resp.NextUpdate) + ")"}
	case resp.NextUpdate.IsZero() && now.After(resp.ThisUpdate.Add(ocspMaxAgeNoNext)):
		return &TLSError{Cause: "ocsp-invalid", Detail: "stapled OCSP response for serial " + serial + " has no NextUpdate and is older than 7 days (ThisUpdate " + utc(resp.ThisUpdate) + ")"}
	}
	switch resp.Status {
	case ocsp.Good:
		return nil
	case ocsp.Revoked:
		return &TLSError{Cause: "ocsp-revoked", Detail: fmt.Sprintf("certificate serial %s revoked at %s (reason %d)", serial, utc(resp.RevokedAt), resp.RevocationReason)}
	default:
		return &TLSError{Cause: "ocsp-invalid", Detail: "stapled OCSP response says status unknown for serial " + serial}
	}
}

// checkResponder adds what x/crypto/ocsp leaves out for a delegated
// responder certificate (RFC 6960 §4.2.2.2): it must carry the OCSPSigning
// extended key usage and be within its validity period. The signature of
// the issuer on it was already checked by ParseResponseForCert.
func checkResponder(r *ocsp.Response, now time.Time) error {
	c := r.Certificate
	if c == nil {
		return nil
	}
	ok := false
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageOCSPSigning {
			ok = true
		}
	}
	if !ok {
		return errors.New("responder certificate lacks the OCSPSigning extended key usage")
	}
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return errors.New("responder certificate is outside its validity period")
	}
	return nil
}

// ocspErrText keeps the error text free of anything that varies between
// handshakes, so a detail can be logged once.
func ocspErrText(err error) string {
	var pe ocsp.ParseError
	var re ocsp.ResponseError
	switch {
	case errors.As(err, &re):
		return "responder status " + re.Status.String()
	case errors.As(err, &pe), err != nil:
		return err.Error()
	}
	return "unusable"
}

func utc(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// tlsFailure classifies a transport error that is a refused TLS handshake.
// cause is a short label for metrics and logs; reason is safe to send to a
// peer (it never holds backend data). ok is false for non-TLS errors.
func tlsFailure(err error) (cause, reason string, ok bool) {
	var te *TLSError
	if errors.As(err, &te) {
		return te.Cause, "backend TLS refused: " + te.Cause, true
	}
	var ce *tls.CertificateVerificationError
	if errors.As(err, &ce) {
		var ua x509.UnknownAuthorityError
		var he x509.HostnameError
		var ie x509.CertificateInvalidError
		switch {
		case errors.As(ce.Err, &ua):
			return "unknown-ca", "backend TLS refused: certificate signed by unknown authority", true
		case errors.As(ce.Err, &he):
			return "name-mismatch", "backend TLS refused: certificate name mismatch", true
		case errors.As(ce.Err, &ie) && ie.Reason == x509.Expired:
			return "cert-expired", "backend TLS refused: certificate expired or not yet valid", true
		}
		return "verify", "backend TLS refused: certificate not trusted", true
	}
	var ae tls.AlertError
	var rh tls.RecordHeaderError
	if errors.As(err, &ae) || errors.As(err, &rh) {
		return "handshake", "backend TLS handshake failed", true
	}
	// crypto/tls reports an alert received from the peer as a *net.OpError
	// with Op "remote error" (tls.AlertError is only used with QUIC). With
	// TLS 1.3 a server refusing our client certificate does so after the
	// client's side of the handshake is done, so this shows up here.
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" && oe.Err != nil {
		return "alert", "backend TLS alert: " + strings.TrimPrefix(oe.Err.Error(), "tls: "), true
	}
	return "", "", false
}

// sessionCache is the client session cache, replaceable as a whole so that
// Reload can forget sessions made with the previous client certificate.
//
// It also bounds how long a chain of resumptions may last. A resumed
// session carries the OCSP staple of the full handshake it descends from
// (crypto/tls saves it in the session and copies it into every new ticket
// of a resumed connection), so without a bound a long-running daemon would
// one day resume with a staple past its NextUpdate, be refused, and fail a
// lookup. After maxSessionAge the next connection does a full handshake
// and gets a fresh staple (and a fresh look at the chain).
type sessionCache struct {
	cur atomic.Pointer[sessionLRU]
	now func() time.Time
}

// sessionLRU is one generation of the cache, with the time each key's
// chain of sessions started (its last full handshake).
type sessionLRU struct {
	lru tls.ClientSessionCache

	mu   sync.Mutex
	born map[string]time.Time
}

// sessionCacheSize is how many backend sessions are remembered: one per
// backend host and SNI is enough, a few spare cost nothing.
const sessionCacheSize = 64

// maxSessionAge bounds a chain of resumptions (see sessionCache).
const maxSessionAge = time.Hour

func (c *sessionCache) reset() {
	c.cur.Store(&sessionLRU{lru: tls.NewLRUClientSessionCache(sessionCacheSize), born: map[string]time.Time{}})
}

// Get implements tls.ClientSessionCache.
func (c *sessionCache) Get(key string) (*tls.ClientSessionState, bool) {
	g := c.cur.Load()
	g.mu.Lock()
	defer g.mu.Unlock()
	if b, ok := g.born[key]; ok && c.now().Sub(b) > maxSessionAge {
		delete(g.born, key)
		g.lru.Put(key, nil)
		return nil, false
	}
	return g.lru.Get(key)
}

// Put implements tls.ClientSessionCache. A session stored while the key
// already has one descends from it (a resumed connection's new ticket),
// or from a concurrent full handshake; either way the older start time is
// kept, which errs towards an earlier full handshake.
func (c *sessionCache) Put(key string, cs *tls.ClientSessionState) {
	g := c.cur.Load()
	g.mu.Lock()
	defer g.mu.Unlock()
	if cs == nil {
		delete(g.born, key)
	} else if _, ok := g.born[key]; !ok {
		if len(g.born) >= 4*sessionCacheSize {
			// Keys the LRU evicted without telling us: start over
			// rather than grow (the next handshakes are then full).
			clear(g.born)
			g.lru = tls.NewLRUClientSessionCache(sessionCacheSize)
		}
		g.born[key] = c.now()
	}
	g.lru.Put(key, cs)
}
