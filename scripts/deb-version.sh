#!/bin/sh
# Prints the Debian version of the checked-out tree, from git describe:
#   tag vX.Y.Z exactly            -> X.Y.Z
#   N commits after tag vX.Y.Z    -> X.Y.Z+gitN.HASH
#   no tag yet                    -> BASE~gitN.HASH (BASE: debian/changelog's
#                                    top version; N: commits since the root,
#                                    so that later snapshots sort higher)
# and ".dirty" appended when the work tree has uncommitted changes.
set -eu
cd "$(dirname "$0")/.."
base=$(dpkg-parsechangelog -l debian/changelog -S Version)
if d=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
	d=${d#v}
	case $d in
	*-*-g*) tag=${d%-*-g*}; rest=${d#"$tag"-}; v="$tag+git${rest%-g*}.${rest##*-g}" ;;
	*) v=$d ;;
	esac
elif git rev-parse --git-dir >/dev/null 2>&1; then
	v="$base~git$(git rev-list --count HEAD).$(git rev-parse --short=7 HEAD)"
else
	v=$base
fi
if git rev-parse --git-dir >/dev/null 2>&1 && ! git diff --quiet HEAD -- 2>/dev/null; then
	v="$v.dirty"
fi
echo "$v"
