#!/bin/sh
# The version of every build output: the Makefile's VERSION (binaries,
# release archive, image tags), install-cni-plugin.sh's default archive and
# the kustomize overlays all take it from here.
# A release tag (vX.Y.Z) when HEAD has one; else the last release tag plus
# commits (vX.Y.Z-N-gHASH), or v0.0.0-N-gHASH without any tag; -dirty when
# tracked files changed; v0.0.0-dev outside git.
cd "$(dirname "$0")/.." || exit 1
git describe --tags --match 'v*' --dirty 2>/dev/null && exit 0
if hash=$(git rev-parse --short HEAD 2>/dev/null); then
	dirty=
	git diff --quiet HEAD 2>/dev/null || dirty=-dirty
	echo "v0.0.0-$(git rev-list --count HEAD)-g$hash$dirty"
	exit 0
fi
echo v0.0.0-dev
