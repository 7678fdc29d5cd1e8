package dptest

import (
	"strings"

	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// LoadWorld puts world w into eng in place of the previous one: its
// namespaces, pods, NetworkPolicies and ClusterNetworkPolicies, deleting
// the policies w no longer has (the property tests' worlds keep their pod
// names, so pods are only updated).
func LoadWorld(eng *translate.Engine, w translatetest.World) {
	for _, n := range w.Namespaces {
		eng.UpsertNamespace(n)
	}
	for _, p := range w.Pods {
		eng.UpsertPod(p)
	}
	keep := map[string]bool{}
	for _, p := range w.Policies {
		eng.UpsertPolicy(p)
		keep[p.Namespace+"/"+p.Name] = true
	}
	for _, p := range w.ClusterPolicies {
		eng.UpsertClusterPolicy(p)
		keep[policy.ClusterPolicyKey(p.Name)] = true
	}
	for k := range eng.State().Policies {
		if keep[k] {
			continue
		}
		if name, ok := strings.CutPrefix(k, policy.ClusterPolicyKeyPrefix); ok {
			eng.DeleteClusterPolicy(name)
			continue
		}
		ns, name, _ := strings.Cut(k, "/")
		eng.DeletePolicy(ns, name)
	}
}
