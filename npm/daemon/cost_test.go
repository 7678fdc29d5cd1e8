package daemon

import (
	"runtime"
	"testing"

	"k8s.io/client-go/tools/cache"

	"github.com/open-acn/acn/internal/scaleworld"
	"github.com/open-acn/acn/npm/translate"
)

// TestClusterCost measures what the agent keeps per pod of the cluster, in
// the scale world of `make bench-scale` at 1,000 nodes (30,000 pods, 400
// namespaces, 2,000 policies): the informer's cache of cachedPods, and the
// translator's state (its pods, selectors and sets). These are the
// per-pod numbers of the cost model in npm/README.md; the bounds catch a
// change that makes either grow.
func TestClusterCost(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds a 30,000-pod world")
	}
	cfg := scaleworld.ClusterConfig{Seed: 1, Nodes: 1000, Pods: 30000, Namespaces: 400, Policies: 2000, Node: "node-a"}
	w := scaleworld.BuildCluster(cfg)
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	slim := slimPodFor(cfg.Node)
	h0 := heap()
	store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, p := range w.Pods {
		c, err := slim(p.DeepCopy()) // the decoded pod is the informer's garbage
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	h1 := heap()
	e := translate.NewEngine(translate.Options{NodeName: cfg.Node})
	for _, n := range w.Namespaces {
		e.UpsertNamespace(n)
	}
	for _, np := range w.Policies {
		e.UpsertPolicy(np)
	}
	h2 := heap()
	for _, o := range store.List() {
		p := o.(*cachedPod)
		e.UpsertPodLabels(p.podWithoutLabels(cfg.Node), p.labels)
	}
	e.TakeChanges()
	h3 := heap()
	pods := float64(len(w.Pods))
	informer, policies, engine := float64(h1-h0)/pods, float64(h2-h1)/float64(len(w.Policies)), float64(h3-h2)/pods
	st := e.Stats()
	t.Logf("%d pods, %d namespaces, %d policies (%d sets, %d members): informer cache %.0f B/pod, translator %.0f B/pod (%.1f set members per pod), %.0f B/policy before its pods",
		len(w.Pods), len(w.Namespaces), len(w.Policies), st.Sets, st.Members, informer, engine, float64(st.Members)/pods, policies)
	if informer > 450 {
		t.Errorf("informer cache: %.0f bytes per pod, over 450", informer)
	}
	// 572 B while the translator computed the sets of every policy of
	// the cluster, 205 B with only the local pods' policies' sets live.
	if engine > 350 {
		t.Errorf("translator: %.0f bytes per pod, over 350", engine)
	}
	runtime.KeepAlive(store)
	runtime.KeepAlive(e)
}
