// Package config loads and validates shitenno's TOML configuration file.
//
// One file serves the three daemons: the top level holds what they share
// (backend, TLS, logging, cache), and the [Postfix], [Dovecot] and [Nginx]
// sections hold each daemon's listeners. Every error names the file, the
// line and the key, so an operator can fix it without guessing.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/shitenno/shitenno/internal/redact"
	"github.com/shitenno/shitenno/pkg/logging"
)

// DefaultPath is where the daemons look for their configuration file.
const DefaultPath = "/etc/shitenno/shitenno.conf"

// Defaults for the keys an operator may leave out.
const (
	DefaultSocketPrefix   = "/run/shitenno"
	DefaultTimeout        = 5 * time.Second
	DefaultConnectTimeout = time.Second
	DefaultMode           = 0o660
	// DefaultMaxConnections is ten times what a default peer opens:
	// postfix holds one socketmap or policy connection per smtpd,
	// cleanup or trivial-rewrite process (default_process_limit 100 per
	// service), dovecot one dict connection per auth or mail process, and
	// nginx one auth_http request per login in flight.
	DefaultMaxConnections  = 1024
	DefaultMaxReplySize    = 1 << 20
	DefaultFailoverBackoff = 30 * time.Second
	// DefaultMaxProcs is MaxProcs when unset: the Go runtime's default
	// (docs/bench.md, "one CPU at a time").
	DefaultMaxProcs = 0
	// MaxMaxProcs is the Go runtime's own bound on GOMAXPROCS.
	MaxMaxProcs         = 1024
	DefaultCacheEntries = 10000
	// DefaultCacheBytes (1.5 MiB) keeps an idle daemon with a full cache
	// under 20 MiB of RSS (measured in docs/cache.md): about 5500
	// entries of a 30-byte alias.
	DefaultCacheBytes = 1536 << 10
	DefaultOCSP       = "if-stapled"
	DefaultLogLevel   = "info"
	DefaultDevLog     = "stderr"
)

// Config is the whole configuration file.
type Config struct {
	// RemoteURL lists the backend base URLs, tried in order; a lookup is
	// POSTed to RemoteURL+Verb.
	RemoteURL URLList
	// SocketPrefix turns a relative Socket name into SocketPrefix-Socket.
	SocketPrefix string
	// Timeout bounds one whole backend exchange.
	Timeout Duration
	// ConnectTimeout bounds getting a connection (dial, TLS) to one URL.
	ConnectTimeout Duration
	// AttemptTimeout bounds the wait for one URL's first response byte
	// when another URL is left; 0 shares Timeout among the URLs.
	AttemptTimeout Duration
	// MaxReplySize bounds a backend reply body in bytes.
	MaxReplySize int64
	// FailoverBackoff is how long a failed backend URL is skipped.
	FailoverBackoff Duration
	// MaxProcs is how many CPUs run the daemon's Go code at once
	// (GOMAXPROCS); 0 is every CPU the process may use. A GOMAXPROCS
	// environment variable wins.
	MaxProcs int

	// DevLog is the log destination: stderr, a unix datagram socket path,
	// udp://host:port or tcp://host:port.
	DevLog string
	// LogLevel is one of debug, info, warn, error.
	LogLevel string

	// CertPool lists PEM files of CAs trusted for the backend.
	CertPool StringList
	// SystemCertPool keeps the system roots in addition to CertPool.
	SystemCertPool bool
	// ClientCert and ClientKey are the TLS client certificate (PEM).
	ClientCert string
	ClientKey  string
	// ServerName is verified in the backend certificate and sent as SNI.
	ServerName string
	// HPKP lists base64 SHA-256 SubjectPublicKeyInfo pins.
	HPKP []string
	// OCSP is off, if-stapled or require-stapled.
	OCSP string

	// Cache configures the in-memory reply cache.
	Cache Cache

	// Postfix, Dovecot and Nginx configure each daemon's listeners.
	Postfix Postfix
	Dovecot Service
	Nginx   Service

	// BruteForce limits wrong passwords per client network.
	BruteForce BruteForce

	// File is the path the configuration was read from.
	File string `toml:"-"`
	// lines maps "Section.Key" to the line it was set on.
	lines map[string]int
}

// Cache is the [Cache] section.
type Cache struct {
	// MaxEntries bounds the number of cached replies; 0 disables the cache.
	MaxEntries int
	// MaxBytes bounds the memory the cached replies take, each counted as
	// its Data plus a fixed per-entry overhead; at most MaxCacheBytes.
	MaxBytes int64
	// DefaultTTL caches OK replies without an explicit lifetime.
	DefaultTTL Duration
	// NegativeTTL caches KO replies without an explicit lifetime.
	NegativeTTL Duration
}

