package scaleworld

import "testing"

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
