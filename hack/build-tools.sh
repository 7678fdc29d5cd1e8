#!/usr/bin/env bash
# Builds the real Kubernetes control-plane binaries used by integration tests,
# the e2e harness and the demo: kube-apiserver and kubectl from k8s.io/kubernetes
# (pinned in hack/tools/kube/go.mod) and etcd (pinned in hack/tools/etcd/go.mod).
# They live in separate modules so the product's go.mod never depends on
# k8s.io/kubernetes. Binaries are cached in out/tools/ and rebuilt only when
# the pinned go.mod changes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/out/tools"
mkdir -p "$out"

kube_version=$(awk '$1=="k8s.io/kubernetes"{print $2}' "$root/hack/tools/kube/go.mod" | head -1)
kube_version=${kube_version:-$(grep -o 'k8s.io/kubernetes v[0-9.]*' "$root/hack/tools/kube/go.mod" | awk '{print $2}' | head -1)}
major=$(echo "${kube_version#v}" | cut -d. -f1)
minor=$(echo "${kube_version#v}" | cut -d. -f2)

stamp() { sha256sum "$root/hack/tools/$1/go.mod" "$root/hack/tools/$1/go.sum" | sha256sum | cut -c1-16; }

build_kube() {
  local s; s=$(stamp kube)
  if [[ -x "$out/kube-apiserver" && -x "$out/kubectl" && "$(cat "$out/.kube.stamp" 2>/dev/null)" == "$s" ]]; then return; fi
  echo "building kube-apiserver and kubectl $kube_version (cold build takes a few minutes)..." >&2
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$kube_version"
  (cd "$root/hack/tools/kube" && GOFLAGS=-mod=mod go build -trimpath -ldflags "$ld" -o "$out/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
  echo "$s" > "$out/.kube.stamp"
}

build_etcd() {
  local s; s=$(stamp etcd)
  if [[ -x "$out/etcd" && "$(cat "$out/.etcd.stamp" 2>/dev/null)" == "$s" ]]; then return; fi
  echo "building etcd..." >&2
  (cd "$root/hack/tools/etcd" && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
  echo "$s" > "$out/.etcd.stamp"
}

build_etcd
build_kube