// Service is one daemon's section: where it listens and who may connect.
type Service struct {
	// Socket is the unix socket path, absolute or relative to SocketPrefix.
	Socket string
	// UID and GID own the socket file (number or name); empty keeps the
	// process's own.
	UID Owner
	GID Owner
	// Mode is the socket file's permission bits.
	Mode FileMode
	// Listen is an optional TCP address (host:port).
	Listen string
	// HealthListen is an optional TCP address for /healthz, /readyz, /metrics.
	HealthListen string
	// User is the account to switch to after the sockets exist (when
	// started as root); empty stays as is.
	User string
	// MaxConnections bounds the open client connections of each of the
	// daemon's listeners; past it a new connection is closed at once (the
	// peers retry) while the open ones keep working. 0: no bound.
	MaxConnections int
}

// Error is a configuration error located in a file.
type Error struct {
	File string
	Line int // 0 when unknown
	Key  string
	Msg  string
}

// Error gives "file:line: key: message". A URL password quoted in the
// message is redacted.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	if e.Key != "" {
		b.WriteString(": " + e.Key)
	}
	b.WriteString(": " + redact.String(e.Msg))
	return b.String()
}

// Errors is every problem found in a configuration file, in line order
// (problems without a line first). errors.As finds the first *Error.
type Errors []*Error

// Error gives one problem per line.
func (e Errors) Error() string {
	s := make([]string, len(e))
	for i, x := range e {
		s[i] = x.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the problems, for errors.As and errors.Is.
func (e Errors) Unwrap() []error {
	out := make([]error, len(e))
	for i, x := range e {
		out[i] = x
	}
	return out
}

// Load reads, decodes and validates the file at path; sections names the
// daemons that will run from it ("postfix", "dovecot", "nginx"), whose
// host-dependent settings are checked too (see Validate). A failure is an
// Errors listing every problem found.
func Load(path string, sections ...string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		msg := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		return nil, Errors{{File: path, Msg: "cannot read configuration: " + msg}}
	}
	return Parse(path, data, sections...)
}

// maxDecodePasses bounds the re-decoding that finds every bad value.
const maxDecodePasses = 100

// Parse decodes and validates data, reporting errors against file, like
// Load. Every bad value, every unknown key and every problem Validate
// finds is reported, not only the first; a TOML syntax error stops the
// decoding, so it comes alone.
func Parse(file string, data []byte, sections ...string) (*Config, error) {
	c, md, errs := decode(file, data)
	if c == nil {
		return nil, sortErrors(errs)
	}
	for _, k := range md.Undecoded() {
		key := k.String()
		errs = append(errs, c.errAt(key, "unknown key"))
	}
	c.applyDefaults(md)
	errs = append(errs, c.problems(sections)...)
	if len(errs) > 0 {
		return nil, sortErrors(errs)
	}
	return c, nil
}

// decode decodes data into a Config. BurntSushi/toml stops at the first
// value it cannot decode, so each such line is reported, blanked and the
// file decoded again, until it decodes. A syntax error stops everything
// (the Config is then nil), as does a blanked line that breaks the syntax
// (a multi-line value). Blanking a line keeps the others' numbers.
func decode(file string, data []byte) (*Config, toml.MetaData, []*Error) {
	if err := syntaxError(data); err != nil {
		return nil, toml.MetaData{}, []*Error{decodeError(file, data, err)}
	}
	var errs []*Error
	cur := data
	for range maxDecodePasses {
		c := &Config{File: file, lines: keyLines(data)}
		md, err := toml.NewDecoder(bytes.NewReader(cur)).Decode(c)
		if err == nil {
			return c, md, errs
		}
		e := decodeError(file, cur, err)
		errs = append(errs, e)
		if e.Line <= 0 {
			break
		}
		cur = blankLine(cur, e.Line)
		if syntaxError(cur) != nil {
			break
		}
	}
	return nil, toml.MetaData{}, errs
}

// syntaxError decodes data into a generic map: only TOML syntax can fail.
func syntaxError(data []byte) error {
	var m map[string]any
	_, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&m)
	return err
}

// blankLine returns data with line n (1-based) emptied.
func blankLine(data []byte, n int) []byte {
	lines := bytes.Split(data, []byte("\n"))
	if n >= 1 && n <= len(lines) {
		lines[n-1] = nil
	}
	return bytes.Join(lines, []byte("\n"))
}

