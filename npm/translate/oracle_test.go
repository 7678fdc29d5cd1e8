package translate

import (
	"math/rand"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/open-acn/acn/internal/policyoracle"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// newOracle is the shared cyclonus oracle (internal/policyoracle, with its
// NotIn input correction) over a random world.
func newOracle(w translatetest.World) *policyoracle.Oracle {
	return policyoracle.New(w.Namespaces, w.Pods, w.Policies)
}

// TestPropertyModelMatchesOracle: on random clusters and policies, the
// model's decision (policy.State.Evaluate, with every pod local) equals
// cyclonus' for every pod pair, external peers, both families and the
// probe ports.
func TestPropertyModelMatchesOracle(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	const cases = 300
	checked := 0
	for c := 0; c < cases; c++ {
		w := translatetest.Random(r, translatetest.PropertyConfig(6))
		st := Translate(Snapshot{Pods: w.Pods, Namespaces: w.Namespaces, Policies: w.Policies}, Options{IsLocal: func(*corev1.Pod) bool { return true }})
		o := newOracle(w)
		for _, pr := range w.Probes() {
			want := o.Allowed(pr.Src, pr.Dst, pr.Proto, pr.Port)
			got := st.Evaluate(pr.Packet())
			checked++
			if got.Allowed != want {
				t.Fatalf("case %d: %s -> %s %s/%d: model %v (%+v), oracle %v\npolicies:\n%s\nmodel:\n%s", c, pr.Src, pr.Dst, pr.Proto, pr.Port, got.Allowed, got, want, w.String(), render(st))
			}
		}
	}
	t.Logf("%d cases, %d decisions equal to the oracle", cases, checked)
}
