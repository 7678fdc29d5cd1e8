#!/usr/bin/env bash
# install-cni-plugin.sh: install azure-vnet, azure-vnet-ipam and the conflist
# from a release archive (make azure-cni-plugins) onto a Linux node.
#
#   install-cni-plugin.sh [--force] [--conflist NAME] [--archive FILE | --version V | V]
#
#   --archive FILE   the archive to install (azure-vnet-cni-linux-amd64-<v>.tgz)
#   --version V      take $OUT_DIR/azure-vnet-cni-linux-$ARCH-V.tgz
#                    (default: hack/version.sh's, the version make names
#                    the archive with)
#   --conflist NAME  the conflist of the archive to install: 10-azure.conflist
#                    (transparent mode, the default) or 10-azure-bridge.conflist
#   --force          replace an existing conflist of the same name that differs
#
# Environment:
#   DESTDIR          prefix of every installed path (default: none)
#   CNI_BIN_DIR      plugin directory (default /opt/cni/bin)
#   CNI_CONF_DIR     network config directory (default /etc/cni/net.d)
#   OUT_DIR          where --version looks (default: <repo>/out)
#   ARCH             archive architecture (default amd64)
#   REF_PLUGINS_DIR  where portmap and loopback are copied from when missing
#                    (default /usr/lib/cni, Debian's containernetworking-plugins,
#                    installed with apt-get when absent; when REF_PLUGINS_DIR is
#                    set, apt-get is never run)
#
# The archive's checksum is verified against the .sha256 beside it, and every
# check (checksum, archive content, conflist conflict, reference plugins) is
# done before anything is written: a failure installs nothing. Binaries are
# installed 0755 and the conflist 0644, each through a temporary file renamed
# into place, so a runtime never executes a half-written plugin. Files that are
# already identical are left alone: a second run changes nothing.
#
# Exit codes: 0 installed (or already installed), 1 failure, 2 usage error.
set -euo pipefail

prog=$(basename "$0")
usage() {
	awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0" >&2
	exit 2
}
die() {
	echo "$prog: $*" >&2
	exit 1
}
log() { echo "$prog: $*"; }

force=0
archive=""
version=""
conflist_name="10-azure.conflist"
while [ $# -gt 0 ]; do
	case "$1" in
	--force) force=1 ;;
	--archive)
		[ $# -ge 2 ] || usage
		archive=$2
		shift
		;;
	--archive=*) archive=${1#--archive=} ;;
	--version)
		[ $# -ge 2 ] || usage
		version=$2
		shift
		;;
	--version=*) version=${1#--version=} ;;
	--conflist)
		[ $# -ge 2 ] || usage
		conflist_name=$2
		shift
		;;
	--conflist=*) conflist_name=${1#--conflist=} ;;
	-h | --help) usage ;;
	-*)
		echo "$prog: unknown option $1" >&2
		usage
		;;
	*)
		[ -z "$version" ] || usage
		version=$1
		;;
	esac
	shift
done
if [ -n "$archive" ] && [ -n "$version" ]; then
	echo "$prog: --archive and --version are exclusive" >&2
	usage
