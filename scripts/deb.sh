#!/usr/bin/env bash
# make deb: builds dist/shitenno_<version>_<arch>.deb with dpkg-buildpackage
# from a copy of the work tree (tracked and untracked, not ignored, files) in
# dist/build/, so the tree itself stays clean. The version comes from git
# (scripts/deb-version.sh); when it differs from debian/changelog's top
# entry, the copy gets a snapshot entry on top. The package build itself is
# offline: modules are downloaded into the Go module cache first, then
# dpkg-buildpackage runs with GOPROXY=off. lintian runs on the result when
# installed (errors and warnings fail; overrides are explained in
# debian/shitenno.lintian-overrides).
#
# Environment: GO (default /usr/local/go/bin/go), LINTIAN=0 to skip lintian.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-/usr/local/go/bin/go}
export PATH=$(dirname "$GO"):$PATH

die() { echo "deb.sh: $*" >&2; exit 1; }
[ -x "$GO" ] || die "no Go at $GO (set GO=): Debian's golang-go is too old for go.mod"
for t in dpkg-buildpackage dh dpkg-parsechangelog; do
	command -v $t >/dev/null || die "$t is missing: sudo scripts/install-peers.sh --deb (debhelper, dpkg-dev)"
done

version=$(./scripts/deb-version.sh)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
base=$(dpkg-parsechangelog -l debian/changelog -S Version)
echo "deb.sh: shitenno $version ($arch)"

"$GO" mod download
export GOMODCACHE=$("$GO" env GOMODCACHE)
export GOCACHE=$("$GO" env GOCACHE)

build=dist/build
src=$build/shitenno-$version
rm -rf "$build"
mkdir -p "$src"
while IFS= read -r -d '' f; do
	case $f in dist/*) continue ;; esac
	[ -e "$f" ] && printf '%s\0' "$f"
done < <(git ls-files -z -co --exclude-standard) | tar --null -T - -cf - | tar -xf - -C "$src"

if [ "$version" != "$base" ]; then
	maint=$(sed -n 's/^Maintainer: //p' debian/control)
	when=$(date -R -u -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")
	{
		echo "shitenno ($version) unstable; urgency=medium"
		echo
		echo "  * Snapshot of $(git describe --always --dirty 2>/dev/null || echo 'an unknown commit'), built by make deb."
		echo
		echo " -- $maint  $when"
		echo
		cat debian/changelog
	} >"$src/debian/changelog"
fi

(cd "$src" && GO="$GO" dpkg-buildpackage -b -us -uc --no-sign) >"$build/build.log" 2>&1 ||
	{ tail -40 "$build/build.log"; die "dpkg-buildpackage failed (log: $build/build.log)"; }
deb=shitenno_${version}_${arch}.deb
mv "$build/$deb" dist/
echo "deb.sh: dist/$deb"

if [ "${LINTIAN:-1}" != 0 ]; then
	if command -v lintian >/dev/null; then
		lintian --fail-on error,warning --display-info "dist/$deb" ||
			die "lintian: fix the tags above or override them in debian/shitenno.lintian-overrides with a reason"
	else
		echo "deb.sh: lintian is not installed: not checked (sudo scripts/install-peers.sh --deb)" >&2
	fi
fi
