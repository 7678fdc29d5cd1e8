package scaleworld

import (
	"reflect"
	"strings"
	"testing"

	"github.com/open-acn/acn/npm/translate"
)

func TestBuildSizesAndLocality(t *testing.T) {
	w := Build(Default("node-a"))
	if len(w.Pods) != 10000 || len(w.Namespaces) != 100 || len(w.Policies) != 1000 {
		t.Fatalf("sizes: %d pods %d namespaces %d policies", len(w.Pods), len(w.Namespaces), len(w.Policies))
	}
	local, ips := 0, map[string]bool{}
	for _, p := range w.Pods {
		if p.Spec.NodeName == "node-a" {
			local++
		}
		if ips[p.Status.PodIP] {
			t.Fatalf("duplicate pod IP %s", p.Status.PodIP)
		}
		ips[p.Status.PodIP] = true
	}
	if local != 250 {
		t.Fatalf("%d local pods, want 250", local)
	}
	names := map[string]bool{}
	for _, p := range w.Policies {
		if names[p.Namespace+"/"+p.Name] {
			t.Fatalf("duplicate policy %s/%s", p.Namespace, p.Name)
		}
		names[p.Namespace+"/"+p.Name] = true
	}
}

func TestRandomLocalSpread(t *testing.T) {
	c := Default("node-a")
	c.RandomLocal = true
	local, nss := 0, map[string]bool{}
	for _, p := range Build(c).Pods {
		if p.Spec.NodeName == "node-a" {
			local++
			nss[p.Namespace] = true
		}
	}
	if local != 250 {
		t.Fatalf("%d local pods, want 250", local)
	}
	// every 40th pod would be in 5 namespaces only
	if len(nss) < 50 {
		t.Fatalf("local pods in %d namespaces, want them spread", len(nss))
	}
}

func TestBuildClusterIsDeterministicAndSized(t *testing.T) {
	c := ClusterConfig{Seed: 7, Nodes: 50, Pods: 3000, Namespaces: 40, Policies: 500, Node: "node-0"}
	a, b := BuildCluster(c), BuildCluster(c)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed built two different worlds")
	}
	if len(a.Nodes) != 49 || len(a.Pods) != 3000 || len(a.Namespaces) != 40 || len(a.Policies) != 500 {
		t.Fatalf("sizes: %d nodes, %d pods, %d namespaces, %d policies", len(a.Nodes), len(a.Pods), len(a.Namespaces), len(a.Policies))
	}
	ips := map[string]bool{}
	nsSel, ipBlock := 0, 0
	for _, p := range a.Pods {
		if p.Spec.NodeName == "node-0" {
			t.Fatalf("generated pod %s on the real node", p.Name)
		}
		if ips[p.Status.PodIP] {
			t.Fatalf("pod IP %s twice", p.Status.PodIP)
		}
		ips[p.Status.PodIP] = true
	}
	for _, np := range a.Policies {
		for _, r := range np.Spec.Ingress {
			for _, peer := range r.From {
				if peer.NamespaceSelector != nil {
					nsSel++
				}
				if peer.IPBlock != nil {
					ipBlock++
				}
			}
		}
	}
	// A few percent each, not none and not most.
	if nsSel == 0 || nsSel > 50 || ipBlock == 0 || ipBlock > 50 {
		t.Fatalf("%d namespaceSelector and %d ipBlock peers in 500 policies, want a few percent each", nsSel, ipBlock)
	}
	if reflect.DeepEqual(a, BuildCluster(ClusterConfig{Seed: 8, Nodes: 50, Pods: 3000, Namespaces: 40, Policies: 500, Node: "node-0"})) {
		t.Fatal("another seed built the same world")
	}
}

// TestClusterPoliciesTranslate: every benchmark ClusterNetworkPolicy
// translates completely (nothing failed closed) and selects local pods.
func TestClusterPoliciesTranslate(t *testing.T) {
	w := Build(Config{Pods: 2000, Namespaces: 20, Policies: 100, Local: 100, Node: "n", RandomLocal: true})
	e := translate.NewEngine(translate.Options{NodeName: "n"})
	for _, n := range w.Namespaces {
		e.UpsertNamespace(n)
	}
	for _, p := range w.Pods {
		e.UpsertPod(p)
	}
	cps := ClusterPolicies(100)
	for _, c := range cps {
		if probs := e.UpsertClusterPolicy(c); probs != nil {
			t.Fatalf("%s: %v", c.Name, probs)
		}
	}
	under := 0
	for _, ep := range e.State().Endpoints {
		for _, k := range append(append([]string(nil), ep.Ingress...), ep.Egress...) {
			if strings.HasPrefix(k, "ClusterNetworkPolicy/") {
				under++
				break
			}
		}
	}
	if len(cps) != 100 || under == 0 {
		t.Fatalf("%d policies, %d local pods under one", len(cps), under)
	}
}
