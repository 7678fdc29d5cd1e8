#!/usr/bin/env bash
# Builds the real Kubernetes binaries used by integration tests, the e2e
# harnesses and the demo, from k8s.io/kubernetes (pinned in
# hack/tools/kube/go.mod) and etcd (pinned in hack/tools/etcd/go.mod). They
# live in separate modules so the product's go.mod never depends on
# k8s.io/kubernetes. Binaries are cached in out/tools/ and rebuilt only when
# the pinned go.mod changes.
#
# usage: hack/build-tools.sh [GROUP...]   (default: control)
#   control  etcd, kube-apiserver, kubectl (every API-server test)
#   node     kubelet, kube-proxy, kube-controller-manager, kube-scheduler,
#            agnhost (the real cluster, make cluster-real)
#   e2e      e2e.test (the upstream suite) and the ginkgo CLI that runs it
#            in parallel (make e2e-real)
#   npapi    npapi-conformance.test: the conformance suite of
#            sigs.k8s.io/network-policy-api (hack/tools/npapi; make e2e-real)
# The slow builds run at nice 19 so they do not starve concurrent tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/out/tools"
mkdir -p "$out"

kube_version=$(grep -o 'k8s.io/kubernetes v[0-9.]*' "$root/hack/tools/kube/go.mod" | awk '{print $2}' | head -1)
major=$(echo "${kube_version#v}" | cut -d. -f1)
minor=$(echo "${kube_version#v}" | cut -d. -f2)
ld="-s -w -X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitTreeState=clean"

stamp() { sha256sum "$root/hack/tools/$1/go.mod" "$root/hack/tools/$1/go.sum" | sha256sum | cut -c1-16; }

# cached GROUP MODULE BIN... : true when every BIN exists and GROUP's stamp
# matches MODULE's pinned go.mod/go.sum.
cached() {
  local group=$1 module=$2; shift 2
  local b
  for b in "$@"; do [[ -x "$out/$b" ]] || return 1; done
  [[ "$(cat "$out/.$group.stamp" 2>/dev/null)" == "$(stamp "$module")" ]]
}

kube_go() { (cd "$root/hack/tools/kube" && GOFLAGS=-mod=mod nice -n 19 go "$@"); }

build_control() {
  if ! cached etcd etcd etcd; then
    echo "building etcd..." >&2
    (cd "$root/hack/tools/etcd" && GOFLAGS=-mod=mod nice -n 19 go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
    stamp etcd > "$out/.etcd.stamp"
  fi
  if ! cached kube kube kube-apiserver kubectl; then
    echo "building kube-apiserver and kubectl $kube_version (cold build takes a few minutes)..." >&2
    kube_go build -trimpath -ldflags "$ld" -o "$out/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
    stamp kube > "$out/.kube.stamp"
  fi
}

build_node() {
  cached node kube kubelet kube-proxy kube-controller-manager kube-scheduler agnhost && return
  echo "building kubelet, kube-proxy, kube-controller-manager, kube-scheduler and agnhost $kube_version (cold: ~10 minutes)..." >&2
  # Static: agnhost runs in an image with nothing else in it.
  CGO_ENABLED=0 kube_go build -trimpath -ldflags "$ld" -o "$out/" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/test/images/agnhost
  stamp kube > "$out/.node.stamp"
}

build_e2e() {
  cached e2e kube e2e.test ginkgo && return
  echo "building e2e.test $kube_version and ginkgo (cold: ~5 minutes)..." >&2
  # As upstream (hack/make-rules/test-e2e-node.sh, build/root/Makefile):
  # the suite is the test binary of k8s.io/kubernetes/test/e2e.
  kube_go test -c -trimpath -ldflags "$ld" -o "$out/e2e.test" k8s.io/kubernetes/test/e2e
  kube_go build -trimpath -o "$out/ginkgo" github.com/onsi/ginkgo/v2/ginkgo
  stamp kube > "$out/.e2e.stamp"
}

build_npapi() {
  cached npapi npapi npapi-conformance.test && return
  echo "building the network-policy-api conformance suite (cold: ~3 minutes)..." >&2
  (cd "$root/hack/tools/npapi" && GOFLAGS=-mod=mod nice -n 19 go test -c -trimpath -o "$out/npapi-conformance.test" sigs.k8s.io/network-policy-api/conformance)
  stamp npapi > "$out/.npapi.stamp"
}

groups=("$@")
((${#groups[@]})) || groups=(control)
for g in "${groups[@]}"; do
  case "$g" in
    control|node|e2e|npapi) "build_$g" ;;
    *) echo "build-tools: unknown group $g (control, node, e2e, npapi)" >&2; exit 2 ;;
  esac
done