// sortErrors orders problems by line, those without a line first.
func sortErrors(errs []*Error) Errors {
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	return Errors(errs)
}

var lastKeyRE = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

// decodeError turns BurntSushi/toml's errors into a located *Error.
func decodeError(file string, data []byte, err error) *Error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.Usage != "" {
			msg += " (" + strings.TrimSpace(strings.SplitN(pe.Usage, "\n", 2)[0]) + ")"
		}
		key := pe.LastKey
		if key == "" {
			// A syntax error inside a value ("Timeout = 5s") comes without
			// the key: take it from the line itself.
			key = keyOnLine(data, pe.Position.Line)
		}
		return &Error{File: file, Line: pe.Position.Line, Key: key, Msg: msg}
	}
	if m := lastKeyRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: line, Key: m[2], Msg: m[3]}
	}
	return &Error{File: file, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
}

var (
	// [Table] and [[ArrayOfTables]] headers.
	tableRE = regexp.MustCompile(`^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]`)
	keyRE   = regexp.MustCompile(`^\s*([A-Za-z0-9_-]+)\s*=`)
)

// keyLines finds the line of every simple "Key =" assignment, keyed by its
// dotted path, so that semantic errors can point at a line. BurntSushi/toml
// keeps key positions private; this covers the flat layout shitenno uses.
//
// A key of an array of tables is also recorded under tableKey, per
// entry, so that a problem of the second [[Postfix.TCPTable]] points at
// its own line.
func keyLines(data []byte) map[string]int {
	lines := map[string]int{}
	table, entry := "", ""
	entries := map[string]int{}
	for i, l := range strings.Split(string(data), "\n") {
		if m := tableRE.FindStringSubmatch(l); m != nil {
			table, entry = m[1], ""
			if strings.HasPrefix(strings.TrimSpace(l), "[[") {
				entry = tableKey(table, entries[table], "")
				entries[table]++
			}
			lines[table] = i + 1
			continue
		}
		if m := keyRE.FindStringSubmatch(l); m != nil {
			k := m[1]
			if entry != "" {
				lines[entry+k] = i + 1
			}
			if table != "" {
				k = table + "." + k
			}
			if _, dup := lines[k]; !dup {
				lines[k] = i + 1
			}
		}
	}
	return lines
}

// tableKey is the lines key of key in entry i (0-based) of the array of
// tables named table: "Postfix.TCPTable[1].Listen".
func tableKey(table string, i int, key string) string {
	return table + "[" + strconv.Itoa(i) + "]." + key
}

// keyOnLine returns the dotted key assigned on line n (1-based), or "".
func keyOnLine(data []byte, n int) string {
	lines := strings.Split(string(data), "\n")
	if n < 1 || n > len(lines) {
		return ""
	}
	m := keyRE.FindStringSubmatch(lines[n-1])
	if m == nil {
		return ""
	}
	table := ""
	for _, l := range lines[:n-1] {
		if t := tableRE.FindStringSubmatch(l); t != nil {
			table = t[1]
		}
	}
	if table != "" {
		return table + "." + m[1]
	}
	return m[1]
}

