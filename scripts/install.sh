#!/bin/sh
# make install: install.sh DESTDIR PREFIX
#
# Installs, below DESTDIR (empty: the live system):
#   PREFIX/sbin/shitenno-{postfix,dovecot,nginx}        the daemons (from ./bin, or $BINDIR)
#   /etc/shitenno/shitenno.conf                          only when absent (never overwritten)
#   PREFIX/lib/systemd/system/shitenno-*.{socket,service} systemd units (inert until enabled), with
#                                                        the optional listeners' sockets
#                                                        (shitenno-postfix-sasl.socket, …)
#   PREFIX/lib/sysusers.d/shitenno.conf                  the shitenno account for systemd-sysusers
#   /etc/sv/shitenno-*/                                  runit service dirs (inert until linked
#                                                        into /etc/service; existing files kept)
#   PREFIX/share/shitenno/                               reference copies: shitenno.conf, the init
#                                                        files of every supervisor (upstart jobs are
#                                                        only here: upstart starts whatever is in
#                                                        /etc/init), conf/*/ extras (dovecot Lua, …)
# Paths inside the init files are rewritten to PREFIX. On the live system
# (no DESTDIR) and as root it also creates the system user shitenno.
set -eu

destdir=${1:-}
prefix=${2:-/usr/local}
case $prefix in
/*) ;;
*) echo "install.sh: PREFIX must be an absolute path: $prefix" >&2; exit 2 ;;
esac
prefix=${prefix%/}
[ -n "$prefix" ] || prefix=/usr
cd "$(dirname "$0")/.."
bindir=${BINDIR:-bin}
daemons="postfix dovecot nginx"
sbin=$prefix/sbin
share=$prefix/share/shitenno

say() { printf 'install.sh: %s\n' "$*"; }

# rewrite FILE: the init files name /usr/local/sbin (the default PREFIX).
rewrite() {
	sed -e "s#/usr/local/sbin/#$sbin/#g" "$1"
}

# put SRC DST MODE: install a file whose paths are rewritten.
put() {
	mkdir -p "$(dirname "$2")"
	rewrite "$1" >"$2.tmp.$$"
	chmod "$3" "$2.tmp.$$"
	mv -f "$2.tmp.$$" "$2"
}

for d in $daemons; do
	if [ ! -x "$bindir/shitenno-$d" ]; then
		echo "install.sh: $bindir/shitenno-$d is missing: run make build first" >&2
		exit 1
	fi
done

# Binaries.
mkdir -p "$destdir$sbin"
for d in $daemons; do
	install -m 0755 "$bindir/shitenno-$d" "$destdir$sbin/shitenno-$d"
done
say "daemons in $destdir$sbin"

# The account (live system only: a package creates it at install time,
# from the sysusers.d file).
if [ -z "$destdir" ] && [ "$(id -u)" -eq 0 ] && ! getent passwd shitenno >/dev/null; then
	if command -v systemd-sysusers >/dev/null 2>&1; then
		systemd-sysusers - <init/systemd/shitenno.sysusers
	else
		useradd --system --user-group --home-dir /nonexistent --no-create-home \
			--shell /usr/sbin/nologin --comment "shitenno lookup daemons" shitenno
	fi
	say "created system user shitenno"
fi

# Configuration: never replace the operator's file. It may hold backend
# credentials (RemoteURL user:password), so on the live system it is
# readable by root and the daemons' group only.
etc=$destdir/etc/shitenno
mkdir -p "$etc"
chmod 0755 "$etc"
if [ -e "$etc/shitenno.conf" ]; then
	say "kept existing $etc/shitenno.conf (new default: $destdir$share/shitenno.conf)"
else
	install -m 0644 conf/shitenno.conf "$etc/shitenno.conf"
	# Group ids of the build host mean nothing inside a DESTDIR.
	if [ -z "$destdir" ] && [ "$(id -u)" -eq 0 ] && getent group shitenno >/dev/null; then
		chgrp shitenno "$etc/shitenno.conf"
		chmod 0640 "$etc/shitenno.conf"
	fi
	say "installed $etc/shitenno.conf"
fi

# systemd.
# Every unit, including the optional listeners' sockets
# (shitenno-postfix-sasl.socket, ...): installed, none enabled.
units=$destdir$prefix/lib/systemd/system
for u in init/systemd/*.socket init/systemd/*.service; do
	put "$u" "$units/$(basename "$u")" 0644
done
put init/systemd/shitenno.sysusers "$destdir$prefix/lib/sysusers.d/shitenno.conf" 0644
say "systemd units in $units"

# runit: keep what the operator edited.
for d in $daemons; do
	sv=$destdir/etc/sv/shitenno-$d
	for f in run finish log/run; do
		if [ -e "$sv/$f" ]; then
			say "kept existing $sv/$f"
		else
			put "init/runit/shitenno-$d/$f" "$sv/$f" 0755
		fi
	done
done
say "runit services in $destdir/etc/sv"

# Reference copies and extras.
mkdir -p "$destdir$share"
install -m 0644 conf/shitenno.conf "$destdir$share/shitenno.conf"
for u in init/systemd/*.socket init/systemd/*.service; do
	put "$u" "$destdir$share/init/systemd/$(basename "$u")" 0644
done
for d in $daemons; do
	for f in run finish log/run; do
		put "init/runit/shitenno-$d/$f" "$destdir$share/init/runit/shitenno-$d/$f" 0755
	done
	put "init/upstart/shitenno-$d.conf" "$destdir$share/init/upstart/shitenno-$d.conf" 0644
done
for f in conf/*/*; do
	[ -f "$f" ] || continue
	rel=${f#conf/}
	mkdir -p "$destdir$share/$(dirname "$rel")"
	install -m 0644 "$f" "$destdir$share/$rel"
done
say "reference files in $destdir$share (upstart jobs: copy init/upstart/*.conf to /etc/init/)"
