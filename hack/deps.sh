#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine, idempotently:
# quiet and fast when everything is already there.
set -euo pipefail
packages=(
  iptables ipset nftables ebtables iproute2 conntrack kmod   # dataplanes and their tools
  containernetworking-plugins                      # reference bridge/host-local/portmap/loopback
  containerd runc util-linux                       # image import tests; the real cluster's nodes (ctr, nsenter, unshare)
  ethtool jq openssl ca-certificates make gcc git  # build and test helpers
  zip                                              # the Windows release archive
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "deps: Go 1.26 is required (not packaged at this version by Debian)" >&2; exit 1; }
root=$(cd "$(dirname "$0")/.." && pwd)
(cd "$root" && go mod download)
(cd "$root/hack/tools/kube" && go mod download)
(cd "$root/hack/tools/etcd" && go mod download)