func (c *Config) applyDefaults(md toml.MetaData) {
	if c.SocketPrefix == "" {
		c.SocketPrefix = DefaultSocketPrefix
	}
	if !md.IsDefined("Timeout") {
		c.Timeout.Duration = DefaultTimeout
	}
	if !md.IsDefined("ConnectTimeout") {
		c.ConnectTimeout.Duration = DefaultConnectTimeout
	}
	if c.MaxReplySize == 0 {
		c.MaxReplySize = DefaultMaxReplySize
	}
	if !md.IsDefined("FailoverBackoff") {
		c.FailoverBackoff.Duration = DefaultFailoverBackoff
	}
	if !md.IsDefined("MaxProcs") {
		c.MaxProcs = DefaultMaxProcs
	}
	if c.DevLog == "" {
		c.DevLog = DefaultDevLog
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
	if c.OCSP == "" {
		c.OCSP = DefaultOCSP
	}
	if !md.IsDefined("Cache", "MaxEntries") {
		c.Cache.MaxEntries = DefaultCacheEntries
	}
	if !md.IsDefined("Cache", "MaxBytes") {
		c.Cache.MaxBytes = DefaultCacheBytes
	}
	c.Postfix.applyDefaults(md)
	c.BruteForce.applyDefaults(md)
	for name, s := range c.services() {
		if s.Socket == "" {
			s.Socket = strings.ToLower(name)
		}
		if !md.IsDefined(name, "Mode") {
			s.Mode = DefaultMode
		}
		if !md.IsDefined(name, "MaxConnections") {
			s.MaxConnections = DefaultMaxConnections
		}
	}
}

// sections is the one table of daemon sections: the daemon's name and
// its section in the file.
var sections = []struct{ name, key string }{
	{"postfix", "Postfix"},
	{"dovecot", "Dovecot"},
	{"nginx", "Nginx"},
}

// services returns every daemon section by its key in the file.
func (c *Config) services() map[string]*Service {
	m := make(map[string]*Service, len(sections))
	for _, s := range sections {
		m[s.key] = c.Section(s.name)
	}
	return m
}

// SectionKey returns a daemon's section name in the file ("Postfix" for
// "postfix"), or "" for an unknown daemon.
func SectionKey(name string) string {
	for _, s := range sections {
		if s.name == name {
			return s.key
		}
	}
	return ""
}

func (c *Config) errAt(key, format string, args ...any) *Error {
	return &Error{File: c.File, Line: c.lines[key], Key: key, Msg: fmt.Sprintf(format, args...)}
}

// KeyError is a problem of key ("Postfix.SASLSocket") found outside this
// package (a socket directory, a TLS file), located like Validate's: at
// the line that sets the key, without a line when the key is left to its
// default.
func (c *Config) KeyError(key, format string, args ...any) *Error {
	return c.errAt(key, format, args...)
}

// MaxCacheBytes is the largest [Cache] MaxBytes accepted, the reply
// cache's own hard bound (remote.MaxCacheBytes).
const MaxCacheBytes = 64 << 20

// MaxMaxReplySize is the largest MaxReplySize accepted: a reply is held
// in memory whole, and a value near the int64 maximum would overflow the
// reply bound.
const MaxMaxReplySize = 1 << 30

// Validate returns every problem of the configuration (an Errors), or
// nil. Besides each key's value it checks, for the sections named (the
// daemons that will run from this file: "postfix", "dovecot", "nginx"),
// what depends on the host: the UID, GID and User names must exist. Other
// sections' names are not looked up, since one file may serve daemons on
// hosts with different accounts. Load and Parse run it; --check-config
// and start-up load the file the same way.
func (c *Config) Validate(sections ...string) error {
	if errs := c.problems(sections); len(errs) > 0 {
		return sortErrors(errs)
	}
	return nil
}

// problemList collects the problems of a configuration.
type problemList struct {
	c    *Config
	list []*Error
}

// add records a problem of key.
func (p *problemList) add(key, format string, args ...any) {
	p.list = append(p.list, p.c.errAt(key, format, args...))
}

func (c *Config) problems(sections []string) []*Error {
	p := &problemList{c: c}
	c.checkBackend(p)
	c.checkLocal(p)
	for name, s := range c.services() {
		checkService(p, name, s)
	}
	c.Postfix.checkPolicy(p)
	c.Postfix.checkSASL(p)
	c.BruteForce.check(p)
	c.checkListenerConflicts(p)
	for _, name := range sections {
		if s := c.Section(name); s != nil {
			checkAccounts(p, SectionKey(name), s)
		}
	}
	return p.list
}

// checkBackend checks the keys of the backend link.
//
// Complexity: one check per key, in the order of the configuration
// reference.
func (c *Config) checkBackend(p *problemList) {
	if len(c.RemoteURL) == 0 {
		p.add("RemoteURL", "required key is missing (the backend base URL, e.g. \"http://127.0.0.1:8080/api/\")")
	}
	for _, u := range c.RemoteURL {
		shown := redact.URL(u)
		pu, err := url.Parse(u)
		switch {
		case err != nil:
			detail := errors.Unwrap(err).Error()
			if strings.Contains(u, "@") {
				// The detail may quote part of the password.
				detail = "does not parse"
			}
			p.add("RemoteURL", "invalid URL %q: %s", shown, detail)
		case pu.Scheme != "http" && pu.Scheme != "https":
			p.add("RemoteURL", "invalid URL %q: scheme must be http or https", shown)
		case pu.Host == "":
			p.add("RemoteURL", "invalid URL %q: no host", shown)
		case pu.RawQuery != "" || pu.Fragment != "" || pu.ForceQuery:
			p.add("RemoteURL", "invalid URL %q: no query or fragment allowed (the verb is appended)", shown)
		}
	}
	if c.Timeout.Duration <= 0 {
		p.add("Timeout", "must be positive")
	}
	if c.Timeout.Duration >= 30*time.Second {
		// dovecot aborts a dict lookup after 30 s; a longer Timeout would turn
		// a backend failure into a client-side timeout instead of F.
		p.add("Timeout", "must be below 30s (dovecot's dict client gives up at 30s)")
	}
	if c.ConnectTimeout.Duration <= 0 {
		p.add("ConnectTimeout", "must be positive")
	}
	if c.AttemptTimeout.Duration < 0 || c.AttemptTimeout.Duration > c.Timeout.Duration {
		p.add("AttemptTimeout", "must be between 0 (share Timeout among the URLs) and Timeout")
	}
	if c.MaxReplySize < 0 {
		p.add("MaxReplySize", "must be positive")
	}
	if c.MaxReplySize > MaxMaxReplySize {
		p.add("MaxReplySize", "must be at most %d (1 GiB): a reply is held in memory whole", MaxMaxReplySize)
	}
	if c.MaxProcs < 0 || c.MaxProcs > MaxMaxProcs {
		p.add("MaxProcs", "must be between 0 (every CPU) and %d", MaxMaxProcs)
	}
	if c.FailoverBackoff.Duration < 0 {
		p.add("FailoverBackoff", "must not be negative")
	}
	switch c.OCSP {
	case "off", "if-stapled", "require-stapled":
	default:
		p.add("OCSP", "must be off, if-stapled or require-stapled, not %q", c.OCSP)
	}
	if (c.ClientKey != "") && c.ClientCert == "" {
		p.add("ClientKey", "set without ClientCert")
	}
}

// checkLocal checks logging and cache keys.
func (c *Config) checkLocal(p *problemList) {
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		p.add("LogLevel", "must be debug, info, warn or error, not %q", c.LogLevel)
	}
	if err := logging.CheckDevLog(c.DevLog); err != nil {
		p.add("DevLog", "%v, not %q", err, c.DevLog)
	}
	if c.Cache.MaxEntries < 0 {
		p.add("Cache.MaxEntries", "must not be negative")
	}
	if c.Cache.MaxBytes <= 0 || c.Cache.MaxBytes > MaxCacheBytes {
		p.add("Cache.MaxBytes", "must be between 1 and %d (64 MiB); MaxEntries = 0 turns the cache off", MaxCacheBytes)
	}
	if c.Cache.DefaultTTL.Duration < 0 {
		p.add("Cache.DefaultTTL", "must not be negative")
	}
	if c.Cache.NegativeTTL.Duration < 0 {
		p.add("Cache.NegativeTTL", "must not be negative")
	}
}

