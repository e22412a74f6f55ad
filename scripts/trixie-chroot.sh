#!/usr/bin/env bash
# Build (or reuse) the Debian 13 "trixie" root the end-to-end tests run
# Debian 13's peers in (dovecot 2.4, postfix 3.10, nginx 1.26): Debian 12
# has no dovecot 2.4 package and trixie's binaries need trixie's glibc, so
# they run chrooted (PROTOCOLS.md §3.10, §7.3). Needs root and debootstrap.
#
# Usage: scripts/trixie-chroot.sh [DIR]
#   DIR defaults to $SHITENNO_TRIXIE_DIR or /var/tmp/shitenno-trixie.
#   The Debian mirror is the one this machine's apt uses (override with
#   $SHITENNO_DEBIAN_MIRROR); no host name is hard-coded here.
#
# Idempotent: the root is built in DIR.tmp and renamed to DIR only when
# complete, so an existing DIR is always usable; on reuse only packages
# missing from it are installed. Concurrent callers serialise on DIR.lock.
# The last line of stdout is DIR.
set -euo pipefail
# shellcheck source=scripts/debian-root.sh
. "$(dirname "${BASH_SOURCE[0]}")/debian-root.sh"

dir="${1:-${SHITENNO_TRIXIE_DIR:-/var/tmp/shitenno-trixie}}"
# lua-dkjson: shitenno.lua's fallback JSON decoder, tested too.
# postfix, nginx, libnginx-mod-mail: e2e/trixie_test.go (about 10-20 s more
# on top of dovecot's install, reusing the same apt run and root).
pkgs=(dovecot-core dovecot-imapd dovecot-auth-lua lua-socket lua-cjson lua-dkjson
	postfix nginx libnginx-mod-mail)

log() { printf 'trixie-chroot: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
command -v flock >/dev/null || die "flock is not installed (util-linux)"

debian_root trixie "$dir" "${pkgs[@]}"

# Report the versions so a log shows what was tested.
log "ready: dovecot $(chroot "$dir" dovecot --version 2>/dev/null || echo 'missing?')," \
	"postfix $(chroot "$dir" postconf -dh mail_version 2>/dev/null || echo 'missing?')," \
	"$(chroot "$dir" nginx -v 2>&1 || echo 'nginx missing?')"
echo "$dir"
