#!/usr/bin/env bash
# Writes the man pages shitenno-postfix(8), shitenno-dovecot(8),
# shitenno-nginx(8) and shitenno.conf(5) into DIR from docs/*.md (with
# internal/mangen) and the daemons' --help output (from ./bin: make build
# first). debian/rules runs it at package build time.
#
# Usage: scripts/manpages.sh DIR [VERSION] [DATE]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/manpages.sh DIR [VERSION] [DATE]}
version=${2:-dev}
date=${3:-$(date -u +%Y-%m-%d)}
GO=${GO:-go}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$GO build -o "$tmp/mangen" ./internal/mangen

# opt FILE...: the files that exist (sections other work adds later).
opt() { local f; for f in "$@"; do [ -f "$f" ] && echo "$f"; done; return 0; }
common=(-version "$version" -date "$date")
debdoc=$(opt docs/debian.md)

page() { # NAME SECTION SUMMARY SEEALSO [mangen args and docs...]
	local name=$1 sec=$2 summary=$3 see=$4
	shift 4
	"$tmp/mangen" -name "$name" -section "$sec" -summary "$summary" -seealso "$see" "${common[@]}" "$@" \
		>"$out/$name.$sec"
}
help() { "bin/$1" --help >"$tmp/$1.help" 2>&1 || true; echo "$tmp/$1.help"; }

# shellcheck disable=SC2046 # opt prints one file per line, no spaces
page shitenno-postfix 8 "postfix socketmap lookups answered by an HTTP+JSON backend" \
	"postfix(1),postmap(1),socketmap_table(5),shitenno.conf(5),shitenno-dovecot(8),shitenno-nginx(8)" \
	-usage "$(help shitenno-postfix)" docs/intro.md#Postfix $(opt docs/sasl.md docs/policy.md docs/tcptable.md) \
	docs/supervision.md docs/operating.md docs/failure.md $debdoc
# shellcheck disable=SC2046
page shitenno-dovecot 8 "dovecot passdb and userdb lookups answered by an HTTP+JSON backend" \
	"dovecot(1),doveadm(1),shitenno.conf(5),shitenno-postfix(8),shitenno-nginx(8)" \
	-usage "$(help shitenno-dovecot)" docs/dovecot.md docs/dovecot24.md docs/supervision.md docs/operating.md $debdoc
page shitenno-nginx 8 "nginx mail proxy authentication answered by an HTTP+JSON backend" \
	"nginx(8),shitenno.conf(5),shitenno-postfix(8),shitenno-dovecot(8)" \
	-usage "$(help shitenno-nginx)" docs/nginx.md docs/supervision.md docs/operating.md $debdoc
page shitenno.conf 5 "configuration of the shitenno daemons" \
	"shitenno-postfix(8),shitenno-dovecot(8),shitenno-nginx(8)" \
	-example conf/shitenno.conf docs/intro.md#Configuration docs/intro.md#"The backend API" docs/tls.md docs/cache.md

# A page man(1) cannot format, or formats with warnings, fails the build.
if command -v man >/dev/null 2>&1; then
	for f in "$out"/*; do
		w=$(MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings -l "$f" 2>&1 >/dev/null || echo "man failed on $f")
		if [ -n "$w" ]; then
			echo "manpages.sh: $f:" >&2
			echo "$w" >&2
			exit 1
		fi
	done
fi
ls "$out"
