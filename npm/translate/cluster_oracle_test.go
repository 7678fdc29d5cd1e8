package translate

import (
	"math/rand"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/open-acn/acn/internal/policyoracle"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// TestPropertyClusterPoliciesMatchOracle: random clusters with random
// ClusterNetworkPolicies (both tiers, tied and distinct priorities, every
// action, namespaces/pods subjects and peers, numbered, ranged, any-port
// and named protocols) beside random NetworkPolicies: the model's decision
// (policy.State.Evaluate, every pod local) equals policy-assistant's
// (internal/policyoracle.ClusterOracle) for every pod pair, external
// peers, both families and the probe ports.
func TestPropertyClusterPoliciesMatchOracle(t *testing.T) {
	r := rand.New(rand.NewSource(15))
	const cases = 300
	checked, withCNP, denied := 0, 0, 0
	for c := 0; c < cases; c++ {
		w := translatetest.Random(r, translatetest.PropertyConfig(6))
		if r.Intn(4) == 0 {
			w.Policies = nil // Admin and Baseline tiers alone
		}
		w.ClusterPolicies = translatetest.RandomCluster(r, translatetest.ClusterConfig{Policies: 5})
		if len(w.ClusterPolicies) > 0 {
			withCNP++
		}
		st := Translate(Snapshot{Pods: w.Pods, Namespaces: w.Namespaces, Policies: w.Policies, ClusterPolicies: w.ClusterPolicies},
			Options{IsLocal: func(*corev1.Pod) bool { return true }})
		o := policyoracle.NewCluster(w.Namespaces, w.Pods, w.Policies, w.ClusterPolicies)
		for _, pr := range w.Probes() {
			want := o.Allowed(pr.Src, pr.Dst, pr.Proto, pr.Port)
			got := st.Evaluate(pr.Packet())
			checked++
			if !want {
				denied++
			}
			if got.Allowed != want {
				t.Fatalf("case %d: %s -> %s %s/%d: model %v (%+v), oracle %v\nworld:\n%s\nmodel:\n%s", c, pr.Src, pr.Dst, pr.Proto, pr.Port, got.Allowed, got, want, w.String(), render(st))
			}
		}
	}
	if withCNP < cases/2 || denied == 0 || denied == checked {
		t.Fatalf("degenerate worlds: %d of %d with cluster policies, %d of %d decisions denied", withCNP, cases, denied, checked)
	}
	t.Logf("%d cases (%d with ClusterNetworkPolicies), %d decisions equal to the oracle (%d denied)", cases, withCNP, checked, denied)
}
