package config

import (
	"fmt"
	"net/url"
	"os"

	"github.com/shitenno/shitenno/internal/redact"
)

// RedactedURLs returns RemoteURL with userinfo passwords replaced, for
// everything the daemons print (--check-config, logs).
func (c *Config) RedactedURLs() []string {
	out := make([]string, len(c.RemoteURL))
	for i, u := range c.RemoteURL {
		out[i] = redact.URL(u)
	}
	return out
}

// hasURLPassword reports whether a RemoteURL carries a password.
func (c *Config) hasURLPassword() bool {
	for _, u := range c.RemoteURL {
		if p, err := url.Parse(u); err == nil {
			if _, ok := p.User.Password(); ok {
				return true
			}
		}
	}
	return false
}

// Warnings lists the files holding a secret that every local user may
// read: the configuration file when a RemoteURL has a password, and the
// TLS client key (ClientKey, or ClientCert when it holds the key too).
// Readable by owner and group is expected (the daemon's group reads
// them); "other" is not. Each warning names the file and the fix.
func (c *Config) Warnings() []string {
	type secretFile struct{ path, what string }
	var files []secretFile
	if c.File != "" && c.hasURLPassword() {
		files = append(files, secretFile{c.File, "a RemoteURL password"})
	}
	switch {
	case c.ClientKey != "":
		files = append(files, secretFile{c.ClientKey, "the TLS client key (ClientKey)"})
	case c.ClientCert != "":
		files = append(files, secretFile{c.ClientCert, "the TLS client key (ClientCert without ClientKey)"})
	}
	var out []string
	for _, f := range files {
		fi, err := os.Stat(f.path)
		if err != nil || fi.Mode().Perm()&0o007 == 0 {
			continue // a missing file is an error elsewhere
		}
		out = append(out, fmt.Sprintf("%s is readable by every local user and holds %s: chmod o-rwx %s", f.path, f.what, f.path))
	}
	return out
}