fi
case "$conflist_name" in
*/* | "" | . | ..) die "--conflist $conflist_name: want a file name of the archive, e.g. 10-azure.conflist" ;;
esac

script_dir=$(cd "$(dirname "$0")" && pwd)
ARCH=${ARCH:-amd64}
DESTDIR=${DESTDIR:-}
CNI_BIN_DIR=${CNI_BIN_DIR:-/opt/cni/bin}
CNI_CONF_DIR=${CNI_CONF_DIR:-/etc/cni/net.d}
bin_dir="${DESTDIR}${CNI_BIN_DIR}"
conf_dir="${DESTDIR}${CNI_CONF_DIR}"

# --- find the archive -------------------------------------------------------
if [ -z "$archive" ]; then
	out_dir=${OUT_DIR:-$script_dir/../../out}
	if [ -z "$version" ]; then
		# The version make names the archive with (one definition, in hack/).
		[ -x "$script_dir/../../hack/version.sh" ] && git -C "$script_dir" rev-parse --git-dir >/dev/null 2>&1 ||
			die "no --archive or --version given and $script_dir is not in a git checkout"
		version=$("$script_dir/../../hack/version.sh")
	fi
	archive="$out_dir/azure-vnet-cni-linux-$ARCH-$version.tgz"
fi
[ -f "$archive" ] || die "archive $archive not found (build it with: make azure-cni-plugins)"
sumfile="$archive.sha256"
[ -f "$sumfile" ] || die "checksum file $sumfile not found: refusing to install an unverified archive"

# --- verify the checksum ----------------------------------------------------
want=$(awk 'NR==1 {print $1}' "$sumfile")
case "$want" in
[0-9a-f][0-9a-f]*) ;;
*) die "checksum file $sumfile: no sha256 in its first field" ;;
esac
[ ${#want} -eq 64 ] || die "checksum file $sumfile: no sha256 in its first field"
got=$(sha256sum "$archive" | awk '{print $1}')
if [ "$got" != "$want" ]; then
	die "checksum mismatch for $archive: $sumfile says $want, the file is $got; nothing installed"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/install-cni-plugin.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$archive" -C "$tmp" || die "cannot extract $archive"
for f in azure-vnet azure-vnet-ipam "$conflist_name"; do
	[ -f "$tmp/$f" ] || die "archive $archive has no $f"
done

# --- refuse to replace a different conflist ---------------------------------
dst_conf="$conf_dir/$conflist_name"
if [ -e "$dst_conf" ] && ! cmp -s "$tmp/$conflist_name" "$dst_conf"; then
	if [ "$force" -ne 1 ]; then
		die "$dst_conf exists and differs from the archive's; nothing installed (--force replaces it)"
	fi
	log "replacing the different $dst_conf (--force)"
fi

# --- reference plugins the conflist chains (portmap) or the runtime needs ----
ref_missing=()
for p in portmap loopback; do
	[ -x "$bin_dir/$p" ] || ref_missing+=("$p")
done
if [ ${#ref_missing[@]} -gt 0 ]; then
	ref_dir=${REF_PLUGINS_DIR:-/usr/lib/cni}
	need_pkg=0
	for p in "${ref_missing[@]}"; do
		[ -x "$ref_dir/$p" ] || need_pkg=1
	done
	if [ "$need_pkg" -eq 1 ] && [ -z "${REF_PLUGINS_DIR:-}" ] && command -v apt-get >/dev/null 2>&1; then
		log "installing containernetworking-plugins for ${ref_missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q containernetworking-plugins >&2 ||
			die "apt-get install containernetworking-plugins failed; nothing installed"
	fi
	for p in "${ref_missing[@]}"; do
		[ -x "$ref_dir/$p" ] || die "$p is missing from $bin_dir and from $ref_dir (set REF_PLUGINS_DIR, or install containernetworking-plugins); nothing installed"
	done
fi

# --- install ----------------------------------------------------------------
# install_file SRC DST MODE: copy through a temporary file in DST's directory
# and rename it into place, unless DST is already identical with MODE.
install_file() {
	local src=$1 dst=$2 mode=$3
	if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
		if [ "$(stat -c %a "$dst")" != "${mode#0}" ]; then
			chmod "$mode" "$dst"
			log "fixed mode $mode of $dst"
		else
			log "unchanged $dst"
		fi
		return
	fi
	local part
	part=$(mktemp "$(dirname "$dst")/.$(basename "$dst").XXXXXX")
	if ! cp "$src" "$part" || ! chmod "$mode" "$part" || ! mv -f "$part" "$dst"; then
		rm -f "$part"
		die "cannot install $dst"
	fi
	log "installed $dst"
}

mkdir -p -m 0755 "$bin_dir" "$conf_dir"
install_file "$tmp/azure-vnet" "$bin_dir/azure-vnet" 0755
install_file "$tmp/azure-vnet-ipam" "$bin_dir/azure-vnet-ipam" 0755
for p in "${ref_missing[@]}"; do
	install_file "$ref_dir/$p" "$bin_dir/$p" 0755
done
install_file "$tmp/$conflist_name" "$dst_conf" 0644
# The runtime uses the first config file in name order: say so if another
# one takes precedence over ours.
for f in "$conf_dir"/*.conf "$conf_dir"/*.conflist "$conf_dir"/*.json; do
	[ -f "$f" ] || continue
	if [[ "$(basename "$f")" < "$conflist_name" ]]; then
		echo "$prog: warning: $f sorts before $conflist_name: the container runtime uses it, not ours" >&2
	fi
done
log "done: $(basename "$archive") -> $bin_dir, $dst_conf"
