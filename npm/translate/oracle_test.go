package translate

import (
	"fmt"
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

func propConfig(pods int) translatetest.Config {
	c := translatetest.Config{Namespaces: 3, Policies: 4,
		CIDRs:   []string{"10.9.0.0/16", "10.9.0.0/23", "10.9.2.0/24", "0.0.0.0/0", "192.168.7.0/24", "fd09::/32", "::/0"},
		Excepts: []string{"10.9.1.0/24", "10.9.0.0/22", "10.9.3.0/24", "fd09:0:1::/48"},
	}
	for i := 0; i < pods; i++ {
		c.PodIPs = append(c.PodIPs, []string{fmt.Sprintf("10.9.%d.2", i), fmt.Sprintf("fd09:0:%d::2", i)})
	}
	return c
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
		w := translatetest.Random(r, propConfig(6))
		st := Translate(Snapshot{Pods: w.Pods, Namespaces: w.Namespaces, Policies: w.Policies}, Options{IsLocal: func(*corev1.Pod) bool { return true }})
		o := newOracle(w)
		var addrs [][]string // per family
		for fam := 0; fam < 2; fam++ {
			var l []string
			for _, p := range w.Pods {
				l = append(l, p.Status.PodIPs[fam].IP)
			}
			l = append(l, []string{"192.168.7.9", "fd77::9"}[fam])
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
							t.Fatalf("case %d: %s -> %s %s/%d: model %v (%+v), oracle %v\npolicies:\n%s\nmodel:\n%s", c, src, dst, pp.Proto, pp.Port, got.Allowed, got, want, dumpPolicies(w), render(st))
						}
					}
				}
			}
		}
	}
	t.Logf("%d cases, %d decisions equal to the oracle", cases, checked)
}

func dumpPolicies(w translatetest.World) string {
	s := ""
	for _, n := range w.Namespaces {
		s += fmt.Sprintf("ns %s %v\n", n.Name, n.Labels)
	}
	for _, p := range w.Pods {
		s += fmt.Sprintf("pod %s/%s %v %v %v\n", p.Namespace, p.Name, p.Labels, p.Status.PodIPs, p.Spec.Containers[0].Ports)
	}
	for _, p := range w.Policies {
		s += fmt.Sprintf("policy %s/%s %+v\n", p.Namespace, p.Name, p.Spec)
	}
	return s
}
