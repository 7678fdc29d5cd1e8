#!/usr/bin/env bash
# make demo: the main job on an embedded default. Builds everything (make
# does), then runs the demo program: a simulated two-node cluster in network
# namespaces, pods plumbed by azure-vnet, azure-npm on each node, a policy,
# and the connectivity matrix before and after. KEEP=1 leaves it running.
# DEMO_CLUSTER=real runs it on the real cluster (containerd, kubelet,
# kube-proxy per node; CNI and NPM installed from deploy/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [[ $EUID -ne 0 ]]; then
  echo "demo: needs root (network namespaces)" >&2
  exit 1
fi
exec go run ./test/demo --out out "$@"
