#!/usr/bin/env bash
# make test-deb: installs dist/shitenno_….deb in fresh Debian 12 (bookworm)
# and 13 (trixie) roots and checks what the package promises:
#   - apt-get install ./shitenno_….deb succeeds (dependencies from the mirror)
#   - files and modes where debian/ puts them; the shitenno user; the
#     sockets of installed peers enabled, no service enabled; the optional
#     listeners' sockets (SASL, policy, tcp_table) installed, not enabled;
#     an admin can enable them, an upgrade keeps them, purge removes them
#   - --check-config lists every listener; without systemd the daemon
#     creates the policy socket in postfix's private/ (postfix:postfix 0660)
#   - systemd-analyze verify accepts the installed units
#   - unconfigured, the daemons refuse to start (no RemoteURL); with
#     RemoteURL pointing at the example backend, the installed daemons with
#     the installed configuration answer postmap -q (postfix), doveadm auth
#     test (dovecot 2.3 with the dict example on bookworm, 2.4 with the Lua
#     script on trixie) and an nginx auth_http request
#   - an upgrade to a newer version keeps the edited conffile and its mode
#   - purge removes everything but the shitenno user
#
# Usage: scripts/test-deb.sh DEB [RELEASE...]   (default: bookworm trixie)
# Needs root and debootstrap. The base roots (debootstrap --variant=minbase
# plus systemd, postfix, dovecot-core, curl; dovecot's Lua on trixie) are cached as
# /var/tmp/shitenno-debtest-RELEASE and rebuilt when missing; each run
# works on a copy, removed afterwards. Mirror: the host's apt sources, or
# $SHITENNO_DEBIAN_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
# shellcheck source=scripts/debian-root.sh
. scripts/debian-root.sh

