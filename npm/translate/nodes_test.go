package translate

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/open-acn/acn/npm/policy"
)

func node(name string, lbls map[string]string, addrs ...corev1.NodeAddress) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}, Status: corev1.NodeStatus{Addresses: addrs}}
}

// TestNodePeers: an egress nodes peer matches the InternalIP and
// ExternalIP addresses of the selected Nodes (not their hostnames), and
// follows Nodes being relabelled, readdressed and deleted, incrementally
// and in a full translation alike.
func TestNodePeers(t *testing.T) {
	nss := []*corev1.Namespace{mkNS("a", nil)}
	pods := []*corev1.Pod{mkPod("a", "web", "n1", map[string]string{"app": "web"}, []string{"10.0.0.5"})}
	deny := &cnpv1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "no-control-plane"}, Spec: cnpv1.ClusterNetworkPolicySpec{
		Tier: cnpv1.AdminTier, Priority: 1, Subject: cnpv1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}},
		Egress: []cnpv1.ClusterNetworkPolicyEgressRule{{Action: cnpv1.ClusterNetworkPolicyRuleActionDeny,
			To: []cnpv1.ClusterNetworkPolicyEgressPeer{{Nodes: sel("role", "control-plane")}}}},
	}}
	cp := node("cp", map[string]string{"role": "control-plane"},
		corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "192.168.0.10"}, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.7"},
		corev1.NodeAddress{Type: corev1.NodeHostName, Address: "cp"})
	worker := node("w", map[string]string{"role": "worker"}, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "192.168.0.11"})
	allowed := func(st *policy.State, dst string) bool {
		return st.Evaluate(policy.Packet{Src: netip.MustParseAddr("10.0.0.5"), Dst: netip.MustParseAddr(dst), Protocol: policy.TCP, Port: 443}).Allowed
	}
	local := Options{NodeName: "n1"}
	full := Translate(Snapshot{Namespaces: nss, Pods: pods, Nodes: []*corev1.Node{cp, worker}, ClusterPolicies: []*cnpv1.ClusterNetworkPolicy{deny}}, local)
	e := NewEngine(local)
	e.UpsertNamespace(nss[0])
	e.UpsertPod(pods[0])
	if probs := e.UpsertClusterPolicy(deny); probs != nil {
		t.Fatal(probs)
	}
	e.UpsertNode(cp)
	e.UpsertNode(worker)
	for name, st := range map[string]*policy.State{"full": full, "incremental": e.State()} {
		for dst, want := range map[string]bool{"192.168.0.10": false, "203.0.113.7": false, "192.168.0.11": true, "10.0.0.9": true} {
			if got := allowed(st, dst); got != want {
				t.Errorf("%s: -> %s allowed %v, want %v", name, dst, got, want)
			}
		}
	}
	// The worker becomes a control-plane node, the control plane moves.
	w2 := worker.DeepCopy()
	w2.Labels["role"] = "control-plane"
	e.UpsertNode(w2)
	cp2 := cp.DeepCopy()
	cp2.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.0.12"}}
	e.UpsertNode(cp2)
	for dst, want := range map[string]bool{"192.168.0.10": true, "203.0.113.7": true, "192.168.0.11": false, "192.168.0.12": false} {
		if got := allowed(e.State(), dst); got != want {
			t.Errorf("after the changes: -> %s allowed %v, want %v", dst, got, want)
		}
	}
	e.DeleteNode("cp")
	e.DeleteNode("w")
	if !allowed(e.State(), "192.168.0.11") || !allowed(e.State(), "192.168.0.12") {
		t.Error("deleted nodes still denied")
	}
	if len(e.nodes) != 0 {
		t.Errorf("engine keeps %d nodes after deleting all", len(e.nodes))
	}
}
