//go:build linux

package dptest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/open-acn/acn/npm/translate/translatetest"
)

// RunSizesFollowLiveObjects churns namespaces (each with a pod and a
// policy selecting it; three live at a time) through a dataplane over a
// fake kernel, and checks that every map the dataplane reports in
// Sizes() is back, after the churn, to its size at the same live count
// early on: nothing may grow with the history of the cluster (the soak
// test's check, at unit-test speed).
func RunSizesFollowLiveObjects(t *testing.T, newT NewTraced) {
	tr := newT(t)
	sd, ok := tr.Dataplane.(interface{ Sizes() map[string]int })
	if !ok {
		t.Fatalf("%T has no Sizes()", tr.Dataplane)
	}
	tp := Addresses(40)
	e := tp.Engine()
	ctx := context.Background()
	const live, rounds, settled = 3, 36, 5
	var at map[string]int
	for round := 0; round < rounds; round++ {
		ns := fmt.Sprintf("churn%d", round)
		e.UpsertNamespace(translatetest.Namespace(ns, nil))
		e.UpsertPod(translatetest.Pod(ns, "p", NodeName, map[string]string{"app": ns}, tp.IPs[4+round][:]))
		e.UpsertPolicy(translatetest.Policy(ns, "web", networkingv1.NetworkPolicySpec{
			PodSelector: *Labels("app", ns),
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: Labels("app", ns)}}}},
		}))
		if round >= live {
			old := fmt.Sprintf("churn%d", round-live)
			e.DeletePolicy(old, "web")
			e.DeletePod(old, "p")
			e.DeleteNamespace(old)
		}
		if err := tr.Dataplane.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
			t.Fatal(err)
		}
		if round == settled {
			at = sd.Sizes()
		}
	}
	end := sd.Sizes()
	if len(end) == 0 {
		t.Fatal("Sizes() is empty")
	}
	for _, k := range slices.Sorted(maps.Keys(end)) {
		if end[k] > at[k] {
			t.Errorf("%s grew with churn at the same live count: %d after round %d, %d after round %d", k, at[k], settled, end[k], rounds-1)
		}
	}
	if end["policies"] != live || end["sets"] == 0 {
		t.Errorf("Sizes() after the churn: %v, want %d policies and some sets", end, live)
	}
}