// checkService checks a daemon section's listener keys.
func checkService(p *problemList, name string, s *Service) {
	if strings.ContainsRune(s.Socket, 0) {
		p.add(name+".Socket", "contains a NUL byte")
	}
	if s.Mode&^0o777 != 0 {
		p.add(name+".Mode", "must be permission bits like \"0660\"")
	}
	if s.MaxConnections < 0 {
		p.add(name+".MaxConnections", "must not be negative (0: no bound)")
	}
	for _, k := range []struct{ key, addr string }{{"Listen", s.Listen}, {"HealthListen", s.HealthListen}} {
		if k.addr == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(k.addr); err != nil || port == "" {
			p.add(name+"."+k.key, "must be host:port, not %q", k.addr)
		}
	}
}

// checkAccounts checks that the section's account names exist on this
// host, as start-up will need them.
func checkAccounts(p *problemList, name string, s *Service) {
	if _, err := s.UID.UserID(); err != nil {
		p.add(name+".UID", "%v", err)
	}
	if _, err := s.GID.GroupID(); err != nil {
		p.add(name+".GID", "%v", err)
	}
	if s.User != "" {
		if _, err := user.Lookup(s.User); err != nil {
			p.add(name+".User", "unknown user %q", s.User)
		}
	}
}

// SocketPath resolves a service's Socket against SocketPrefix.
func (c *Config) SocketPath(s *Service) string {
	return c.ResolveSocket(s.Socket)
}

// ResolveSocket turns a socket name from the file into a path: absolute
// names stay, relative ones become SocketPrefix-name; "" stays "" (off).
func (c *Config) ResolveSocket(name string) string {
	if name == "" || filepath.IsAbs(name) {
		return name
	}
	return c.SocketPrefix + "-" + name
}

// Section returns the service section for a daemon name: "postfix",
// "dovecot" or "nginx".
func (c *Config) Section(name string) *Service {
	switch name {
	case "postfix":
		return &c.Postfix.Service
	case "dovecot":
		return &c.Dovecot
	case "nginx":
		return &c.Nginx
	}
	return nil
}
