#!/usr/bin/env bash
# Installs the real peers the tests run against (postfix, dovecot, nginx with
# the mail module, swaks (with libnet-ssleay-perl for --tls), runit, systemd's tools, debootstrap for the Debian
# 13 root) on Debian 12 or 13, without starting any of their services.
# `make test` and .ci/run both use it.
#
# Usage: scripts/install-peers.sh [--check] [--deb]
#   --check  only report: print the missing packages and exit 1 if any
#   --deb    also the tools `make deb` / `make test-deb` need (debhelper,
#            dpkg-dev, fakeroot, lintian, debootstrap)
#
# Installs as root, or through `sudo -n` when that works without a password;
# otherwise it fails and prints the exact command to run.
set -euo pipefail

check=0
deb=0
for a in "$@"; do
	case $a in
	--check) check=1 ;;
	--deb) deb=1 ;;
	*) echo "usage: $0 [--check] [--deb]" >&2; exit 2 ;;
	esac
done

pkgs=(postfix dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd nginx libnginx-mod-mail runit swaks libnet-ssleay-perl
	systemd debootstrap ca-certificates psmisc procps util-linux)
[ $deb -eq 0 ] || pkgs+=(debhelper dpkg-dev fakeroot lintian debootstrap man-db)

log() { printf 'install-peers: %s\n' "$*" >&2; }

command -v dpkg-query >/dev/null || { log "not a Debian system (no dpkg-query): install ${pkgs[*]} by hand"; exit 1; }

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -gt 0 ] || exit 0

args=""
[ $deb -eq 0 ] || args=" --deb"
if [ $check -eq 1 ]; then
	log "missing: ${missing[*]}"
	log "install them with: sudo $0$args"
	exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
	SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
	SUDO=(sudo -n)
else
	log "missing: ${missing[*]}"
	log "they need root to install; run:"
	log "    sudo $(cd "$(dirname "$0")" && pwd)/$(basename "$0")$args"
	exit 1
fi

wait_apt() {
	local _
	for _ in $(seq 1 300); do
		if ! "${SUDO[@]}" fuser /var/lib/dpkg/lock-frontend /var/lib/apt/lists/lock >/dev/null 2>&1; then
			return 0
		fi
		sleep 1
	done
}

log "installing ${missing[*]}"
# The package scripts must not start postfix, dovecot or nginx: the tests
# run private instances on loopback. policy-rc.d (invoke-rc.d's veto) is
# put in place for this run only, unless the machine already has one.
rcd=/usr/sbin/policy-rc.d
own_rcd=0
if [ ! -e "$rcd" ]; then
	printf '#!/bin/sh\n# install-peers.sh: no service starts while peers are installed\nexit 101\n' |
		"${SUDO[@]}" tee "$rcd" >/dev/null
	"${SUDO[@]}" chmod 755 "$rcd"
	own_rcd=1
fi
cleanup() { [ $own_rcd -eq 0 ] || "${SUDO[@]}" rm -f "$rcd"; }
trap cleanup EXIT
# postfix asks for a mail configuration: the tests write their own main.cf.
echo 'postfix postfix/main_mailer_type select No configuration' | "${SUDO[@]}" debconf-set-selections
wait_apt
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
wait_apt
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
# What was installed here is not running, and does not start at the next
# boot either (a peer that was already installed is left as it was).
for p in "${missing[@]}"; do
	case $p in
	postfix) s=postfix ;;
	dovecot-core) s=dovecot ;;
	nginx) s=nginx ;;
	*) continue ;;
	esac
	if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
		"${SUDO[@]}" systemctl disable --now "$s" >/dev/null 2>&1 || true
	fi
done
log "done"
