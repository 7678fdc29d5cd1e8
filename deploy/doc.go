// Package deploy holds what operators apply to a cluster and install on a
// node (npm/: the azure-npm DaemonSets, RBAC, config and metrics Service;
// cni/: the conflists and install scripts; examples/: NetworkPolicies). It
// has no code: its tests (linux) check the manifests against a real
// kube-apiserver and the binaries' own config loader, and run the install
// script.
package deploy
