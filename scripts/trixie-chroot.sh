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

# mirror prints the first non-security Debian URI of the host's apt sources:
# deb822 files (URIs: lines) first, then one-line sources.list entries.
mirror() {
	if [ -n "${SHITENNO_DEBIAN_MIRROR:-}" ]; then
		echo "$SHITENNO_DEBIAN_MIRROR"
		return
	fi
	local f u
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		u=$(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f")
		if [ -n "$u" ]; then echo "$u"; return; fi
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		# deb [options] URI suite components...
		u=$(awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
			if ($i !~ /security/) { print $i; exit } }' "$f")
		if [ -n "$u" ]; then echo "$u"; return; fi
	done
	return 1
}

missing_pkgs() {
	local root=$1 p
	for p in "${pkgs[@]}"; do
		chroot "$root" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
	done
}

install_pkgs() {
	local root=$1
	shift
	# Never let package scripts start services inside the root.
	printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
	chmod 755 "$root/usr/sbin/policy-rc.d"
	# postfix asks for a mail configuration on install: the tests write
	# their own private main.cf, so none is wanted.
	echo 'postfix postfix/main_mailer_type select No configuration' |
		chroot "$root" debconf-set-selections
	chroot "$root" apt-get update -q >&2
	chroot "$root" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends "$@" >&2
	chroot "$root" apt-get clean >&2
}

mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock -w 1800 9 || die "timed out waiting for $dir.lock"

if [ -d "$dir" ]; then
	mapfile -t need < <(missing_pkgs "$dir")
	if [ "${#need[@]}" -gt 0 ]; then
		log "installing ${need[*]} into $dir"
		install_pkgs "$dir" "${need[@]}"
	fi
else
	url=$(mirror) || die "no Debian mirror found in /etc/apt/sources.list{,.d/} (set SHITENNO_DEBIAN_MIRROR)"
	tmp="$dir.tmp"
	rm -rf "$tmp"
	log "debootstrap trixie from $url into $tmp"
	debootstrap --variant=minbase trixie "$tmp" "$url" >&2 ||
		die "debootstrap failed (see $tmp/debootstrap/debootstrap.log)"
	install_pkgs "$tmp" "${pkgs[@]}"
	mv "$tmp" "$dir"
fi

# Report the versions so a log shows what was tested.
log "ready: dovecot $(chroot "$dir" dovecot --version 2>/dev/null || echo 'missing?')," \
	"postfix $(chroot "$dir" postconf -dh mail_version 2>/dev/null || echo 'missing?')," \
	"$(chroot "$dir" nginx -v 2>&1 || echo 'nginx missing?')"
echo "$dir"
