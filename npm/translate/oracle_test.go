package translate

import (
	"math/rand"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/open-acn/acn/internal/policyoracle"
	"github.com/open-acn/acn/npm/policy"
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
		var addrs [][]string // per family
		for fam := 0; fam < 2; fam++ {
			var l []string
			for _, p := range w.Pods {
				l = append(l, p.Status.PodIPs[fam].IP)
			}
			l = append(l, translatetest.ExternalIPs[fam])
			addrs = append(addrs, l)
		}
		for _, l := range addrs {
			for _, src := range l {
				for _, dst := range l {
					if src == dst {
						continue
					}
					for _, pp := range translatetest.ProbePorts {
						want := o.Allowed(src, dst, pp.Proto, pp.Port)
						got := st.Evaluate(policy.Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Protocol: policy.Protocol(pp.Proto), Port: uint16(pp.Port)})
						checked++
						if got.Allowed != want {
							t.Fatalf("case %d: %s -> %s %s/%d: model %v (%+v), oracle %v\npolicies:\n%s\nmodel:\n%s", c, src, dst, pp.Proto, pp.Port, got.Allowed, got, want, w.String(), render(st))
						}
					}
				}
			}
		}
	}
	t.Logf("%d cases, %d decisions equal to the oracle", cases, checked)
}
