package config

import (
	"net/netip"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Defaults of the [BruteForce] section (pkg/bruteforce takes its own
// defaults from these: config imports none of our packages).
const (
	DefaultBruteForceMaxFailures = 10
	DefaultBruteForceWindow      = 15 * time.Minute
	DefaultBruteForceBlockFor    = 15 * time.Minute
	DefaultBruteForceIPv4Prefix  = 32
	DefaultBruteForceIPv6Prefix  = 64
	DefaultBruteForceMaxTracked  = 100000
)

// DefaultBruteForceAllowNets are never counted nor blocked: the proxy,
// webmail and monitoring usually log in over loopback.
var DefaultBruteForceAllowNets = []string{"127.0.0.0/8", "::1/128"}

// BruteForce is the [BruteForce] section, shared by shitenno-nginx and
// shitenno-postfix (each keeps its own counts in memory).
type BruteForce struct {
	// MaxFailures distinct wrong passwords from one network within Window
	// block it for BlockFor; 0 turns the protection off.
	MaxFailures int
	Window      Duration
	BlockFor    Duration
	// IPv4Prefix and IPv6Prefix group client addresses into networks.
	IPv4Prefix int
	IPv6Prefix int
	// AllowNets are networks (or addresses) never counted nor blocked.
	AllowNets StringList
	// MaxUserFailures is the optional per-login-name limit across
	// networks; 0 is off.
	MaxUserFailures int
	// MaxTracked bounds the networks (and names) remembered.
	MaxTracked int
}

func (b *BruteForce) applyDefaults(md toml.MetaData) {
	def := func(key string) bool { return !md.IsDefined("BruteForce", key) }
	if def("MaxFailures") {
		b.MaxFailures = DefaultBruteForceMaxFailures
	}
	if def("Window") {
		b.Window.Duration = DefaultBruteForceWindow
	}
	if def("BlockFor") {
		b.BlockFor.Duration = DefaultBruteForceBlockFor
	}
	if def("IPv4Prefix") {
		b.IPv4Prefix = DefaultBruteForceIPv4Prefix
	}
	if def("IPv6Prefix") {
		b.IPv6Prefix = DefaultBruteForceIPv6Prefix
	}
	// An explicit AllowNets = [] means "none": tests and hosts whose
	// loopback clients should be counted too.
	if def("AllowNets") {
		b.AllowNets = append(StringList(nil), DefaultBruteForceAllowNets...)
	}
	if def("MaxTracked") {
		b.MaxTracked = DefaultBruteForceMaxTracked
	}
}

// Nets returns AllowNets parsed; invalid entries (reported by Validate)
// are skipped. A bare address is its own network.
func (b *BruteForce) Nets() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range b.AllowNets {
		if p, err := parseNet(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func parseNet(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// check checks the [BruteForce] keys.
func (b *BruteForce) check(p *problemList) {
	if b.MaxFailures < 0 {
		p.add("BruteForce.MaxFailures", "must be >= 0 (0 turns the protection off)")
	}
	if b.MaxUserFailures < 0 {
		p.add("BruteForce.MaxUserFailures", "must be >= 0 (0 is off)")
	}
	if b.Window.Duration <= 0 {
		p.add("BruteForce.Window", "must be > 0")
	}
	if b.BlockFor.Duration <= 0 {
		p.add("BruteForce.BlockFor", "must be > 0")
	}
	if b.IPv4Prefix < 1 || b.IPv4Prefix > 32 {
		p.add("BruteForce.IPv4Prefix", "must be within 1..32, not %d", b.IPv4Prefix)
	}
	if b.IPv6Prefix < 1 || b.IPv6Prefix > 128 {
		p.add("BruteForce.IPv6Prefix", "must be within 1..128, not %d", b.IPv6Prefix)
	}
	if b.MaxTracked < 1 {
		p.add("BruteForce.MaxTracked", "must be > 0")
	}
	for _, s := range b.AllowNets {
		if _, err := parseNet(s); err != nil {
			p.add("BruteForce.AllowNets", "%q is not an address or network (e.g. \"192.0.2.0/24\")", s)
		}
	}
}
