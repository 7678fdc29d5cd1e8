package hnsacl

import (
	"math/rand"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	cnpv1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/open-acn/acn/npm/translate/translatetest"
)

// TestPropertyClusterPoliciesByPriority: random worlds with random
// ClusterNetworkPolicies (networks peers included), every pod local. The
// fake HNS's ACL walk (by priority, first match) decides exactly like the
// model when no Admin rule passes; with an Admin Pass (which HNS cannot
// express) it never allows what the model denies.
func TestPropertyClusterPoliciesByPriority(t *testing.T) {
	r := rand.New(rand.NewSource(15))
	const worlds = 200
	exact, closed, stricter := 0, 0, 0
	for c := 0; c < worlds; c++ {
		w := translatetest.Random(r, translatetest.PropertyConfig(5))
		w.ClusterPolicies = translatetest.RandomCluster(r, translatetest.ClusterConfig{Policies: 4, Networks: translatetest.PropertyConfig(5).CIDRs})
		adminPass := false
		for _, p := range w.ClusterPolicies {
			for _, rl := range p.Spec.Ingress {
				adminPass = adminPass || p.Spec.Tier == cnpv1.AdminTier && rl.Action == cnpv1.ClusterNetworkPolicyRuleActionPass
			}
			for _, rl := range p.Spec.Egress {
				adminPass = adminPass || p.Spec.Tier == cnpv1.AdminTier && rl.Action == cnpv1.ClusterNetworkPolicyRuleActionPass
			}
		}
		all := func(*corev1.Pod) bool { return true }
		st, f := programWorld(t, w, all, Options{SCTP: true, HostIPs: []netip.Addr{netip.MustParseAddr("10.9.200.1")}})
		for _, pr := range w.Probes() {
			got, want := f.Evaluate(pr.Packet()).Allowed, st.Evaluate(pr.Packet()).Allowed
			switch {
			case !adminPass && got != want:
				t.Fatalf("world %d: %s -> %s %s/%d: hns %v, model %v\n%s\n%s", c, pr.Src, pr.Dst, pr.Proto, pr.Port, got, want, w.String(), dumpFake(f))
			case got && !want:
				t.Fatalf("world %d (Admin Pass): %s -> %s %s/%d allowed by hns, denied by the model\n%s\n%s", c, pr.Src, pr.Dst, pr.Proto, pr.Port, w.String(), dumpFake(f))
			case adminPass && got != want:
				stricter++
			case adminPass:
				closed++
			default:
				exact++
			}
		}
	}
	t.Logf("%d decisions exact (no Admin Pass); with an Admin Pass %d equal and %d stricter than the model (fail closed)", exact, closed, stricter)
}
