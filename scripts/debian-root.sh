# shellcheck shell=bash
# Sourced (not run) by scripts/test-deb.sh and scripts/trixie-chroot.sh:
# building, and topping up, the cached Debian roots they work in. Needs root,
# debootstrap and flock; the caller defines log MESSAGE and die MESSAGE.

# debian_mirror prints the first non-security Debian URI of the host's apt
# sources: deb822 files (URIs: lines) first, then one-line sources.list
# entries; $SHITENNO_DEBIAN_MIRROR overrides them. No host name is
# hard-coded here.
debian_mirror() {
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

# debian_missing ROOT PKG...: the PKGs not installed in ROOT, one a line.
debian_missing() {
	local root=$1 p
	shift
	for p in "$@"; do
		chroot "$root" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
	done
}

# debian_install ROOT PKG...: installs PKGs into ROOT from its apt sources.
debian_install() {
	local root=$1
	shift
	# Never let package scripts start services inside the root.
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 755 "$root/usr/sbin/policy-rc.d"
	# postfix asks for a mail configuration on install: the tests write
	# their own main.cf, so none is wanted.
	echo 'postfix postfix/main_mailer_type select No configuration' |
		chroot "$root" debconf-set-selections
	chroot "$root" apt-get update -q >&2
	chroot "$root" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends "$@" >&2
	chroot "$root" apt-get clean >&2
}

# debian_root RELEASE DIR PKG...: makes DIR a minbase RELEASE root holding
# PKGs. A new root is built in DIR.tmp and renamed to DIR only when complete,
# so an existing DIR is always usable; on reuse only the PKGs missing from it
# are installed. Concurrent callers serialise on DIR.lock: debian_root
# returns holding it on fd 9 (close it with exec 9>&-, or exit).
debian_root() {
	local rel=$1 dir=$2 url need
	shift 2
	mkdir -p "$(dirname "$dir")"
	exec 9>"$dir.lock"
	flock -w 1800 9 || die "timed out waiting for $dir.lock"
	if [ -d "$dir" ]; then
		mapfile -t need < <(debian_missing "$dir" "$@")
		if [ "${#need[@]}" -gt 0 ]; then
			log "installing ${need[*]} into $dir"
			debian_install "$dir" "${need[@]}"
		fi
	else
		url=$(debian_mirror) || die "no Debian mirror in the apt sources (set SHITENNO_DEBIAN_MIRROR)"
		rm -rf "$dir.tmp"
		log "debootstrap --variant=minbase $rel from $url into $dir.tmp"
		debootstrap --variant=minbase "$rel" "$dir.tmp" "$url" >&2 ||
			die "debootstrap $rel failed (see $dir.tmp/debootstrap/debootstrap.log)"
		debian_install "$dir.tmp" "$@"
		mv "$dir.tmp" "$dir"
	fi
}