deb=${1:?usage: scripts/test-deb.sh DEB [RELEASE...]}
shift
releases=("$@")
[ ${#releases[@]} -gt 0 ] || releases=(bookworm trixie)
deb=$(readlink -f "$deb")
cache=${SHITENNO_DEBTEST_DIR:-/var/tmp}
base_pkgs=(systemd postfix dovecot-core curl ca-certificates)
# Socket units of the optional shitenno-postfix listeners (not enabled by
# the package).
optional_units=(shitenno-postfix-sasl.socket shitenno-postfix-policy.socket shitenno-postfix-tcptable@.socket)
# trixie: dovecot 2.4 runs the shipped Lua script (doveadm auth test).
trixie_pkgs=(dovecot-auth-lua lua-socket lua-cjson)

# pkgs RELEASE: what the base root of RELEASE holds besides minbase.
pkgs() {
	echo "${base_pkgs[@]}"
	[ "$1" != trixie ] || echo "${trixie_pkgs[@]}"
}

log() { printf 'test-deb: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
fails=0
fail() { log "FAIL [$rel]: $*"; fails=$((fails + 1)); }
ok() { log "ok   [$rel]: $*"; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot): sudo make test-deb"
command -v debootstrap >/dev/null || die "debootstrap is missing: sudo scripts/install-peers.sh --deb"
[ -f "$deb" ] || die "$deb: no such file (make deb)"

# base RELEASE: path of the cached base root, built when missing.
base() {
	local dir=$cache/shitenno-debtest-$1
	# shellcheck disable=SC2046 # package names have no spaces
	debian_root "$1" "$dir" $(pkgs "$1")
	[ -f "$dir/etc/postfix/main.cf" ] || printf 'compatibility_level = 3.6\n' >"$dir/etc/postfix/main.cf"
	exec 9>&-
	echo "$dir"
}

# Example backend on the host (the roots share the host's loopback).
tmp=$(mktemp -d)
root=""
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ -n "$root" ]; then
		chroot "$root" doveadm stop >/dev/null 2>&1 || true
		umount "$root/proc" 2>/dev/null || true
		rm -rf "$root"
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
"$GO" build -o "$tmp/backend" ./cmd/shitenno-example-backend
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 18980)
"$tmp/backend" --listen "127.0.0.1:$port" --data conf/example-backend.toml --quiet &
pids+=($!)

# The newer version for the upgrade test: the same package, version +1.
version=$(dpkg-deb -f "$deb" Version)
newer=$tmp/new
dpkg-deb -R "$deb" "$newer"
sed -i "s/^Version: .*/Version: $version+upgradetest/" "$newer/DEBIAN/control"
dpkg-deb --root-owner-group -b "$newer" "$tmp/shitenno_new.deb" >/dev/null
rm -rf "$newer"

in_root() { chroot "$root" "$@"; }
apt_in() { in_root env DEBIAN_FRONTEND=noninteractive apt-get "$@" -y -q -o Dpkg::Use-Pty=0 >&2; }
# listing: what the root holds, except what changes by itself.
listing() {
	(cd "$root" && find . -xdev \( -path ./proc -o -path ./tmp -o -path ./run -o -path ./var/log \
		-o -path ./var/cache -o -path ./var/lib/apt -o -path ./var/lib/dpkg \) -prune -o -print |
		grep -v -e '^\./etc/\(passwd\|group\|shadow\|gshadow\)-$' -e '^\./etc/\(sub\|\)[ug]id' | sort)
}

# check_mode MODE OWNER PATH
check_mode() {
	local got
	got=$(in_root stat -c '%a %U:%G' "$3" 2>/dev/null || echo missing)
	[ "$got" = "$1 $2" ] || fail "$3: $got, want $1 $2"
}

# start NAME: the installed daemon with the installed configuration, as
# root without systemd: it creates its socket (owner and mode from the
# configuration) and switches to user shitenno.
start() {
	# chroot itself, not the in_root function: $! must be the daemon
	# (chroot execs it), or kill would stop a subshell and leave the
	# daemon running.
	chroot "$root" /usr/sbin/shitenno-"$1" --config /etc/shitenno/shitenno.conf >"$tmp/$1.log" 2>&1 &
	pids+=($!)
	local i
	for i in $(seq 1 50); do
		[ -S "$root/run/shitenno-$1" ] && return 0
		sleep 0.1
	done
	fail "shitenno-$1 did not create /run/shitenno-$1: $(cat "$tmp/$1.log")"
}

for rel in "${releases[@]}"; do
	b=$(base "$rel")
	root=$(mktemp -d "$cache/shitenno-debtest-$rel.run.XXXXXX")
	log "[$rel] copying $b"
	cp -a "$b/." "$root/"
	mount -t proc proc "$root/proc"
	# postfix creates its queue directories (private/ for the SASL and
	# policy sockets) on first start; "postfix check" does it here.
	[ -d "$root/var/spool/postfix/private" ] || in_root postfix check >&2 || true
	[ -d "$root/var/spool/postfix/private" ] || fail "postfix check did not create /var/spool/postfix/private"
	before=$(listing)

	cp "$deb" "$root/tmp/shitenno.deb"
	cp "$tmp/shitenno_new.deb" "$root/tmp/shitenno_new.deb"
	if apt_in install ./tmp/shitenno.deb 2>"$tmp/apt.log" || { cat "$tmp/apt.log" >&2; false; }; then
		ok "apt-get install ./$(basename "$deb")"
	else
		fail "apt-get install"
		umount "$root/proc"; rm -rf "$root"; root=""; continue
	fi

	# Dependencies pulled in: procps (/bin/kill for ExecReload) is not in minbase.
	in_root dpkg-query -W -f='${Status}' procps 2>/dev/null | grep -q "install ok installed" ||
		fail "procps (Depends) was not installed"

	# Files and modes.
	for d in postfix dovecot nginx; do
		check_mode 755 root:root /usr/sbin/shitenno-$d
		check_mode 755 root:root /usr/share/doc/shitenno/examples/runit/shitenno-$d/run
		check_mode 644 root:root /usr/share/man/man8/shitenno-$d.8.gz
	done
	for u in "$root"/usr/lib/systemd/system/shitenno-*; do
		check_mode 644 root:root "${u#"$root"}"
	done
	check_mode 640 root:shitenno /etc/shitenno/shitenno.conf
	check_mode 644 root:root /usr/lib/sysusers.d/shitenno.conf
	check_mode 644 root:root /usr/share/man/man5/shitenno.conf.5.gz
	in_root dpkg-query -W -f='${Conffiles}\n' shitenno | grep -q ' /etc/shitenno/shitenno.conf ' ||
		fail "/etc/shitenno/shitenno.conf is not a conffile"
	in_root getent passwd shitenno | grep -q ':/nonexistent:/usr/sbin/nologin$' ||
		fail "user shitenno: $(in_root getent passwd shitenno || echo missing)"
	# Peers postfix and dovecot are in the root, www-data always: every
	# socket is enabled; services are started by their sockets only.
	for d in postfix dovecot nginx; do
		[ -L "$root/etc/systemd/system/sockets.target.wants/shitenno-$d.socket" ] ||
			fail "shitenno-$d.socket is not enabled"
		[ ! -e "$root/etc/systemd/system/multi-user.target.wants/shitenno-$d.service" ] ||
			fail "shitenno-$d.service is enabled (sockets start it)"
	done
	# The brute-force control sockets go with the daemons that check
	# logins: root's, 0600, made by systemd (the daemon runs unprivileged).
	for d in postfix nginx; do
		check_mode 644 root:root "/usr/lib/systemd/system/shitenno-$d-control.socket"
		[ -L "$root/etc/systemd/system/sockets.target.wants/shitenno-$d-control.socket" ] ||
			fail "shitenno-$d-control.socket is not enabled"
		grep -q '^SocketMode=0600$' "$root/usr/lib/systemd/system/shitenno-$d-control.socket" ||
			fail "shitenno-$d-control.socket is not mode 0600"
	done
	[ ! -e "$root/usr/lib/systemd/system/shitenno-dovecot-control.socket" ] ||
		fail "shitenno-dovecot has no logins to guard, yet a control socket"
	# The optional listeners' sockets: installed, never enabled by the
	# package (postfix must be configured to use them first).
	for u in "${optional_units[@]}"; do
		check_mode 644 root:root "/usr/lib/systemd/system/$u"
		[ ! -e "$root/etc/systemd/system/sockets.target.wants/${u/@./@10041.}" ] ||
			fail "$u is enabled by the package"
	done
	ok "files, modes, conffile, user, enabled sockets"

	# systemd-analyze cannot verify a template: an instance in its place.
	if out=$(in_root sh -c 'cp /usr/lib/systemd/system/shitenno-postfix-tcptable@.socket /tmp/shitenno-postfix-tcptable@10041.socket &&
		systemd-analyze verify $(ls /usr/lib/systemd/system/shitenno-*.socket | grep -v "@\.socket$") \
		/tmp/shitenno-postfix-tcptable@10041.socket /usr/lib/systemd/system/shitenno-*.service' 2>&1) && [ -z "$out" ]; then
		ok "systemd-analyze verify"
	else
		fail "systemd-analyze verify: $out"
	fi

	# Unconfigured: refuses to start, says why.
	if out=$(in_root shitenno-postfix --check-config 2>&1); then
		fail "--check-config accepts the shipped configuration (RemoteURL unset): $out"
	elif ! grep -q RemoteURL <<<"$out"; then
		fail "--check-config does not name RemoteURL: $out"
	else
		ok "unconfigured: $out"
	fi

	# Only RemoteURL edited.
	sed -i "s|^# RemoteURL = \"http://127.0.0.1:8080/api/\".*|RemoteURL = \"http://127.0.0.1:$port/\"|" \
		"$root/etc/shitenno/shitenno.conf"
	grep -q "^RemoteURL = \"http://127.0.0.1:$port/\"" "$root/etc/shitenno/shitenno.conf" || fail "could not set RemoteURL"
	in_root setpriv --reuid=shitenno --regid=shitenno --clear-groups \
		shitenno-postfix --config /etc/shitenno/shitenno.conf --check-config >/dev/null 2>"$tmp/check" ||
		fail "user shitenno cannot use the configuration: $(cat "$tmp/check")"

	# Without systemd (runit, upstart) the daemon creates the optional
	# listeners itself: the policy socket inside postfix's chroot, with the
	# owner and mode smtpd needs.
	sed -i '/^\[Postfix\]$/a PolicySocket = "/var/spool/postfix/private/shitenno-policy"' "$root/etc/shitenno/shitenno.conf"
	if out=$(in_root shitenno-postfix --check-config 2>&1) &&
		grep -q '^listen: unix:/var/spool/postfix/private/shitenno-policy (policy, owner postfix:postfix, mode 0660; systemd: shitenno-postfix-policy.socket)$' <<<"$out" &&
		grep -q '^listen: tcptable off ' <<<"$out"; then
		ok "--check-config lists every listener"
	else
		fail "--check-config: $out"
	fi
	for d in postfix dovecot nginx; do start $d; done
	for i in $(seq 1 50); do [ -S "$root/var/spool/postfix/private/shitenno-policy" ] && break; sleep 0.1; done
	check_mode 660 postfix:postfix /var/spool/postfix/private/shitenno-policy
	if out=$(in_root postmap -q postmaster@example.org socketmap:unix:/run/shitenno-postfix:virtual 2>&1) &&
		[ "$out" = alice@example.org ]; then
		ok "postmap -q postmaster@example.org → $out"
	else
		fail "postmap -q: $out"
	fi
	if [ "$rel" = bookworm ]; then
		# dovecot 2.3 with the shipped dict passdb/userdb example.
		cp -a "$root/etc/dovecot" "$tmp/dovecot-etc"
		cp "$root/usr/share/doc/shitenno/examples/dovecot/dovecot-dict-auth.conf.ext" "$root/etc/dovecot/"
		cp "$root/usr/share/doc/shitenno/examples/dovecot/auth-shitenno.2.3.conf.ext" "$root/etc/dovecot/conf.d/auth-shitenno.conf.ext"
		sed -i 's/^!include auth-system.conf.ext/!include auth-shitenno.conf.ext/' "$root/etc/dovecot/conf.d/10-auth.conf"
		printf 'protocols =\nlisten = 127.0.0.1\nauth_verbose = yes\nlog_path = /tmp/dovecot.log\n' >"$root/etc/dovecot/local.conf"
		if in_root dovecot 2>"$tmp/dovecot.err"; then
			sleep 1
			if out=$(in_root doveadm auth test alice@example.org secret 2>&1); then
				ok "doveadm auth test alice@example.org: $(head -1 <<<"$out")"
			else
				fail "doveadm auth test: $out $(cat "$root/tmp/dovecot.log" 2>/dev/null)"
			fi
			if out=$(in_root doveadm auth test alice@example.org wrong 2>&1); then
				fail "doveadm auth test with a wrong password succeeded: $out"
			fi
			in_root doveadm stop >/dev/null 2>&1 || true
		else
			fail "dovecot does not start: $(cat "$tmp/dovecot.err")"
		fi
		# What running dovecot left behind is not the package's.
		rm -rf "$root/etc/dovecot" "$root/tmp/dovecot.log" "$root/var/lib/dovecot/instances"
		cp -a "$tmp/dovecot-etc" "$root/etc/dovecot"
	else
		# dovecot 2.4 with the shipped Lua passdb/userdb example, in a
		# private configuration (Debian's dovecot.conf left alone).
		dv=/tmp/dovecot24
		mkdir -p "$root$dv/run" "$root$dv/state"
		sed -e "s|/usr/local/share/shitenno/dovecot/shitenno.lua|/usr/share/doc/shitenno/examples/dovecot/shitenno.lua|" \
			"$root/usr/share/doc/shitenno/examples/dovecot/auth-shitenno.2.4.conf.ext" >"$root$dv/auth-shitenno.conf.ext"
		cat >"$root$dv/dovecot.conf" <<CONF
dovecot_config_version = 2.4.1
dovecot_storage_version = 2.4.1
base_dir = $dv/run
state_dir = $dv/state
log_path = $dv/dovecot.log
protocols =
listen = 127.0.0.1
auth_allow_cleartext = yes
auth_verbose = yes
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
!include $dv/auth-shitenno.conf.ext
CONF
		if in_root dovecot -c "$dv/dovecot.conf" 2>"$tmp/dovecot.err"; then
			sleep 1
			if out=$(in_root doveadm -c "$dv/dovecot.conf" auth test alice@example.org secret 2>&1); then
				ok "doveadm auth test alice@example.org (dovecot 2.4, Lua): $(head -1 <<<"$out")"
			else
				fail "doveadm auth test (2.4): $out $(cat "$root$dv/dovecot.log" 2>/dev/null)"
			fi
			if out=$(in_root doveadm -c "$dv/dovecot.conf" auth test alice@example.org wrong 2>&1); then
				fail "doveadm auth test with a wrong password succeeded: $out"
			fi
			in_root doveadm -c "$dv/dovecot.conf" stop >/dev/null 2>&1 || true
			sleep 1
		else
			fail "dovecot 2.4 does not start: $(cat "$tmp/dovecot.err")"
		fi
		rm -rf "${root:?}$dv" "$root/var/lib/dovecot/instances"
	fi
	hdr=$(in_root curl -s -D - -o /dev/null --unix-socket /run/shitenno-nginx \
		-H 'Auth-Method: plain' -H 'Auth-User: alice@example.org' -H 'Auth-Pass: secret' \
		-H 'Auth-Protocol: imap' -H 'Auth-Login-Attempt: 1' -H 'Client-IP: 127.0.0.1' \
		http://localhost/auth 2>&1 | tr -d '\r')
	if grep -q '^Auth-Status: OK$' <<<"$hdr"; then
		ok "nginx auth_http request: Auth-Status: OK"
	else
		fail "nginx auth_http request: $hdr"
	fi
	for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; done
	wait "${pids[@]:1}" 2>/dev/null || true
	pids=("${pids[0]}")
	# As user shitenno the daemon may not remove it from postfix's private
	# directory (it warns; the next start replaces it).
	grep -q 'socket file left behind.*shitenno-policy' "$tmp/postfix.log" ||
		fail "no warning about the policy socket left behind: $(cat "$tmp/postfix.log")"
	rm -f "$root/var/spool/postfix/private/shitenno-policy"

	# An administrator enables the optional sockets (offline here: no
	# systemd running in the root); they survive the upgrade, purge
	# removes them.
	if in_root systemctl enable "${optional_units[@]/@./@10041.}" >"$tmp/enable" 2>&1; then
		for u in "${optional_units[@]/@./@10041.}"; do
			[ -L "$root/etc/systemd/system/sockets.target.wants/$u" ] || fail "systemctl enable $u made no link"
		done
		ok "systemctl enable ${optional_units[*]/@./@10041.}"
	else
		fail "systemctl enable: $(cat "$tmp/enable")"
	fi

	# Upgrade keeps the edited conffile.
	edited=$(sha256sum <"$root/etc/shitenno/shitenno.conf")
	if apt_in install ./tmp/shitenno_new.deb 2>"$tmp/apt.log" || { cat "$tmp/apt.log" >&2; false; }; then
		[ "$(in_root dpkg-query -W -f='${Version}' shitenno)" = "$version+upgradetest" ] || fail "upgrade: version not updated"
		[ "$(sha256sum <"$root/etc/shitenno/shitenno.conf")" = "$edited" ] || fail "upgrade replaced the edited conffile"
		check_mode 640 root:shitenno /etc/shitenno/shitenno.conf
		for u in "${optional_units[@]/@./@10041.}"; do
			[ -L "$root/etc/systemd/system/sockets.target.wants/$u" ] || fail "upgrade disabled $u"
		done
		ok "upgrade to $version+upgradetest keeps the edited conffile and the enabled sockets"
	else
		fail "upgrade"
	fi

	# Purge: nothing left but the user.
	# (and what was installed only for it: autoremove --purge)
	apt_in purge shitenno 2>"$tmp/apt.log" || { cat "$tmp/apt.log" >&2; fail "purge"; }
	apt_in autoremove --purge 2>"$tmp/apt.log" || { cat "$tmp/apt.log" >&2; fail "autoremove --purge"; }
	rm -f "$root/tmp/shitenno.deb" "$root/tmp/shitenno_new.deb"
	left=$(comm -13 <(echo "$before") <(listing))
	if [ -n "$left" ]; then
		fail "purge left: $left"
	elif ! in_root getent passwd shitenno >/dev/null; then
		fail "purge removed the user shitenno (policy: keep it)"
	else
		ok "purge leaves nothing but the user"
	fi

	umount "$root/proc"
	rm -rf "$root"
	root=""
done

if [ $fails -gt 0 ]; then
	log "$fails check(s) failed"
	exit 1
fi
log "all checks passed on ${releases[*]}"
